"""``ossagent serve``: bind first, then load the model, then say where the server listens.

The port is bound before the model loads, so a port in use is one line and exit 2 without waiting for the
weights; the address printed is the bound one (the real port for ``--port 0``), printed once uvicorn has
started. Every flag ``serve --help`` lists is honoured: ``--max-tokens``, ``--temperature``, ``--seed``,
``--instructions`` become the defaults of requests that give none, ``--timeout`` bounds each request's run,
``--max-turns`` its turns; the defaults are ``run``'s. ``-q`` keeps only warnings, ``-v`` adds uvicorn's debug
log. Ctrl-C stops the runs in progress, so open streams end with their usual tail (``[DONE]``) before the
server exits.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from ossagent.agent.settings import Settings
from ossagent.tools.base import UserError


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (IPv6 when the host is one); a port in use is a :class:`UserError`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/v1" if ":" in host else f"http://{host}:{port}/v1"


class _Uvicorn(uvicorn.Server):
    """uvicorn that says where it listens once started and stops the runs on Ctrl-C."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None], on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_started = on_started
        self.on_exit = on_exit

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_started()

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.on_exit()
        super().handle_exit(sig, frame)


def _log_level(args: argparse.Namespace) -> str:
    return "warning" if args.quiet else ("debug" if args.verbose else "info")


def cmd_serve(args: argparse.Namespace, settings: Settings, backend_of: Callable[..., tuple[Any, bool]],
              demo_max_tokens: int) -> int:
    from rich.console import Console

    from ossagent.agent.backends.local import DEFAULT_KV_MEMORY_GB
    from ossagent.agent.cli.tools import build_tools
    from ossagent.agent.server import ServerConfig, create_app
    from ossagent.agent.server.conventions import DEMO_MODEL_ID

    console = Console(stderr=True, highlight=False)
    sock = bind(args.host, args.port)  # before the model loads: a busy port fails at once
    names = [t for t in (args.tools or "").split(",") if t]
    build_tools(names, Path(args.workspace), settings, search=args.search)  # fail now, not at the first request
    backend, demo = backend_of(args, settings, console, slots=args.slots)  # None: as the KV budget allows

    def tools() -> list[Any]:
        return build_tools(names, Path(args.workspace), settings, search=args.search,
                           allow_private=args.allow_private)

    model_id = args.model_id or (DEMO_MODEL_ID if demo else "gpt-oss-20b")
    # a local model decodes its slots together (default: 4 where the KV budget holds 4 conversations of 8k
    # tokens, see LocalBackend); other backends only bound concurrent requests
    slots = args.slots or getattr(backend, "slots", 8)
    extra = {"context": args.context} if getattr(args, "context", None) else {}
    config = ServerConfig(
        backend=backend, model_id=model_id, tools_factory=tools if names else None, slots=slots,
        api_key=args.server_api_key, max_turns=args.max_turns, allow_mcp=args.allow_mcp,
        allowed_hosts=tuple(args.allowed_host or ()),
        default_max_tokens=args.max_tokens if args.max_tokens is not None else (demo_max_tokens if demo else None),
        max_time=args.timeout, default_temperature=args.temperature if args.temperature is not None
        else (0.0 if demo else None), default_seed=args.seed, instructions=args.instructions,
        default_reasoning=args.reasoning, encoding=getattr(backend, "encoding", None),
        cors_origins=tuple(args.cors_origin or ()), store_path=settings.home / "responses.sqlite3", **extra,
    )
    app = create_app(config)
    level = _log_level(args)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("ossagent.server").setLevel(level.upper())
    ucfg = uvicorn.Config(app, log_level="warning" if level == "info" else level, access_log=False,
                          timeout_graceful_shutdown=5)
    url = address(sock)
    kv = f", KV cache budget {args.kv_memory or DEFAULT_KV_MEMORY_GB:g} GB" if hasattr(backend, "batch") else ""

    def started() -> None:
        console.print(f"serving {model_id} on {url} ({slots} slot(s){kv}; Ctrl-C stops)")

    server = _Uvicorn(ucfg, started, app.state.server.close_streams)
    server.run(sockets=[sock])
    return 0
