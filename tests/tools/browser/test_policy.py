"""The URL policy: schemes, addresses after resolution, configuration."""

from __future__ import annotations

import pytest

from ossagent.tools.base import UserError
from ossagent.tools.browser.policy import PolicyError, UrlPolicy


def fake_dns(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("Name or service not known")
        return table[host]
    return resolve


PUBLIC = fake_dns({"example.org": ["93.184.215.14"], "rebind.test": ["10.1.2.3"],
                   "mixed.test": ["93.184.215.14", "192.168.1.1"], "v6.test": ["2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
                   "mapped.test": ["::ffff:127.0.0.1"]})


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/", "javascript:alert(1)",
                                 "data:text/html,hi", "chrome://settings", "view-source:http://x.org", "example.org"])
def test_only_http_and_https(url: str) -> None:
    with pytest.raises(PolicyError, match=r"not allowed|no host"):
        UrlPolicy(resolver=PUBLIC).resolve(url)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/", "http://[::1]/", "http://10.0.0.1/", "http://172.16.0.1/", "http://192.168.0.1/",
    "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://0.0.0.0/", "http://224.0.0.1/",
    "http://100.64.0.1/", "http://[fd00::1]/", "http://[::ffff:10.0.0.1]/",
    "http://rebind.test/", "http://mixed.test/", "http://mapped.test/",
])
def test_non_public_addresses_are_refused(url: str) -> None:
    with pytest.raises(PolicyError, match="private, loopback or link-local"):
        UrlPolicy(resolver=PUBLIC).resolve(url)


@pytest.mark.parametrize("url", [
    # private IPv4 addresses spelled as IPv6 (NAT64, 6to4, IPv4-compatible), and IPv6 site-local
    "http://[64:ff9b::7f00:1]/", "http://[64:ff9b::a9fe:a9fe]/", "http://[64:ff9b:1::a00:1]/",
    "http://[2002:7f00:1::]/", "http://[2002:a9fe:a9fe::1]/", "http://[2002:c0a8:101:1::1]/",
    "http://[::127.0.0.1]/", "http://[::a00:1]/", "http://[::169.254.169.254]/",
    "http://[fec0::1]/", "http://[feff::1]/", "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
])
def test_private_addresses_in_ipv6_forms_are_refused(url: str) -> None:
    with pytest.raises(PolicyError, match="private, loopback or link-local"):
        UrlPolicy(resolver=PUBLIC).resolve(url)


def test_public_addresses_in_ipv6_forms_pass() -> None:
    pol = UrlPolicy(resolver=PUBLIC)
    for host in ("64:ff9b::5db8:d70e", "2002:5db8:d70e::1"):  # 93.184.215.14 through NAT64 and 6to4
        assert pol.resolve(f"http://[{host}]/")[1] == [host]
    allowed = UrlPolicy(allow_networks=("127.0.0.1/32",), resolver=PUBLIC)
    assert allowed.resolve("http://[64:ff9b::7f00:1]/")[1] == ["64:ff9b::7f00:1"]


def test_public_addresses_pass_and_are_what_is_connected_to() -> None:
    pol = UrlPolicy(resolver=PUBLIC)
    assert pol.resolve("https://example.org/x") == ("example.org", ["93.184.215.14"])
    assert pol.resolve("http://v6.test:8080/")[1] == ["2606:2800:21f:cb07:6820:80da:af6b:8b2c"]
    assert pol.resolve("http://93.184.215.14/") == ("93.184.215.14", ["93.184.215.14"])


def test_configuration_allows_ranges() -> None:
    pol = UrlPolicy(allow_networks=("127.0.0.1/32",), resolver=PUBLIC)
    assert pol.resolve("http://127.0.0.1:8000/")[1] == ["127.0.0.1"]
    assert pol.resolve("http://mapped.test/")[1] == ["::ffff:127.0.0.1"]
    with pytest.raises(PolicyError):
        pol.resolve("http://127.0.0.2/")
    with pytest.raises(PolicyError):
        pol.resolve("http://[::1]/")
    assert UrlPolicy(allow_private=True, resolver=PUBLIC).resolve("http://rebind.test/")[1] == ["10.1.2.3"]
    with pytest.raises(PolicyError, match="blocked by configuration"):
        UrlPolicy(deny_hosts=frozenset({"example.org"}), resolver=PUBLIC).resolve("https://EXAMPLE.org./")


def test_bad_configuration_is_the_users_error() -> None:
    with pytest.raises(UserError):
        UrlPolicy(allow_networks=("not-a-net",))
    with pytest.raises(UserError):
        UrlPolicy(schemes=frozenset({"file"}))


def test_unresolvable_names_are_reported() -> None:
    with pytest.raises(PolicyError, match="Could not resolve"):
        UrlPolicy(resolver=PUBLIC).resolve("http://nowhere.test/")
    with pytest.raises(PolicyError, match="not a valid URL"):
        UrlPolicy(resolver=PUBLIC).resolve("http://x.org:99999/")


def test_system_resolver_answers_and_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from ossagent.tools.browser import policy

    assert set(policy.system_resolver("localhost", 80)) & {"127.0.0.1", "::1"}  # /etc/hosts, no network
    monkeypatch.setattr(policy, "DNS_TIMEOUT_S", 0.2)
    monkeypatch.setattr(policy.socket, "getaddrinfo", lambda *a, **k: time.sleep(2))
    with pytest.raises(PolicyError, match="timed out"):
        UrlPolicy().resolve("http://slow.test/")
