"""A real ``serve`` on loopback whose scripted model each test replaces, for the server tests to share.

A test module takes the fixtures by binding them (``server, client = scripted_server.server,
scripted_server.client``): one server per module, the official openai client per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from ossagent.agent.backends.scripted import ScriptedBackend
from ossagent.agent.server import ServerConfig, create_app
from ossagent.agent.server.serve import RunningServer, start_in_thread

MODEL = "gpt-oss-test"  # the id the server advertises


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    app = create_app(ServerConfig(backend=ScriptedBackend([]), model_id=MODEL))
    running = start_in_thread(app)
    running.app = app  # type: ignore[attr-defined]
    yield running
    running.stop()


@pytest.fixture()
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)


def use(server: RunningServer, backend: Any) -> Any:
    """Serve ``backend`` from now on (the running server keeps its address and settings)."""
    server.app.state.server.config.backend = backend  # type: ignore[attr-defined]
    return backend


def script(server: RunningServer, steps: list[Any], *, constrained: bool = True, **options: Any) -> ScriptedBackend:
    """A scripted model (by default its replies checked against the request's grammar constraints) served
    from now on; ``options`` go to :class:`ScriptedBackend` (e.g. ``context_window``)."""
    return use(server, ScriptedBackend(steps, constrained=constrained, **options))  # type: ignore[no-any-return]
