"""Gold transcripts through the real agent loop and tools: complete, reproducible, and correctly masked."""

from __future__ import annotations

import itertools

import pytest

from ossagent.model.tokenizer import o200k_harmony
from scripts.demo.evaluate import check
from scripts.demo.realgen import gold_sequence
from scripts.demo.tasks import FAMILIES, generate

RETURN, START = 200002, 200006


@pytest.fixture(scope="module")
def enc():  # type: ignore[no-untyped-def]
    return o200k_harmony()


def test_every_family_runs_to_a_correct_final_answer_reproducibly(enc) -> None:  # type: ignore[no-untyped-def]
    tasks = [t for t in generate(15, seed=21) if t.effort != "medium"]  # every family at low and high
    assert {t.family for t in tasks} == set(FAMILIES)
    for task in tasks:
        tokens, mask, result = gold_sequence(task, enc)
        assert result.stop_reason == "final", task.user
        calls = [(m.recipient, m.text) for m in result.transcript.messages if m.is_tool_call]
        assert check(task, result.text, calls) == (True, ""), task.user
        assert tokens[-1] == RETURN and mask[-1]
        assert not mask[0]
        # the loss covers exactly what the model writes: split at <|start|> and look at each header
        starts = [i for i, t in enumerate(tokens) if t == START] + [len(tokens)]
        for a, b in itertools.pairwise(starts):
            header = enc.decode(tokens[a + 1 : a + 3])
            if header.startswith("assistant"):  # the loop itself may write <|start|>assistant
                assert all(mask[a + 2 : b]), (header, task.user)
            else:
                assert not any(mask[a:b]), (header, task.user)
        again, mask2, _ = gold_sequence(task, enc)
        assert (again, mask2) == (tokens, mask), f"not reproducible: {task.user}"


def test_files_task_with_forced_restart_shows_the_real_state_lost_note(enc) -> None:  # type: ignore[no-untyped-def]
    task = next(t for t in generate(200, seed=0) if t.family == "files" and t.python_restart_before == 1)
    _tokens, _, result = gold_sequence(task, enc)
    tool_texts = [m.text for m in result.transcript.messages if m.role == "tool"]
    assert "restarted" in tool_texts[1] and "restarted" not in tool_texts[0]
    assert check(task, result.text, [])[0]


def test_browser_search_shows_the_target_town_only(enc) -> None:  # type: ignore[no-untyped-def]
    """The real offline search finds only the asked town's page (no page shares a query word but the town), so
    no other town's facts are on screen; the system message carries the task's own date."""
    tasks = [t for t in generate(30, seed=4, split="eval") if t.family == "browser"]
    assert len({t.date for t in tasks}) > 1
    for task in tasks:
        tokens, _, result = gold_sequence(task, enc)
        assert f"Current date: {task.date}" in enc.decode(tokens[:40])
        search = next(m.text for m in result.transcript.messages if m.role == "tool")
        target_title = next(iter(task.pages.values()))[0]  # the first page is the asked town's
        assert search.count("【") == 1 and f"【0†{target_title}†" in search, search
