"""Which URLs the browser may fetch: schemes, then addresses after DNS resolution.

Every fetch (each redirect hop, and each request Chromium makes, since Chromium's requests are served by
the same fetcher) goes through :meth:`UrlPolicy.resolve`, which returns the addresses that may be
connected to. The caller connects to one of those addresses and nothing else, so a name that resolves
to a public address when checked cannot reach a private one when connected (no DNS-rebinding window).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ossagent.tools.base import ModelError, UserError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]


class PolicyError(ModelError):
    """The URL is not allowed: the model should pick another one."""


DNS_TIMEOUT_S = 10.0


@functools.cache
def _dns_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="ossagent-dns")


def system_resolver(host: str, port: int) -> list[str]:
    """The system's answer for ``host``, or OSError after ``DNS_TIMEOUT_S`` (getaddrinfo has no timeout)."""
    fut = _dns_pool().submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = fut.result(timeout=DNS_TIMEOUT_S)
    except FuturesTimeout as e:
        raise OSError(f"DNS lookup timed out after {DNS_TIMEOUT_S:.0f} s") from e
    seen: list[str] = []
    for *_, sockaddr in infos:
        ip = str(sockaddr[0]).split("%", 1)[0]
        if ip not in seen:
            seen.append(ip)
    return seen


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: local-use translation, private by definition
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d (:: and ::1 are handled as themselves)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for: IPv4-mapped, NAT64, 6to4 or IPv4-compatible; else None.

    Each of these can reach an IPv4 host through a translator or tunnel, so it is checked as that host.
    """
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _parse_networks(items: Iterable[str]) -> tuple[Network, ...]:
    nets = []
    for item in items:
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError as e:
            raise UserError(f"allowed network {item!r} is not an IP address or CIDR range: {e}") from e
    return tuple(nets)


@dataclass(frozen=True)
class UrlPolicy:
    """Schemes http/https only; non-public addresses refused unless allowed here.

    ``allow_networks`` lists CIDR ranges (``"127.0.0.1/32"``, ``"10.0.0.0/8"``) that are allowed even
    though they are private, loopback or link-local; ``allow_private=True`` allows all of them (a
    trusted intranet). ``deny_hosts`` refuses host names outright. ``resolver`` maps (host, port) to
    addresses; the default asks the system.
    """

    allow_private: bool = False
    allow_networks: tuple[str, ...] = ()
    deny_hosts: frozenset[str] = frozenset()
    schemes: frozenset[str] = frozenset({"http", "https"})
    resolver: Resolver = field(default=system_resolver, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_nets", _parse_networks(self.allow_networks))
        bad = self.schemes - {"http", "https"}
        if bad:
            raise UserError(f"the browser fetches only http and https, not {sorted(bad)}")

    def check_url(self, url: str) -> tuple[str, str, int]:
        """Return (scheme, host, port) of ``url`` or raise :class:`PolicyError`."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise PolicyError(f"`{url}` is not a valid URL: {e}") from e
        scheme = parts.scheme.lower()
        if scheme not in self.schemes:
            shown = f"`{scheme}:`" if scheme else "no scheme"
            raise PolicyError(
                f"Refused to open `{url}`: {shown} URLs are not allowed.",
                hint="Only http:// and https:// URLs can be opened.",
            )
        host = (parts.hostname or "").rstrip(".").lower()
        if not host:
            raise PolicyError(f"`{url}` has no host name.")
        if host in self.deny_hosts:
            raise PolicyError(f"Refused to open `{url}`: the host `{host}` is blocked by configuration.")
        return scheme, host, port or (443 if scheme == "https" else 80)

    def address_allowed(self, ip: Address) -> bool:
        if isinstance(ip, ipaddress.IPv6Address):
            embedded = embedded_ipv4(ip)
            if embedded is not None:
                ip = embedded
            elif ip.is_site_local or ip in _NAT64_LOCAL:
                return self.allow_private or any(ip in net for net in self._nets)  # type: ignore[attr-defined]
        if any(ip in net for net in self._nets):  # type: ignore[attr-defined]
            return True
        if ip.is_multicast or ip.is_unspecified:
            return False
        return ip.is_global or self.allow_private

    def resolve(self, url: str) -> tuple[str, list[str]]:
        """Check ``url`` and return (host, allowed addresses); refuse if none is allowed.

        A name that resolves to any refused address is refused as a whole: a host that mixes public
        and private answers is either misconfigured or trying to rebind.
        """
        _, host, port = self.check_url(url)
        try:
            literal: Address | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                addresses = list(self.resolver(host, port))
            except (OSError, UnicodeError) as e:
                raise PolicyError(
                    f"Could not resolve `{host}`: {e}", hint="Check the URL or search for the page instead."
                ) from e
        if not addresses:
            raise PolicyError(f"`{host}` has no addresses.")
        refused = [a for a in addresses if not self.address_allowed(ipaddress.ip_address(a))]
        if refused:
            what = host if literal is not None else f"{host} ({', '.join(refused)})"
            raise PolicyError(
                f"Refused to open `{url}`: {what} is a private, loopback or link-local address.",
                hint="Only public web addresses can be opened.",
            )
        return host, addresses
