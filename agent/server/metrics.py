"""What the server did, for people and for Prometheus: one log line per request and ``GET /metrics``.

:class:`Observer` is a plain ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which hides client
disconnects): it times each request, reads its status, and when the response is over logs one line on the
``ossagent.server`` logger (method, path, status, seconds, and for generations the tokens and tok/s) and adds
it to the counters. A generation's handler leaves its usage in the ASGI scope under :data:`USAGE_KEY`.

``/metrics`` is the Prometheus text format (version 0.0.4): requests by route (its template, such as
``/v1/responses/{response_id}``: ids do not each make a series) and status, prompt, completion,
reasoning and cached prompt tokens (cache hits: prompt tokens the KV cache already held), generation seconds
and the last request's tokens per second, the queue depth and the requests running, and the turns whose
reasoning the server restored for a client that dropped it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from ossagent.agent.events import Usage

log = logging.getLogger("ossagent.server")
USAGE_KEY = "ossagent.usage"  # scope key: a callable returning the request's Usage once it ran


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.tokens: Counter[str] = Counter()
        self.generation_seconds = 0.0
        self.last_tokens_per_second = 0.0

    def record(self, path: str, status: int, seconds: float, usage: Usage | None) -> None:
        with self._lock:
            self.requests[(path, status)] += 1
            if usage is not None and usage.turns:
                self.tokens["prompt"] += usage.prompt_tokens
                self.tokens["completion"] += usage.completion_tokens
                self.tokens["reasoning"] += usage.reasoning_tokens
                self.tokens["cached"] += usage.cached_tokens
                self.generation_seconds += seconds
                self.last_tokens_per_second = usage.completion_tokens / seconds if seconds > 0 else 0.0

    def render(self, gauges: dict[str, tuple[str, float]]) -> str:
        """The Prometheus text exposition; ``gauges``: name -> (help, value) read at scrape time (a name
        ending in ``_total`` is a counter)."""
        lines = ["# HELP ossagent_requests_total HTTP requests answered, by path and status.",
                 "# TYPE ossagent_requests_total counter"]
        with self._lock:
            for (path, status), n in sorted(self.requests.items()):
                lines.append(f'ossagent_requests_total{{path="{_escape(path)}",status="{status}"}} {n}')
            for kind, text in (("prompt", "Prompt tokens processed."), ("completion", "Tokens generated."),
                               ("reasoning", "Generated tokens of chains of thought."),
                               ("cached", "Prompt tokens the KV cache already held (cache hits).")):
                name = f"ossagent_{kind}_tokens_total"
                lines += [f"# HELP {name} {text}", f"# TYPE {name} counter", f"{name} {self.tokens[kind]}"]
            gauges = {**gauges, "ossagent_last_tokens_per_second":
                      ("Completion tokens per second of the last generation.", self.last_tokens_per_second)}
            lines += ["# HELP ossagent_generation_seconds_total Seconds spent answering generation requests.",
                      "# TYPE ossagent_generation_seconds_total counter",
                      f"ossagent_generation_seconds_total {self.generation_seconds:.6f}"]
        for name, (text, value) in gauges.items():
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {_number(value)}"]
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6f}"


def log_line(method: str, path: str, status: int, seconds: float, usage: Usage | None) -> str:
    line = f"{method} {path} {status} {seconds:.2f}s"
    if usage is not None and usage.turns:
        rate = usage.completion_tokens / seconds if seconds > 0 else 0.0
        line += (f" prompt={usage.prompt_tokens} cached={usage.cached_tokens} completion={usage.completion_tokens}"
                 f" reasoning={usage.reasoning_tokens} {rate:.1f} tok/s")
    return line


class Observer:
    """ASGI middleware: a log line and the counters for every HTTP request."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]
        done = [False]

        def finish() -> None:  # before the last byte leaves: a client that has its answer sees it counted
            if done[0]:
                return
            done[0] = True
            seconds = time.perf_counter() - started
            get_usage: Callable[[], Usage] | None = scope.get(USAGE_KEY)
            usage = get_usage() if get_usage is not None else None
            self.metrics.record(route_label(scope), status[0], seconds, usage)
            log.info(log_line(scope.get("method", "?"), scope.get("path", "?"), status[0], seconds, usage))

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                finish()
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            finish()


def route_label(scope: dict[str, Any]) -> str:
    """The route's template (``/v1/responses/{response_id}``), not the raw path, so ids do not each make a
    series; a path no route matched is ``other``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "other"
