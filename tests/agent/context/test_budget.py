"""The context budget: how a window is resolved, tool outputs bounded in tokens per tool, and the texts the
model reads about cuts and summaries (golden files under golden/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ossagent.agent.backends.scripted import ScriptedBackend
from ossagent.agent.context.budget import (
    ContextBudget,
    bound_tool_output,
    cut_note_budget,
    cut_note_compaction,
)
from ossagent.agent.context.summary import REQUEST, SCHEMA, summary_text
from ossagent.agent.limits import Limits
from ossagent.agent.loop import Agent
from ossagent.tools.base import UserError

GOLDEN = Path(__file__).parent / "golden"
TEXTS = {
    "cut_note_budget": cut_note_budget(1234, 500, "browser.open"),
    "cut_note_compaction": cut_note_compaction(321, "browser.open"),
    "summary_request": REQUEST,
    "summary_message": summary_text({"facts": ["the vault code is 4721"], "open_tasks": ["read page 9"],
                                     "citations": ["\u30103\u2020L10-L15\u3011"]}, 7),
    "summary_schema": json.dumps(SCHEMA, indent=1),
}


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_model_visible_texts_are_golden(name: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(TEXTS[name], encoding="utf-8")
        pytest.fail(f"wrote new golden file {path}; review it and commit it")
    assert TEXTS[name] == path.read_text(encoding="utf-8")


def test_golden_files_have_no_strays() -> None:
    assert {p.stem for p in GOLDEN.glob("*.txt")} == set(TEXTS)


def test_window_is_the_smaller_of_the_limit_and_the_backend() -> None:
    backend = ScriptedBackend([], context_window=8192)
    b = ContextBudget.resolve(Limits(), backend)
    assert (b.window, b.reserve, b.limit, b.tool_output) == (8192, 2048, 6144, 2048)
    b = ContextBudget.resolve(Limits(context=4096, reserve=500, max_turn_tokens=100), backend)
    assert (b.window, b.reserve, b.limit) == (4096, 500, 3596)
    assert ContextBudget.resolve(Limits(max_turn_tokens=100), backend).reserve == 100
    unknown = ContextBudget.resolve(Limits(), ScriptedBackend([]))
    assert unknown.window is None and unknown.fits(10**9) and unknown.room(5) is None


@pytest.mark.parametrize(("limits", "message"), [
    (Limits(context=100), "too small"),
    (Limits(context=1000, reserve=900), "must be within 1..500"),
])
def test_bad_budgets_are_the_users_fault(limits: Limits, message: str) -> None:
    with pytest.raises(UserError, match=message):
        ContextBudget.resolve(limits, ScriptedBackend([]))


@pytest.mark.parametrize("kw", [{"context": 0}, {"reserve": 0}, {"tool_output_tokens": 3},
                                {"tool_output_limits": {"browser": 2}}])
def test_limits_check_the_budget_fields(kw: dict[str, Any]) -> None:
    with pytest.raises(UserError):
        Limits(**kw)


def test_tool_outputs_are_bounded_in_tokens_per_tool(enc: Any) -> None:
    budget = ContextBudget(None, 0, 400, {"browser": 100, "functions.logs": 60})
    text = " ".join(f"line{i}" for i in range(2000))
    n = len(enc.encode_ordinary(text))
    for recipient, bound in (("browser.open", 100), ("functions.logs", 60), ("python", 400)):
        out, cut = bound_tool_output(text, recipient, budget, enc)
        assert cut > 0 and len(enc.encode_ordinary(out)) <= bound + 2  # +2: tokens merging at the seams
        head, note, tail = out.partition(cut_note_budget(cut, bound, recipient))
        assert note and text.startswith(head) and text.endswith(tail)
        assert len(enc.encode_ordinary(head)) + len(enc.encode_ordinary(tail)) + cut in range(n - 2, n + 3)
    short = "fits easily"
    assert bound_tool_output(short, "browser.open", budget, enc) == (short, 0)
    assert bound_tool_output(text, "python", ContextBudget(), enc) == (text, 0)


def test_the_loop_bounds_a_tool_output_before_the_model_sees_it(enc: Any) -> None:
    big = "x " * 5000

    def dump() -> str:
        """Dump the logs."""
        return big

    call = ('<|channel|>analysis<|message|>Look.<|end|><|start|>assistant to=functions.dump<|channel|>commentary '
            '<|constrain|>json<|message|>{}<|call|>')
    done = "<|channel|>final<|message|>Seen.<|return|>"
    with ScriptedBackend([call, done], context_window=4096) as backend:
        result = Agent(backend, functions=[dump], limits=Limits(tool_output_limits={"functions.dump": 64})).run("go")
    answer = next(m for m in result.transcript if m.role == "tool")
    assert len(enc.encode_ordinary(answer.text)) <= 66 and "64-token budget for functions.dump" in answer.text
    assert answer.meta["metadata"]["cut_tokens"] > 4900
    assert answer.text in enc.decode(backend.prompts[1])
