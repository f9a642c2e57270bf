"""Varied training wordings: seeded, behind a flag (the fixed data is what the shipped model was trained on),
the gold policy still answers what each one asks, and none of them is a wording of the paraphrase suite."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable

import pytest

from ossagent.agent.eval.suites import load_suite
from ossagent.model.tokenizer import o200k_harmony
from scripts.demo import paraphrase, wordings
from scripts.demo import tasks as gen
from scripts.demo.tasks import Task


def _digest(tasks: Iterable[Task]) -> str:
    h = hashlib.sha256()
    for t in tasks:
        h.update(json.dumps([t.family, t.effort, t.user, t.date, list(t.expected), sorted(t.files.items()),
                             sorted((k, list(v)) for k, v in t.pages.items()),
                             [s.text if isinstance(s.text, str) else "" for s in t.steps]], sort_keys=True).encode())
    return h.hexdigest()


def test_fixed_wording_is_the_data_the_shipped_model_was_trained_on() -> None:
    # golden: the digests of the generator before wordings.py existed (same tasks, worlds, gold steps and dates)
    assert _digest(gen.generate(600, 0)) == "ca34a0e4b14cf9d3beccb5399ea5b87b4fda3809fc4051686cc61b97db4e590b"
    assert _digest(gen.generate(300, 1, "eval")) == "549b2b33fc51d78b4d6a25d4a2a5d133c842957fb5db753e725301e653d47d6e"
    assert _digest(gen.generate(90, 0, wording="fixed", mix=1.0)) == _digest(gen.generate(90, 0))
    assert _digest(gen.generate(90, 0, wording="varied", mix=0.0)) == _digest(gen.generate(90, 0))


def test_varied_wording_is_seeded_and_changes_about_the_mix_share_of_every_family() -> None:
    fixed = list(gen.generate(3000, 0))
    varied = list(gen.generate(600, 0, wording="varied", mix=0.6))
    assert _digest(varied) == _digest(gen.generate(600, 0, wording="varied", mix=0.6))
    assert _digest(varied) != _digest(gen.generate(600, 1, wording="varied", mix=0.6))
    fixed_forms = {_skeleton(t.user) for t in fixed}
    for family in gen.FAMILIES:
        mine = [t for t in varied if t.family == family]
        changed = sum(_skeleton(t.user) not in fixed_forms for t in mine)
        assert 0.4 * len(mine) <= changed <= 0.8 * len(mine), (family, changed, len(mine))


def test_bad_wording_or_mix_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown wording 'loose'"):
        gen.make_task("python", "low", random.Random(0), wording="loose")
    with pytest.raises(ValueError, match=r"wording mix 1\.5"):
        gen.make_task("python", "low", random.Random(0), wording="varied", mix=1.5)


def test_spelled_numbers() -> None:
    assert [wordings.spelled(n) for n in (3, 13, 20, 42, 99)] == ["three", "thirteen", "twenty", "forty-two",
                                                                    "ninety-nine"]
    assert all(wordings.spelled(n) == paraphrase.words(n) for n in range(100))


def test_every_notation_means_the_same_expression() -> None:
    rng = random.Random(5)
    ops = {"times": "*", "plus": "+", "minus": "-", "×": "*", "−": "-"}
    names = {"product": "*", "sum": "+", "difference": "-"}
    seen = set()
    for _ in range(400):
        a, b, c, op, paren = rng.randint(12, 999), rng.randint(3, 99), rng.randint(1, 999), rng.choice("*+-"), \
            rng.random() < 0.5
        text = wordings.expression(rng, a, op, b, c, paren)
        seen.add(text.replace(str(a), "A").replace(str(b), "B").replace(str(c), "C").replace(wordings.spelled(b), "B"))
        m = re.fullmatch(r"the (\w+) of (\d+) and (\d+),? (?:multiplied by|times) (\d+)", text)
        if m:  # said in English, grouped
            expr = f"({m[2]} {names[m[1]]} {m[3]}) * {m[4]}"
        elif m := re.fullmatch(r"(\d+) (\w+) (?:the product of )?(\d+) (?:and|multiplied by) (\d+)", text):
            expr = f"{m[1]} {ops[m[2]]} {m[3]} * {m[4]}"
        else:
            expr = text
            for word, sign in ops.items():
                expr = expr.replace(word, sign)
            for n in range(99, 2, -1):  # forty-two before forty
                expr = re.sub(rf"\b{wordings.spelled(n)}\b", str(n), expr)
        want = f"({a} {op} {b}) * {c}" if paren else f"{a} {op} {b} * {c}"
        assert eval(expr) == eval(want), (text, expr)  # our own generated arithmetic
    assert len(seen) >= 20  # every notation occurs


def _skeleton(text: str) -> str:
    """A question with its values taken out: numbers, quoted strings, capitalised names and pool words."""
    t = re.sub(r'"[^"]*"(?::[^,]+)?', "V", text)
    t = re.sub(r"\d+", "N", t)
    t = re.sub(r"\b(?:[A-Z][a-z]+)\b", lambda m: m.group(0) if m.start() == 0 else "V", t)
    t = re.sub(r"\b(?:" + "|".join(gen._PROJECTS + gen._PRODUCTS) + r")\b", "V", t)
    return " ".join(re.sub(r"[^a-zA-Z0-9V]+", " ", t).lower().split())


def _template_key(template: str) -> str:
    return " ".join(re.sub(r"[^a-z{}]+", " ", re.sub(r"\{\w+\}", "{}", template.lower())).split())


def test_no_varied_wording_is_a_wording_of_the_paraphrase_suite() -> None:
    held_out = [t for _, t, _ in paraphrase._EXPR_WORDINGS + paraphrase._LIST_WORDINGS] + paraphrase._JSON
    for group in (paraphrase._FILES, paraphrase._BROWSER, paraphrase._FUNCTION):
        held_out += [t for options in group.values() for t in options]
    assert not {_template_key(t) for t in wordings.all_templates()} & {_template_key(t) for t in held_out}
    suite = {_skeleton(t.prompt) for t in load_suite("demo-paraphrase").tasks}
    assert len(suite) > 60  # the skeletons still tell the wordings apart
    training = {_skeleton(t.user) for t in gen.generate(3000, 0, wording="varied", mix=0.6)}
    assert len(training) > 300
    assert not training & suite, sorted(training & suite)[:5]


def test_the_gold_policy_answers_every_varied_question() -> None:
    from scripts.demo.evaluate import check
    from scripts.demo.realgen import gold_sequence

    fixed_forms = {_skeleton(t.user) for t in gen.generate(3000, 0)}
    changed = [t for t in gen.generate(60, 3, wording="varied", mix=0.6) if _skeleton(t.user) not in fixed_forms]
    assert {t.family for t in changed} == set(gen.FAMILIES)
    enc = o200k_harmony()
    for task in changed:  # the real agent loop and tools
        _tokens, _mask, result = gold_sequence(task, enc)
        msgs = result.transcript.messages
        calls = [(m.recipient or "", m.text) for m in msgs if m.is_tool_call]
        assert check(task, msgs[-1].text, calls) == (True, ""), task.user
