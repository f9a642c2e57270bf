"""``ossagent run --mcp``: a call that needs approval pauses without a terminal, and resumes refused or approved;
the terminal prompt's answers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from ossagent.agent.approvals import PendingCall
from ossagent.agent.cli.approve import terminal_approver
from ossagent.agent.cli.main import main
from ossagent.agent.transcript import Transcript

SERVER = Path(__file__).with_name("server.py")
CALL = ("<|channel|>commentary to=trips.lookup <|constrain|>json<|message|>{\"word\":\"cat\"}<|call|>")


def script(tmp_path: Path, *replies: str) -> str:
    path = tmp_path / f"script{len(list(tmp_path.glob('script*')))}.json"
    path.write_text(json.dumps(list(replies)))
    return str(path)


def test_run_pauses_for_approval_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "run.jsonl"
    mcp = ["--mcp", f"trips={sys.executable} {SERVER} stdio", "--mcp-trusted", "--workspace", str(tmp_path),
           "--transcript", str(saved), "-q"]
    assert main(["run", "Define cat.", "--scripted", script(tmp_path, CALL), *mcp]) == 0
    assert "waiting for approval: trips.lookup" in capsys.readouterr().err
    assert Transcript.load(saved).pending_tool_call() is not None
    final = "<|channel|>final<|message|>No definition.<|return|>"
    assert main(["run", "x", "--scripted", script(tmp_path, final), "--resume", str(saved), *mcp]) == 2  # a task
    assert "never answered" in capsys.readouterr().err
    assert main(["run", "--scripted", script(tmp_path, final), "--resume", str(saved), "--approve", "none",
                 *mcp]) == 0
    call, answer = list(Transcript.load(saved))[-3:-1]
    assert "was not approved" in answer.text
    assert call.meta["approval"] == {"decision": "rejected", "by": "policy", "policy": "deny"}


def test_terminal_prompt_answers() -> None:
    printed: list[str] = []

    class Console:
        def print(self, text: str, **_: Any) -> None:
            printed.append(text)

    answers = iter(["maybe", "a", "n"])
    approver = terminal_approver(Console(), read=lambda _prompt: next(answers))
    assert approver is not None
    first = approver(PendingCall("c1", "trips.lookup", '{"word":"cat"}'))
    assert first is not None and first.approve and first.by == "user"
    again = approver(PendingCall("c2", "trips.lookup", "{}"))  # "always": not asked again
    assert again is not None and again.approve and again.by == "user (always)"
    other = approver(PendingCall("c3", "trips.plan_trip", "{}"))
    assert other is not None and not other.approve and other.reason == "the user said no"
    assert len(printed) == 2 and "trips.lookup" in printed[0]
