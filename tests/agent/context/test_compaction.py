"""Compaction through the loop (a rule model, no engine) and as a property over random conversations."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ossagent.agent import prompt as hp
from ossagent.agent.backends.scripted import ScriptedBackend
from ossagent.agent.context.budget import ContextBudget
from ossagent.agent.context.compaction import Compactor
from ossagent.agent.context.summary import SummaryResult
from ossagent.agent.events import Compacted, ErrorEvent
from ossagent.agent.limits import Limits
from ossagent.agent.loop import Agent
from ossagent.agent.transcript import Msg, Transcript, tool_result, user
from ossagent.tools.base import FunctionDescription, ToolDescription

TASK = "Read the notes page by page, then tell me the vault code."


def long_run(rule_model: Any, notes: Any, replies: Any, turns: int, window: int, **limits: Any) -> Any:
    call_reply, final_reply, _ = replies

    def policy(prompt: str, turn: int) -> str:
        return call_reply(turn) if turn <= turns else final_reply("4721" if "vault code is 4721" in prompt else "?")

    model = rule_model(policy, context_window=window)
    agent = Agent(model, tools=[notes(words=60)], limits=Limits(max_turns=turns + 1, **limits))
    stream = agent.stream(TASK)
    return model, list(stream), stream.result()


def test_trim_then_summary_keep_a_long_run_inside_its_window(rule_model: Any, notes: Any, replies: Any) -> None:
    model, events, result = long_run(rule_model, notes, replies, turns=30, window=1024)
    assert result.stop_reason == "final" and result.text == "4721"
    compactions = [e for e in events if isinstance(e, Compacted)]
    assert compactions[0].step == "trim" and {"trim", "summary"} <= {c.step for c in compactions}
    for c in compactions:
        assert c.tokens_after < c.tokens_before and c.window == 1024
    assert max(model.peaks) <= 1024  # every prompt plus its completion fit
    # The summaries' own calls count in the usage; the transcript kept every message in full.
    assert result.usage.turns == 31 and model.summaries == sum(c.step == "summary" for c in compactions)
    tools = [m for m in result.transcript if m.role == "tool"]
    assert len(tools) == 30 and all(m.text.startswith(f"Page {i + 1}. ") for i, m in enumerate(tools))
    # The transcript resumes with its compactions: the same prompt after a save and a load.
    again = Transcript.loads(result.transcript.dumps())
    assert [m.to_dict() for m in again.prompt_messages()] == [m.to_dict() for m in result.transcript.prompt_messages()]


def test_without_compaction_the_run_stops_with_reason_context(rule_model: Any, notes: Any, replies: Any) -> None:
    model, events, result = long_run(rule_model, notes, replies, turns=30, window=1024, compaction=False)
    assert result.stop_reason == "context" and not any(isinstance(e, Compacted) for e in events)
    err = [e for e in events if isinstance(e, ErrorEvent)][-1]
    assert err.kind == "limit" and "1024-token context holds 768" in err.message and "compaction is off" in err.message
    assert max(model.peaks) <= 1024 and model.summaries == 0
    assert len(result.transcript) == 3 * model.turns + 1  # the task, then analysis, call and answer per turn


def test_a_task_larger_than_the_window_stops_cleanly() -> None:
    with ScriptedBackend([], context_window=512) as backend:
        result = Agent(backend).run("word " * 2000)
    assert result.stop_reason == "context" and result.usage.turns == 0
    assert result.transcript.messages[0].text == "word " * 2000


def test_a_summary_that_is_not_json_is_the_models_fault_and_the_run_stops(
    rule_model: Any, notes: Any, replies: Any
) -> None:
    call_reply, final_reply, _ = replies
    model = rule_model(lambda _p, turn: call_reply(turn), summarise=lambda _p: final_reply("no json here"),
                       context_window=1024)
    stream = Agent(model, tools=[notes(words=60)], limits=Limits(max_turns=40)).stream(TASK)
    events = list(stream)
    result = stream.result()
    assert result.stop_reason == "context" and model.summaries >= 1
    assert any(e.kind == "model" and "summary for compaction failed" in e.message for e in events
               if isinstance(e, ErrorEvent))


# ---------------------------------------------------------------------------------------------- property
NOTES = ToolDescription("notes", "The notebook.", (FunctionDescription("read", "Read one page.", {
    "type": "object", "properties": {"page": {"type": "integer"}}, "required": ["page"]}),))
CONFIG = hp.PromptConfig(instructions="Answer from the notes only.", builtin_tools=(NOTES,),
                         function_tools=(FunctionDescription("lookup", "Look a word up.", None),),
                         current_date="2026-12-04")

rounds = st.lists(st.tuples(st.sampled_from(["tool", "tool", "tool", "final", "user"]),
                            st.integers(min_value=0, max_value=400)), min_size=1, max_size=40)


def round_messages(kind: str, size: int, i: int) -> list[Msg]:
    words = " ".join(f"r{i}w{j}" for j in range(size))
    if kind == "user":
        return [user(f"Question {i}: {words[:200]}")]
    think = Msg("assistant", f"Thinking {i} {words[:size]}", channel="analysis")
    if kind == "final":
        return [think, Msg("assistant", f"Answer {i}.", channel="final")]
    call = Msg("assistant", json.dumps({"page": i}), recipient="notes.read", channel="commentary",
               content_type="<|constrain|>json")
    return [think, call, tool_result("notes.read", f"Page {i}: {words}", channel="commentary")]


def fake_summary(messages: list[Msg], prompt: list[int], max_tokens: int) -> SummaryResult:
    return SummaryResult({"facts": [f"a prompt of {len(prompt)} tokens"], "open_tasks": [], "citations": []}, 20)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=rounds, window=st.integers(min_value=400, max_value=2000))
def test_system_and_developer_prefix_is_byte_identical_after_every_compaction(
    enc: Any, rounds: list[tuple[str, int]], window: int
) -> None:
    budget = ContextBudget.resolve(Limits(context=window), ScriptedBackend([]))
    compactor = Compactor(CONFIG, enc, budget, fake_summary)
    head = hp.render_prompt(CONFIG, [], enc)[: -len(hp.assistant_start(enc))]
    head_bytes = enc.decode_bytes(head)
    transcript = Transcript([user("The task: read the notes.")])
    originals = list(transcript.messages)
    for i, (kind, size) in enumerate(rounds):
        new = round_messages(kind, size, i)
        transcript.extend(new)
        originals += new
        size_before = len(compactor.prompt(transcript.messages))
        if budget.fits(size_before):
            continue
        transcript.messages = compactor.compact(transcript.messages).messages
        prompt = compactor.prompt(transcript.messages)
        assert enc.decode_bytes(prompt[: len(head)]) == head_bytes
        assert len(prompt) <= size_before
        # Nothing was deleted or rewritten: the originals in order, summaries between them.
        kept = [m for m in transcript.messages if not m.meta.get("summary")]
        assert [(m.role, m.text, m.recipient) for m in kept] == [(m.role, m.text, m.recipient) for m in originals]
        # The task at hand and the last round stay verbatim.
        shown = transcript.prompt_messages()
        last_user = [m for m in originals if m.role == "user"][-1]
        assert last_user in shown and shown[-len(new):] == new
