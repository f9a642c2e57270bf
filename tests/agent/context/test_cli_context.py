"""``--context N`` on the command line: the window of the run (and the local engine's cache length)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from ossagent.agent.cli import main
from ossagent.agent.cli.render import EventPrinter
from ossagent.agent.events import Compacted


def test_run_with_a_small_context_stops_with_reason_context(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([]))
    rc = main(["run", "--scripted", str(script), "--context", "300", "--output", "json", "-q", "word " * 500])
    out = json.loads(capsys.readouterr().out)
    assert rc == 3 and out["stop_reason"] == "context" and out["usage"]["turns"] == 0
    assert "300-token context" in out["errors"][0]["message"]


def test_context_must_be_a_positive_number(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--context", "lots", "x"])
    assert "--context: must be a positive number of tokens" in capsys.readouterr().err


def test_local_backend_context_is_the_cache_length(tiny_model: Any) -> None:
    from ossagent.agent.backends.local import LocalBackend

    backend = LocalBackend.from_pretrained(tiny_model, device="cpu", context=512)
    assert backend.context_window == backend.engine.cache.max_len == 512


def test_the_cli_shows_a_compaction() -> None:
    buf = io.StringIO()
    EventPrinter(Console(file=buf, width=200)).on(Compacted("summary", 3210, 712, 40, 4096))
    assert "[context compacted (summary): 3210 -> 712 prompt tokens of a 4096-token window]" in buf.getvalue()
