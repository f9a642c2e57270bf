"""The task generator: reproducible, every family renders to harmony that parses back, gold runs pass."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from ossagent.agent.harmony.tokens import RETURN, START
from ossagent.model.tokenizer import o200k_harmony
from scripts.demo.evaluate import check
from scripts.demo.realgen import gold_sequence
from scripts.demo.tasks import EFFORTS, FAMILIES, Task, generate, make_task

_RUNS: dict[tuple[str, str, str, str], tuple[list[int], list[bool], Any]] = {}


def _sequence(task: Task) -> tuple[list[int], list[bool], Any]:
    """The task's gold policy run by the real agent loop and tools (once per task in this module)."""
    key = (task.family, task.effort, task.user, task.date)
    if key not in _RUNS:
        _RUNS[key] = gold_sequence(task, o200k_harmony())
    return _RUNS[key]


def _gold(task: Task) -> list[Any]:
    """What the model writes and the tools answer, after the task's user message."""
    msgs = _sequence(task)[2].transcript.messages
    return msgs[next(i for i, m in enumerate(msgs) if m.role == "user") + 1 :]


def test_generation_is_reproducible_and_covers_every_pair() -> None:
    a = [(t.family, t.effort, t.user) for t in generate(30, seed=3)]
    b = [(t.family, t.effort, t.user) for t in generate(30, seed=3)]
    c = [(t.family, t.effort, t.user) for t in generate(30, seed=4)]
    assert a == b
    assert a != c
    assert {(f, e) for f, e, _ in a} == {(f, e) for f in FAMILIES for e in EFFORTS}


def test_unknown_family_or_effort_is_a_clear_error() -> None:
    import random

    with pytest.raises(ValueError, match="unknown family"):
        make_task("poetry", "low", random.Random(0))
    with pytest.raises(ValueError, match="reasoning effort"):
        make_task("python", "extreme", random.Random(0))


@pytest.mark.parametrize("family", FAMILIES)
def test_transcripts_render_and_parse_back(family: str, harmony_encoding: Any) -> None:
    import openai_harmony as oh

    enc = harmony_encoding
    ours = o200k_harmony()
    for task in generate(15, seed=7):
        if task.family != family:
            continue
        msgs = _gold(task)
        tokens, mask, _ = _sequence(task)
        # the prompt is the transcript's prefix up to the first assistant header, ending with the user's message
        first = next(i for i, t in enumerate(tokens) if t == START and ours.decode(tokens[i + 1 : i + 2]) == "assistant")
        prompt = tokens[: first + 2]
        assert ours.decode(prompt[:-2]).endswith(f"<|start|>user<|message|>{task.user}<|end|>")
        assert tokens[-1] == RETURN and mask[-1]
        assert not any(mask[: len(prompt) - 2]), "no loss on system/developer/user tokens"
        completion = tokens[len(prompt) :]
        parsed = enc.parse_messages_from_completion_tokens(completion, oh.Role.ASSISTANT)
        assert [m.author.role for m in parsed][-1] == oh.Role.ASSISTANT
        assert parsed[-1].channel == "final"
        texts = [m.content[0].text for m in parsed]
        assert texts == [m.text for m in msgs]
        # tool messages carry the real tool output, never the model's own text
        for m in msgs:
            if m.role == "tool":
                assert m.text.strip(), f"empty tool output in {task.user!r}"


def test_analysis_length_follows_reasoning_effort() -> None:
    lengths: dict[str, list[int]] = {e: [] for e in EFFORTS}
    for task in generate(60, seed=11):
        msgs = _gold(task)
        lengths[task.effort].append(sum(len(m.text) for m in msgs if m.channel == "analysis" and not m.recipient
                                        and m.role == "assistant"))
    mean = {e: sum(v) / len(v) for e, v in lengths.items()}
    assert mean["low"] < mean["medium"] < mean["high"]


def test_gold_runs_pass_the_checker_and_wrong_answers_fail() -> None:
    for task in generate(45, seed=5, split="eval"):
        msgs = _gold(task)
        final = msgs[-1].text
        calls = [(m.recipient, m.text) for m in msgs if m.role == "assistant" and m.recipient]
        ok, why = check(task, final, calls)
        assert ok, (task.user, why)
        if task.expected_json is not None:
            wrong = json.dumps({**task.expected_json, next(iter(task.expected_json)): "nobody"})
        else:
            wrong = "I do not know."
        assert not check(task, wrong, calls)[0]


def test_python_answers_come_from_running_the_code() -> None:
    task = next(t for t in generate(15, seed=2) if t.family == "python")
    msgs = _gold(task)
    code = next(m.text for m in msgs if m.recipient == "python")
    out = next(m.text for m in msgs if m.role == "tool")
    assert out.strip() == f"The answer is {task.expected[0]}"
    assert "print(" in code
    assert msgs[-1].text == f"{out.strip()}.", "the final answer repeats the program's line (copyable)"


def _spans(tokens: list[int], text: str, enc: Any) -> list[list[int]]:
    """Every token span of ``tokens`` that decodes to ``text`` (with or without one leading space)."""
    return [tokens[i:j] for i in range(len(tokens)) for j in range(i + 1, min(len(tokens), i + 12) + 1)
            if enc.decode(tokens[i:j]).removeprefix(" ") == text]


def test_copied_values_keep_their_tokens_between_question_and_answer() -> None:
    """What the model copies has the same BPE tokens where it reads it and where it writes it (see tasks doc)."""
    from ossagent.model.tokenizer import o200k_harmony

    enc = o200k_harmony()
    for task in generate(30, seed=9, split="eval"):
        msgs = _gold(task)
        source = enc.encode_ordinary(task.user + "".join(m.text for m in msgs if m.role == "tool"))
        written = enc.encode_ordinary("\n".join(m.text for m in msgs if m.role == "assistant"
                                                and (m.recipient or m.channel == "final")))
        if task.expected_json is not None:
            values = [str(v) for v in task.expected_json.values()]
        elif task.expected_call is not None:
            values = [str(v) for v in task.expected_call[1].values()]
        else:
            values = list(task.expected)
        for v in values:
            spans = _spans(written, v, enc)
            assert spans, (task.user, v)
            assert any(source[i : i + len(sp)] == sp for sp in spans for i in range(len(source))), (
                task.family, task.user, v)


def test_json_values_and_list_items_follow_the_same_two_tokens_where_read_and_written() -> None:
    """After a separator that occurs many times (``":``, ``,``) the model needs the token before it (the key, the
    item before) to know what comes next; those two tokens must be the same in the question and in the answer."""
    from ossagent.model.tokenizer import o200k_harmony

    enc = o200k_harmony()
    seen = set()
    for task in generate(60, seed=5, split="eval"):
        if task.family == "json":
            question, answer = enc.encode_ordinary(task.user), enc.encode_ordinary(_gold(task)[-1].text)
            assert task.expected_json is not None
            for key, value in task.expected_json.items():
                text = json.dumps(value)
                window = enc.encode_ordinary(f'{key}":{text.removesuffix(chr(34))}')  # key, separator, value
                assert len(window) >= 3
                for toks in (question, answer):
                    assert any(toks[k : k + len(window)] == window for k in range(len(toks))), (task.user, key)
            seen.add("json")
        elif task.family == "python" and "[" in task.user:
            listed = task.user[task.user.index("[") : task.user.index("]") + 1]
            code = next(m.text for m in _gold(task) if m.recipient == "python")
            assert f" {listed}" in code
            span = enc.encode_ordinary(f" {listed[:-1]}")  # "]" merges with what follows it
            assert 220 not in span  # no " " token before an item (as ", ".join would put there)
            for text in (task.user, code):
                toks = enc.encode_ordinary(text)
                assert any(toks[k : k + len(span)] == span for k in range(len(toks))), text
            seen.add("list")
    assert seen == {"json", "list"}


def test_tasks_carry_varied_current_dates() -> None:
    dates = {t.date for t in generate(40, seed=2)}
    assert len(dates) > 30
    assert all(len(d) == 10 and d[4] == d[7] == "-" for d in dates)


def test_held_out_browser_towns_are_never_training_answers() -> None:
    """600 made-up towns, too many to memorise; the evaluation asks about towns no training task asks about."""
    from scripts.demo.tasks import _TOWNS

    assert len(set(_TOWNS)) == 600

    def asked(split: str, seed: int) -> set[str]:
        users = [t.user for t in generate(200, seed=seed, split=split) if t.family == "browser"]
        return {town for town in _TOWNS for u in users if re.search(rf"\b{town}\b", u)}

    train_towns, eval_towns = asked("train", 0), asked("eval", 1)
    assert len(train_towns) > 20 and len(eval_towns) > 20
    assert not train_towns & eval_towns


def test_every_town_page_puts_each_fact_on_the_same_line() -> None:
    """One page layout (as on a templated site): the line a fact is on does not depend on the town."""
    layouts = set()
    for task in generate(60, seed=5):
        if task.family != "browser":
            continue
        for _, text in task.pages.values():
            lines = text.split("\n\n")
            layouts.add(tuple(next(k for k in ("founded in", "inhabitants", "is led by", "lies on") if k in line)
                              for line in lines[1:]))
    assert layouts == {("founded in", "inhabitants", "is led by", "lies on")}
