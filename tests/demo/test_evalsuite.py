"""The demo model's families as ``ossagent eval`` suites: the shipped files are what the generator writes, the
gold policy scores 100% through the eval runner, and the paraphrases ask what they say in new wordings."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ossagent.agent.eval.runner import RunConfig, Trial, run_suite
from ossagent.agent.eval.suites import Suite, builtin_path, load_suite
from ossagent.model.tokenizer import o200k_harmony
from scripts.demo import tasks as gen
from scripts.demo.evalsuite import demo_suite, write
from scripts.demo.paraphrase import paraphrase_suite, paraphrased, words
from scripts.demo.realgen import GoldBackend


def test_shipped_suites_are_what_the_generator_writes(tmp_path: Path) -> None:
    write(demo_suite(), tmp_path / "demo.json")
    write(paraphrase_suite(), tmp_path / "para.json")
    assert (tmp_path / "demo.json").read_bytes() == builtin_path("demo").read_bytes(), \
        "run python -m scripts.demo.evalsuite"
    assert (tmp_path / "para.json").read_bytes() == builtin_path("demo-paraphrase").read_bytes()
    demo = load_suite("demo")
    assert len(demo.tasks) == 300 and {t.group for t in demo.tasks} == set(gen.FAMILIES)
    assert demo.defaults == {"temperature": 0.0, "limits": {"max_turns": 8, "max_tokens": 1200}}


def test_the_gold_policy_scores_every_task_through_the_runner(tmp_path: Path) -> None:
    generated = list(gen.generate(15, 1, "eval"))  # one task per family and effort, as in the suite
    suite = load_suite("demo").select(15)
    enc = o200k_harmony()
    by_id = {t.id: g for t, g in zip(suite.tasks, generated, strict=True)}
    assert [t.prompt for t in suite.tasks] == [g.user for g in generated]

    def gold(trial: Trial) -> GoldBackend:
        return GoldBackend(by_id[trial.task.id], enc)

    records = run_suite(suite, gold, tmp_path, RunConfig())
    assert all(r["passed"] for r in records), [r["reason"] for r in records if not r["passed"]]
    assert [r["effort"] for r in records[:3]] == ["low", "medium", "high"]  # each task at its own effort
    # and a wrong answer fails: the json task's answer with another value
    json_task = next(t for t in suite.tasks if t.group == "json")
    wrong = dict(json_task.check["json"])
    wrong[next(iter(wrong))] = "other"
    one = Suite("x", (json_task,), suite.defaults)
    bad = run_suite(one, lambda _t: _Answer(json.dumps(wrong, separators=(",", ":"))), tmp_path / "bad")
    assert not bad[0]["passed"] and bad[0]["reason"].startswith("JSON differs")


class _Answer:
    vocab_size, takes_hooks = None, False  # the backend protocol

    def __init__(self, text: str) -> None:
        self.enc = self.encoding = o200k_harmony()
        self.text = text

    def generate(self, prompt: object, params: object, hook: object = None) -> list[int]:
        return list(self.enc.encode(f"<|channel|>final<|message|>{self.text}<|return|>", allowed_special="all"))


def test_paraphrases_mean_what_they_say() -> None:
    assert [words(n) for n in (7, 40, 68, 300, 915)] == [
        "seven", "forty", "sixty-eight", "three hundred", "nine hundred and fifteen"]
    trained = [re.escape(t).replace(r"\{expr\}", ".*") for t in (
        "What is {expr}?", "Compute {expr}.", "Please calculate {expr} for me.", "Use python to evaluate {expr}.",
        "I need the value of {expr}.")]
    items = paraphrased()
    assert len(items) == 150
    for task, meta in items:
        assert not any(re.fullmatch(t, task.user) for t in trained), task.user
        if meta["kind"] == "expr" and meta["numbers"] in ("plain", "compact"):
            expr = re.search(r"[\d(][\d()+\-* ]*\d", task.user)
            assert expr is not None and str(eval(expr.group(0))) == task.expected[0], task.user
        if meta["kind"] in ("files", "browser", "function"):
            assert task.expected and all(e for e in task.expected)
    styles = {m["numbers"] for _, m in items if m["kind"] == "expr"}
    assert styles == {"plain", "compact", "unicode", "words-ops", "spelled-small", "english"}
    assert {m["tool_named"] for _, m in items} == {True, False}
