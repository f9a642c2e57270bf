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


def test_charsets_from_header_meta_or_utf8(site: Any, http: HttpFetcher) -> None:
    site.page("/latin1-header.html", "<p>caf\u00e9</p>".encode("latin-1"), "text/html; charset=ISO-8859-1")
    site.page("/latin1-meta.html", '<meta charset="windows-1252"><p>caf\u00e9 \u20ac</p>'.encode("cp1252"),
              "text/html")
    site.page("/bogus-charset.html", "<p>caf\u00e9</p>".encode(), "text/html; charset=nonsense")
    for path in ("/latin1-header.html", "/latin1-meta.html", "/bogus-charset.html"):
        assert "caf\u00e9" in http.get(site.base + path).text()
    assert "\u20ac" in http.get(site.base + "/latin1-meta.html").text()


def test_conversation_download_budget(site: Any) -> None:
    f = HttpFetcher(LOOPBACK, FetchLimits(max_total_bytes=1000))
    f.get(site.base + "/static.html")
    f.get(site.base + "/static.html")
    with pytest.raises(ToolFailure, match="download budget"):
        f.get(site.base + "/second.html")
    f.close()


DRIP_S = 60.0  # how long the dripping server keeps going: a fetch without a total deadline lasts this long


def _drip(handler: Any) -> None:
    """Headers one byte at a time, each well inside a per-read timeout, for ``DRIP_S`` seconds."""
    import time

    handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
    handler.wfile.flush()
    for _ in range(int(DRIP_S / 0.25)):
        try:
            handler.wfile.write(b"X-Drip: a\r\n"[:1])
            handler.wfile.flush()
        except OSError:
            return
        time.sleep(0.25)


@pytest.mark.timeout(2 * DRIP_S)
def test_a_server_dripping_headers_cannot_outlast_the_fetch_deadline(site: Any) -> None:
    import time

    site.route("/drip", _drip)
    http = HttpFetcher(LOOPBACK, FetchLimits(timeout_s=1.5, connect_timeout_s=1.0))
    try:
        started = time.monotonic()
        with pytest.raises(ToolFailure, match="Timeout"):
            http.get(site.base + "/drip")
        # the 1.5 s deadline cut it; without it the fetch would last as long as the server drips (no timed bound)
        assert time.monotonic() - started < DRIP_S / 2
    finally:
        http.close()


@pytest.mark.parametrize("charset", ["idna", "punycode", "unicode_escape", "raw-unicode-escape", "utf-7", "x-nope",
                                     "rot13", "base64", "undefined", "utf-8\u0000"])
def test_unknown_or_non_web_charset_labels_fall_back_to_utf8(charset: str) -> None:
    from ossagent.tools.browser.fetch import decode_body

    body = "café \\u3010 +AGEAYgBj-".encode()
    assert decode_body(body, f"text/html; charset={charset}") == "café \\u3010 +AGEAYgBj-"
    meta = b"<meta charset='" + charset.encode(errors="replace") + b"'>" + body
    assert decode_body(meta, "text/html").endswith("café \\u3010 +AGEAYgBj-")
