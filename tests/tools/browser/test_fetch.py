"""The httpx path against the loopback site: redirects, refusals, caps, encodings."""

from __future__ import annotations

from typing import Any

import pytest

from ossagent.tools.base import ToolFailure
from ossagent.tools.browser import FetchLimits, HttpFetcher, UrlPolicy
from ossagent.tools.browser.policy import PolicyError

LOOPBACK = UrlPolicy(allow_networks=("127.0.0.1/32",))


@pytest.fixture()
def http() -> Any:
    f = HttpFetcher(LOOPBACK, FetchLimits(max_bytes=200_000, timeout_s=10))
    yield f
    f.close()


def test_plain_get_and_redirect_chain(site: Any, http: HttpFetcher) -> None:
    resp = http.get(site.base + "/redirect-chain")
    assert resp.url == site.base + "/second.html"
    assert resp.redirects == [site.base + "/redirect-chain", site.base + "/redirect"]
    assert "Attention sinks" in resp.text()


def test_redirect_into_a_refused_address_is_stopped_before_connecting(site: Any, http: HttpFetcher) -> None:
    with pytest.raises(PolicyError, match=r"redirected to a refused URL.*169\.254\.169\.254"):
        http.get(site.base + "/redirect-private")
    with pytest.raises(PolicyError, match="`file:` URLs are not allowed"):
        http.get(site.base + "/redirect-file")


def test_the_policy_is_checked_after_dns(site: Any) -> None:
    # "localhost" resolves to loopback; only 127.0.0.1 literals would pass a name check, so resolve it
    pol = UrlPolicy(allow_networks=("127.0.0.1/32",), resolver=lambda host, port: ["127.0.0.9"])
    f = HttpFetcher(pol)
    with pytest.raises(PolicyError, match=r"localhost \(127\.0\.0\.9\)"):
        f.get(f"http://localhost:{site.port}/static.html")
    f.close()
    # and the checked address is the one connected to: a name mapped to the site's address works
    f = HttpFetcher(UrlPolicy(allow_networks=("127.0.0.1/32",), resolver=lambda host, port: ["127.0.0.1"]))
    resp = f.get(f"http://docs.example:{site.port}/static.html")
    assert resp.status == 200 and "Sliding windows" in resp.text()
    f.close()


def test_redirect_loops_end(site: Any, http: HttpFetcher) -> None:
    with pytest.raises(ToolFailure, match="Too many redirects"):
        http.get(site.base + "/redirect-loop")


def test_downloads_are_refused(site: Any, http: HttpFetcher) -> None:
    with pytest.raises(ToolFailure, match="application/zip` is not a web page"):
        http.get(site.base + "/file.zip")
    with pytest.raises(ToolFailure, match="attachment"):
        http.get(site.base + "/attachment.html")
    with pytest.raises(ToolFailure, match="HTTP 404"):
        http.get(site.base + "/missing")


def test_huge_page_is_capped(site: Any, http: HttpFetcher) -> None:
    before = http.bytes_fetched
    resp = http.get(site.base + "/huge.html")
    assert resp.truncated
    assert len(resp.body) == 200_000
    assert http.bytes_fetched - before < 200_000 + 256 * 1024  # stopped within one read of the cap


def test_gzip_and_plain_text(site: Any, http: HttpFetcher) -> None:
    assert "Attention sinks" in http.get(site.base + "/gzip.html").text()
    resp = http.get(site.base + "/plain.txt")
    assert resp.content_type == "text/plain" and resp.text().startswith("Just text.")
