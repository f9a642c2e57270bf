"""`ossagent serve` with a local model: 4 slots decoded together by default when the KV budget holds 4
conversations of 8k tokens; --slots and --kv-memory reach the batch engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ossagent.agent.cli.main import main

pytestmark = pytest.mark.slow


def served(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> Any:
    """Run `ossagent serve` up to the point where it would listen; the app's server state."""
    import ossagent.agent.cli.serve as serve

    apps: list[Any] = []

    class Bound:  # stands in for uvicorn: records the app, says it started, closes the bound socket
        def __init__(self, config: Any, on_started: Any, on_exit: Any) -> None:
            self.config, self.on_started = config, on_started

        def run(self, sockets: list[Any]) -> None:
            apps.append(self.config.app)
            self.on_started()
            for sock in sockets:
                sock.close()

    monkeypatch.setattr(serve, "_Uvicorn", Bound)
    assert main(["serve", *argv, "--port", "0", "-q"]) == 0
    (app,) = apps
    return app.state.server


def test_serve_gives_a_local_model_four_slots_by_default(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    server = served(monkeypatch, ["--model", str(tiny_model)])
    backend = server.config.backend
    assert server.config.slots == server.scheduler.slots == backend.batch.max_batch == 4
    assert backend.batch.pool.budget == 2_000_000_000
    assert "(4 slot(s), KV cache budget 2 GB;" in " ".join(capsys.readouterr().err.split())
    server = served(monkeypatch, ["--model", str(tiny_model), "--slots", "3", "--kv-memory", "0.5"])
    assert server.config.slots == server.config.backend.batch.max_batch == 3
    assert server.config.backend.batch.pool.budget == 500_000_000


def test_a_kv_budget_that_is_not_positive_is_refused(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--model", str(tiny_model), "--kv-memory", "0", "-q"]) == 2
    assert "--kv-memory must be a positive number of GB" in capsys.readouterr().err
