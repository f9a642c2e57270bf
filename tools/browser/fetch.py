"""Fetching over plain HTTP with httpx: policy on every hop, byte caps, deadlines, no downloads.

Each hop is resolved and checked by :class:`~ossagent.tools.browser.policy.UrlPolicy`, then httpx
connects to the checked address itself (the URL's host is replaced by the address; ``Host`` and TLS SNI
keep the name, so certificates are still verified against it). Redirects are followed here, one hop at a
time, never by httpx. Proxies and other environment settings are ignored (``trust_env=False``).
"""

from __future__ import annotations

import codecs
import contextlib
import re
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

import httpcore
import httpx

from ossagent.tools.base import ToolFailure
from ossagent.tools.browser.policy import PolicyError, UrlPolicy

TEXT_TYPES = ("text/", "application/xhtml+xml", "application/xml", "application/json", "application/javascript",
              "application/ecmascript", "application/x-javascript", "application/ld+json", "application/rss+xml",
              "application/atom+xml")
# Codecs Python knows that no web page may be decoded with: escapes that spell any character (a page could
# write markup the sanitizer then never sees as such), UTF-7, and ones that cannot decode with replacement.
_NOT_WEB_CODECS = frozenset({"idna", "punycode", "unicode-escape", "raw-unicode-escape", "utf-7", "undefined"})
_META_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_\-:.]+)""", re.IGNORECASE)


_deadline = threading.local()  # .at: the monotonic time the current thread's fetch must end by


def _left(timeout: float | None, exc: type[Exception]) -> float | None:
    """A per-operation timeout cut to what is left of the current fetch's total deadline."""
    end = getattr(_deadline, "at", None)
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise exc("the fetch's total deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read and write ends by the fetch's deadline, headers and TLS included:
    httpx's own timeouts are per operation, so a server sending one byte a second would never time out."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.SyncBackend):
    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        inner = super().connect_tcp(host, port, _left(timeout, httpcore.ConnectTimeout), local_address,
                                    socket_options)
        return _DeadlineStream(inner)


_HTTPCORE_ERRORS = (httpcore.UnsupportedProtocol, httpcore.ProtocolError, httpcore.NetworkError,
                    httpcore.TimeoutException, httpcore.ProxyError)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    """httpcore's exceptions as httpx's of the same name (httpx.ReadTimeout for httpcore.ReadTimeout...)."""
    try:
        yield
    except _HTTPCORE_ERRORS as e:
        cls = getattr(httpx, type(e).__name__, None)
        if not (isinstance(cls, type) and issubclass(cls, httpx.TransportError)):
            cls = httpx.TransportError
        raise cls(str(e)) from e


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._stream

    def close(self) -> None:
        with _as_httpx_errors():
            self._stream.close()


class _DeadlineTransport(httpx.BaseTransport):
    """httpx over an httpcore pool whose sockets are :class:`_DeadlineStream` s, built with public parameters
    only (httpx's own transport does not take a network backend)."""

    def __init__(self, verify: bool | ssl.SSLContext) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False), max_connections=100,
            max_keepalive_connections=20, keepalive_expiry=5.0, network_backend=_DeadlineBackend())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port,
                           target=request.url.raw_path)
        req = httpcore.Request(method=request.method, url=url, headers=request.headers.raw,
                               content=request.stream, extensions=request.extensions)
        with _as_httpx_errors():
            resp = self._pool.handle_request(req)
        return httpx.Response(status_code=resp.status, headers=resp.headers, stream=_Body(resp.stream),
                              extensions=resp.extensions)

    def close(self) -> None:
        self._pool.close()


@dataclass(frozen=True)
class FetchLimits:
    """Low-bandwidth limits; every fetch stops at these."""

    max_bytes: int = 2_000_000  # per response body; the rest is not downloaded
    timeout_s: float = 20.0  # whole fetch, all hops
    connect_timeout_s: float = 5.0
    max_redirects: int = 8
    max_total_bytes: int = 64_000_000  # per browser (conversation): then every fetch is refused
    user_agent: str = "Mozilla/5.0 (X11; Linux x86_64) ossagent-browser/0.1 (text only)"


@dataclass
class Response:
    """One HTTP response as fetched (after redirects for :meth:`HttpFetcher.get`)."""

    url: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    truncated: bool = False
    redirects: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def header(self, name: str) -> str:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), "")

    @property
    def content_type(self) -> str:
        return self.header("content-type").split(";", 1)[0].strip().lower()

    def text(self) -> str:
        return decode_body(self.body, self.header("content-type"))


def is_textual(content_type: str) -> bool:
    ct = content_type.lower()
    return not ct or ct.startswith(TEXT_TYPES) or ct.endswith(("+xml", "+json"))


def decode_body(body: bytes, content_type: str) -> str:
    msg = Message()
    msg["content-type"] = content_type or "text/plain"
    charset = msg.get_param("charset")
    if not isinstance(charset, str):
        m = _META_CHARSET_RE.search(body[:4096])
        charset = m.group(1).decode("ascii") if m else "utf-8"
    try:
        name = codecs.lookup(charset).name
        if name not in _NOT_WEB_CODECS:
            return body.decode(name, errors="replace")
    except (LookupError, UnicodeError, ValueError, TypeError):  # unknown label, or a codec that cannot replace
        pass
    return body.decode("utf-8", errors="replace")


class HttpFetcher:
    """A policy-checked HTTP client. Thread-safe counters: ``bytes_fetched``, ``requests``."""

    def __init__(self, policy: UrlPolicy, limits: FetchLimits | None = None,
                 verify: bool | ssl.SSLContext = True) -> None:
        self.policy = policy
        self.limits = limits or FetchLimits()
        self._client = httpx.Client(
            transport=_DeadlineTransport(verify),  # one total deadline per fetch (see above)
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(self.limits.timeout_s, connect=self.limits.connect_timeout_s),
            headers={"user-agent": self.limits.user_agent, "accept-encoding": "gzip, deflate",
                     "accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.1"},
        )
        self._lock = threading.Lock()
        self.bytes_fetched = 0
        self.requests = 0

    def close(self) -> None:
        self._client.close()

    def request_once(
        self,
        url: str,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        deadline: float | None = None,
    ) -> Response:
        """One request to ``url``, no redirects followed; the body is capped at ``max_bytes``."""
        if self.bytes_fetched >= self.limits.max_total_bytes:
            raise ToolFailure(f"Not fetching `{url}`: this conversation has used its download budget "
                              f"({self.limits.max_total_bytes:,} bytes).",
                              hint="Answer with the pages already open (use their cursors).")
        host, addresses = self.policy.resolve(url)
        deadline = deadline or time.monotonic() + self.limits.timeout_s
        try:
            target = httpx.URL(url)
        except (httpx.InvalidURL, ValueError) as e:
            raise PolicyError(f"`{url}` is not a valid URL: {e}") from e
        sent = {k: v for k, v in (headers or {}).items() if k.lower() not in ("host", "cookie", "accept-encoding")}
        sent["host"] = target.netloc.decode("ascii")
        ext: dict[str, object] = {}
        if target.scheme == "https":
            ext["sni_hostname"] = host
        last_error: Exception | None = None
        start = time.monotonic()
        _deadline.at = deadline
        try:
            for ip in addresses:
                if deadline - time.monotonic() <= 0:
                    break
                try:
                    req = self._client.build_request(method, target.copy_with(host=ip), headers=sent,
                                                     content=content, extensions=ext)
                    return self._read(self._client.send(req, stream=True), url, deadline, start)
                except httpx.TimeoutException as e:
                    last_error = e
                    break
                except httpx.HTTPError as e:
                    last_error = e
        finally:
            _deadline.at = None
        why = f"{type(last_error).__name__}: {last_error}" if last_error else "timed out"
        raise ToolFailure(f"Error fetching `{url}`: {why}", hint="Try again later or open another result.")

    def _read(self, resp: httpx.Response, url: str, deadline: float, start: float) -> Response:
        chunks: list[bytes] = []
        size = 0
        truncated = False
        try:
            for chunk in resp.iter_raw():
                with self._lock:
                    self.bytes_fetched += len(chunk)
                chunks.append(chunk)
                size += len(chunk)
                if size >= self.limits.max_bytes or time.monotonic() > deadline:
                    truncated = True
                    break
        except httpx.TimeoutException:  # the deadline passed mid-body: keep what came
            if not chunks:
                raise
            truncated = True
        finally:
            resp.close()
        with self._lock:
            self.requests += 1
        raw = b"".join(chunks)
        body = self._decompress(raw, resp.headers.get("content-encoding", ""))
        headers = [(k, v) for k, v in resp.headers.multi_items() if k.lower() != "content-encoding"]
        return Response(url=url, status=resp.status_code, headers=headers, body=body[: self.limits.max_bytes],
                        truncated=truncated, elapsed_s=time.monotonic() - start)

    def _decompress(self, raw: bytes, encoding: str) -> bytes:
        import zlib

        encoding = encoding.strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS
            d = zlib.decompressobj(wbits)
            try:
                return d.decompress(raw, self.limits.max_bytes)
            except zlib.error:
                try:
                    return zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw, self.limits.max_bytes)
                except zlib.error as e:
                    raise ToolFailure(f"The server sent a corrupt {encoding} body: {e}") from e
        if encoding not in ("", "identity"):
            raise ToolFailure(f"The server sent an unsupported content encoding `{encoding}`.")
        return raw

    def get(self, url: str, headers: dict[str, str] | None = None) -> Response:
        """GET ``url`` following redirects (each hop checked); refuse downloads and non-text bodies."""
        deadline = time.monotonic() + self.limits.timeout_s
        start = time.monotonic()
        hops: list[str] = []
        current = url
        for _ in range(self.limits.max_redirects + 1):
            try:
                resp = self.request_once(current, headers=headers, deadline=deadline)
            except PolicyError as e:
                if not hops:
                    raise
                raise PolicyError(f"`{url}` redirected to a refused URL. {e.args[0]}", hint=e.hint) from e
            location = resp.header("location")
            if resp.status in (301, 302, 303, 307, 308) and location:
                hops.append(current)
                current = str(httpx.URL(current).join(location))
                continue
            resp.redirects = hops
            resp.elapsed_s = time.monotonic() - start
            check_document(resp)
            return resp
        raise ToolFailure(f"Too many redirects from `{url}` (more than {self.limits.max_redirects}).",
                          hint="The site is redirecting in a loop; open another result.")


def check_document(resp: Response) -> None:
    """Refuse what is not a web page: attachments and binary types."""
    if resp.header("content-disposition").lower().startswith("attachment"):
        raise ToolFailure(f"Refused to download `{resp.url}`: the server sent it as a file attachment.",
                          hint="The browser shows web pages only; downloads are not allowed.")
    if not is_textual(resp.content_type):
        raise ToolFailure(f"Refused to download `{resp.url}`: `{resp.content_type}` is not a web page.",
                          hint="The browser shows web pages only; downloads are not allowed.")
    if resp.status >= 400:
        raise ToolFailure(f"Error fetching `{resp.url}`: HTTP {resp.status}.",
                          hint="Open another result or search again.")
