"""Approvals: allow, deny, ask -> approve, ask -> reject, with the run paused and resumed across a transcript
saved to disk and loaded back; the transcript says who decided what."""

from __future__ import annotations

from pathlib import Path

import pytest

from ossagent.agent.approvals import Decision, PendingCall, Policy
from ossagent.agent.backends.scripted import ScriptedBackend, Step
from ossagent.agent.loop import Agent
from ossagent.agent.transcript import Transcript
from ossagent.tools.base import FunctionDescription, ToolDescription, ToolResult, UserError

WRITE = FunctionDescription("write", "Writes a note.", {"type": "object", "properties": {"text": {"type": "string"}},
                                                         "required": ["text"]})
READ = FunctionDescription("read", "Reads the notes.", {"type": "object", "properties": {}})


class Notes:
    name = "notes"

    def __init__(self) -> None:
        self.notes: list[str] = []

    def description(self) -> ToolDescription:
        return ToolDescription("notes", "A notebook.", (READ, WRITE))

    def call(self, recipient: str, content: str) -> ToolResult:
        import json

        if recipient == "notes.write":
            self.notes.append(json.loads(content)["text"])
            return ToolResult(recipient, "written")
        return ToolResult(recipient, "; ".join(self.notes) or "(empty)")

    def close(self) -> None:
        pass


def write(text: str) -> str:
    return ("<|channel|>commentary to=notes.write <|constrain|>json<|message|>"
            f'{{"text":"{text}"}}<|call|>')


def final(text: str) -> str:
    return f"<|channel|>final<|message|>{text}<|return|>"


POLICY = Policy({"notes.write": "ask"})


def test_allow_runs_and_deny_refuses() -> None:
    notes = Notes()
    with ScriptedBackend([write("a"), final("ok")], constrained=True) as backend:
        result = Agent(backend, tools=[notes]).run("Write a.")  # default policy: allow
    assert result.stop_reason == "final" and notes.notes == ["a"]
    assert "approval" not in result.transcript.messages[-2].meta
    with ScriptedBackend([write("b"), Step(final("refused"), expect="was not approved")], constrained=True) as b:
        result = Agent(b, tools=[notes], approvals=Policy({"notes": "deny"})).run("Write b.")
    assert notes.notes == ["a"]
    answer = result.transcript.messages[-2]
    assert answer.meta["approval"] == {"decision": "rejected", "by": "policy", "policy": "deny"}
    assert answer.meta["is_error"]


@pytest.mark.parametrize("approve", [True, False])
def test_ask_pauses_and_resumes_across_save_and_load(tmp_path: Path, approve: bool) -> None:
    notes = Notes()
    expect = "written" if approve else "too personal"
    with ScriptedBackend([write("secret"), Step(final("done"), expect=expect)], constrained=True) as backend:
        agent = Agent(backend, tools=[notes], approvals=POLICY)
        first = agent.run("Note it.")
        assert first.stop_reason == "approval" and notes.notes == []
        [pending] = first.tool_calls
        assert pending.recipient == "notes.write" and pending.arguments == '{"text":"secret"}'
        path = first.transcript.save(tmp_path / "run.jsonl")
        with pytest.raises(UserError, match="never answered"):
            agent.run("Something else.", transcript=Transcript.load(path))
        again = agent.run(transcript=Transcript.load(path))  # no decision yet: still paused
        assert again.stop_reason == "approval" and again.tool_calls[0].call_id == pending.call_id
        decision = Decision(pending.call_id, approve, None if approve else "too personal", by="alice")
        done = agent.run(transcript=Transcript.load(path), approvals=[decision])
    assert done.stop_reason == "final"
    assert notes.notes == (["secret"] if approve else [])
    saved = Transcript.loads(done.transcript.dumps())
    call, answer = saved.messages[-3], saved.messages[-2]
    record = {"decision": "approved" if approve else "rejected", "by": "alice", "policy": "ask",
              **({} if approve else {"reason": "too personal"})}
    assert call.meta["approval"] == record and answer.meta["approval"] == record


def test_an_approver_decides_on_the_spot() -> None:
    notes = Notes()
    asked: list[PendingCall] = []

    def approver(call: PendingCall) -> Decision:
        asked.append(call)
        return Decision(call.call_id, True, by="user")

    with ScriptedBackend([write("x"), final("ok")], constrained=True) as backend:
        result = Agent(backend, tools=[notes], approvals=POLICY, approver=approver).run("Go.")
    assert result.stop_reason == "final" and notes.notes == ["x"] and asked[0].recipient == "notes.write"


def test_policy_resolution() -> None:
    class Page:
        name = "page"

        def side_effect(self, recipient: str, content: str) -> object | None:
            return "submit" if recipient == "page.click" else None

    class Server:
        name = "srv"

        def default_approval(self, recipient: str, content: str) -> str:
            return "ask"

    p = Policy(side_effects="ask")
    assert p.verdict("page.click", "{}", Page()) == "ask"  # type: ignore[arg-type]
    assert p.verdict("page.scroll", "{}", Page()) == "allow"  # type: ignore[arg-type]
    assert p.verdict("srv.x", "{}", Server()) == "ask"  # type: ignore[arg-type]
    assert Policy({"srv.x": "allow"}).verdict("srv.x", "{}", Server()) == "allow"  # type: ignore[arg-type]
    assert Policy.everything("allow").verdict("srv.x", "{}", Server()) == "allow"  # type: ignore[arg-type]
    assert Policy.everything("deny").verdict("python", "1", None) == "deny"
    with pytest.raises(UserError):
        Policy({"x": "maybe"})
