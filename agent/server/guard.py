"""What every request must pass before the API sees it: its Host, its content type and its size.

* **Host** (DNS rebinding): a page on ``evil.example`` whose name later resolves to 127.0.0.1 reaches a loopback
  server with ``Host: evil.example``. Allowed are IP literals of the bound address (any IP when bound to all
  interfaces: a page can only use an IP as its own origin), ``localhost`` when the server listens on loopback or on
  all interfaces, and the names in ``allowed_hosts`` (``*``: any). Anything else gets 400.
* **Content type**: a cross-origin ``fetch`` may POST ``text/plain`` without a CORS preflight; the API reads only
  ``application/json`` bodies, so such a POST gets 415 before it is parsed.
* **Size**: a body over ``max_body_bytes`` gets 413, whether it announces its length or streams in chunks.

A pure ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which hides client disconnects from the app).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import threading
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, TypeVar

from ossagent.agent.server.errors import APIError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
T = TypeVar("T")

MAX_BODY_BYTES = 8 << 20  # a request body; tool lists and long conversations stay far below
COMPILE_THREADS = 4  # requests compiling their schemas at once; more wait (on the event loop, holding no thread)
MAX_TOOLS = 128  # function tools per request, as OpenAI allows; each schema is bounded by agent/schema_guard.py
MAX_JSON_DEPTH = 128  # nested arrays/objects in a body (a schema may nest 64, see agent/schema_guard.py)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def key_matches(authorization: str | None, api_key: str) -> bool:
    """``Authorization: Bearer KEY`` in constant time (no timing oracle on how much of the key matched)."""
    given = (authorization or "").encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, f"Bearer {api_key}".encode("utf-8", "surrogateescape"))


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on a thread of its own (ended when done, unlike an executor's), awaited without blocking."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if not future.done():  # the awaiting request may have been cancelled meanwhile
            future.set_result(result) if error is None else future.set_exception(error)

    def work() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as exc:  # handed to the awaiting coroutine, whatever it is
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the event loop is gone (server shutting down)
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="ossagent-compile", daemon=True).start()
    return await future


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether parsed JSON nests deeper than ``limit`` (iterative: visits containers, skips scalars)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack += [(c, depth + 1) for c in children if isinstance(c, (dict, list))]
    return False


def is_panic(exc: BaseException) -> bool:
    """A Rust panic surfacing from llguidance (pyo3's ``PanicException``, a ``BaseException``)."""
    return type(exc).__name__ == "PanicException"


def panic_summary(exc: BaseException) -> str:
    """The panic's first line, short: the client gets what failed, never a backtrace."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else "internal error")[:300]


def _split_host(header: str) -> str:
    """``name[:port]`` or ``[v6][:port]`` -> the name, lowercased, without a trailing dot; malformed: unchanged."""
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        port = header[end + 1:] if end > 0 else "x"
        return header[1:end] if not port or (port[0] == ":" and port[1:].isdigit()) else header
    name, sep, port = header.rpartition(":")
    if sep and ":" not in name:
        return name.rstrip(".") if port.isdigit() else header
    return header.rstrip(".")


def host_allowed(header: str | None, bound: str | None, allowed_hosts: Sequence[str] = ()) -> bool:
    """Whether a request naming ``header`` as its Host may reach a server bound to address ``bound``."""
    if header is None:  # HTTP/1.0 without Host: not a browser, so no rebinding
        return True
    name = _split_host(header)
    if "*" in allowed_hosts or name in {h.lower().rstrip(".") for h in allowed_hosts}:
        return True
    try:
        server = ipaddress.ip_address(bound or "")
    except ValueError:  # a unix socket or an unknown address: only the configured names
        return False
    everywhere = server.is_unspecified
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return (name == "localhost" or name.endswith(".localhost")) and (server.is_loopback or everywhere)
    return everywhere or ip == server or (server.is_loopback and ip.is_loopback)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json"


class RequestGuard:
    """ASGI middleware enforcing the checks above on every HTTP request."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = MAX_BODY_BYTES,
                 allowed_hosts: Sequence[str] = ()) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.allowed_hosts = tuple(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        bound = (scope.get("server") or (None, None))[0]
        if not host_allowed(headers.get("host"), bound, self.allowed_hosts):
            await _refuse(send, APIError(400, f"Host {headers.get('host')!r} is not served here (DNS rebinding "
                                              "guard); start the server with --allowed-host NAME to allow it",
                                         code="host_not_allowed"))
            return
        if scope.get("method") not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        body = await self._read(headers, receive, send)
        if body is None:
            return
        if body and not _is_json(headers.get("content-type", "")):  # a bodiless POST (cancel) needs no type
            await _refuse(send, APIError(415, "the request body must be JSON, sent with Content-Type: "
                                              "application/json", code="unsupported_media_type"))
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, headers: dict[str, str], receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None once a refusal was sent (too large) or the client left."""
        too_large = APIError(413, f"the request body is larger than {self.max_body_bytes} bytes",
                             code="request_too_large")
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            await _refuse(send, too_large)
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _refuse(send, too_large)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the buffered body once, then the connection's own messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(send: Send, error: APIError) -> None:
    payload = json.dumps(error.body()).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
