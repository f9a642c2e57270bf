"""Runs: resume after an interruption, pass@k, the remote backend against ``ossagent serve``, scorers, the CLI."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ossagent.agent import RemoteBackend, ScriptedBackend
from ossagent.agent.cli.main import main as ossagent_main
from ossagent.agent.eval.runner import RunConfig, Trial, per_thread, read_results, run_suite
from ossagent.agent.eval.scorers import JudgeScorer, extract_choice, extract_integer, load_scorer
from ossagent.agent.eval.suites import Suite, load_suite
from ossagent.agent.eval.summary import pass_at_k, summarize, wilson
from ossagent.agent.server import ServerConfig, create_app
from ossagent.agent.server.serve import start_in_thread
from ossagent.tools.base import UserError
from tests.agent.eval.scripts import EXAMPLES, Scripts, final, js

MMLU = EXAMPLES / "mmlu_sample.jsonl"
RIGHT = {"astro-1": "B", "chem-1": "C", "maths-1": "D"}


def test_pass_at_k_hand_worked() -> None:
    # n=5 samples, c=2 correct, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)  # pass@1 is the fraction correct
    assert pass_at_k(5, 0, 3) == 0.0 and pass_at_k(3, 2, 2) == 1.0  # fewer failures than k: always a pass
    for n, c, k in [(10, 3, 4), (20, 1, 5), (7, 6, 1), (100, 13, 10)]:
        assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_wilson_interval_hand_worked() -> None:
    lo, hi = wilson(8, 10)  # p=0.8, n=10, z=1.96: centre 0.7167, half-width 0.2265
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)


def _mc_replies(trial: Trial) -> list[str]:
    letter = RIGHT[trial.task.id]
    if trial.task.id == "chem-1" and trial.sample == 0:
        letter = "A"  # wrong in the first sample only
    return [final(js({"answer": letter}))]


def _strip_time(summary: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(summary, sort_keys=True)
    data = json.loads(text)
    for cell in [data["all"], *data["by_effort"].values()]:
        cell.pop("seconds")
    return data


def test_summary_grouped_by_a_meta_field_and_several_samples() -> None:
    def rec(task: str, sample: int, passed: bool, style: str) -> dict[str, Any]:
        return {"key": f"{task}@low#{sample}", "task": task, "group": "python", "effort": "low", "sample": sample,
                "score": float(passed), "passed": passed, "meta": {"numbers": style}, "completion_tokens": 10}

    records = [rec("a", 0, True, "plain"), rec("a", 1, False, "plain"), rec("b", 0, False, "words"),
               rec("b", 1, False, "words")]
    s = summarize(records, ks=(1, 2), group_by="numbers")
    assert s["by_group"] == {"plain": {"low": 0.5, "all": 0.5}, "words": {"low": 0.0, "all": 0.0}}
    cell = s["by_effort"]["low"]
    assert cell["tasks"] == 2 and cell["trials"] == 4 and cell["pass_at_k"] == {"1": 0.25, "2": 0.5}
    # two samples per task: the interval is over the two task means (0.5 and 0), not over four trials
    assert cell["ci"][0] == 0.0 and cell["ci"][1] == pytest.approx(0.25 + 1.959963984540054 * 0.25)


def test_resume_after_interruption_gives_the_same_summary(tmp_path: Path) -> None:
    suite = load_suite(MMLU)
    config = RunConfig(efforts=("low", "high"), samples=2)
    whole = run_suite(suite, Scripts(_mc_replies), tmp_path / "whole", config)
    expected = summarize(whole, ks=(1, 2))
    assert expected["by_effort"]["low"]["pass_at_k"] == {"1": pytest.approx(5 / 6), "2": 1.0}

    started: list[str] = []

    def interrupted(trial: Trial) -> ScriptedBackend:
        if len(started) == 4:
            raise KeyboardInterrupt
        started.append(trial.key)
        return ScriptedBackend(_mc_replies(trial), constrained=True)

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, interrupted, out, config)
    assert [r["key"] for r in read_results(out)] == started
    with (out / "results.jsonl").open("a") as fh:
        fh.write('{"key": "maths-1@lo')  # a line cut short by a kill
    rest = Scripts(_mc_replies)
    records = run_suite(suite, rest, out, config)
    assert len(rest.keys) == 8 and not set(rest.keys) & set(started)  # only what was missing ran
    assert _strip_time(summarize(records, ks=(1, 2))) == _strip_time(expected)

    again = Scripts(_mc_replies)
    run_suite(suite, again, out, config)
    assert again.keys == []  # a finished run has nothing left to do
    with pytest.raises(UserError, match="holds another run"):
        run_suite(suite, again, out, replace(config, samples=3))
    changed = Suite(suite.name, (replace(suite.tasks[0], source={**suite.tasks[0].source, "prompt": "new"}),
                                 *suite.tasks[1:]), suite.defaults)
    run_suite(changed, again, out, config)
    assert sorted(again.keys) == sorted(f"astro-1@{e}#{s}" for e in ("low", "high") for s in (0, 1))


def test_remote_backend_against_ossagent_serve(tmp_path: Path) -> None:
    # the server's model answers each question (chem-1 wrongly), in whatever order two workers ask; its replies
    # are checked against the grammar the server derives from the request (the remote backend sends the format)
    def answer(prompt: str) -> str:
        return final(js({"answer": "A" if "sodium" in prompt else "B" if "planet" in prompt else "D"}))

    model = ScriptedBackend([answer] * 3, constrained=True)
    server = start_in_thread(create_app(ServerConfig(backend=model, model_id="gpt-oss-test")))
    try:
        source = per_thread(lambda: RemoteBackend(server.url, "gpt-oss-test", retries=0))
        records = run_suite(load_suite(MMLU), source, tmp_path, RunConfig(efforts=("high",)), workers=2)
    finally:
        server.stop()
    model.assert_consumed()
    prompts = [model.encoding.decode(p) for p in model.prompts]
    assert all("Reasoning: high" in p and "Answer the multiple-choice question" in p for p in prompts)
    assert sum(r["passed"] for r in records) == 2 and all(r["completion_tokens"] > 0 for r in records)


def test_judge_scorer_and_user_scorer(tmp_path: Path) -> None:
    suite_file = tmp_path / "open.jsonl"
    suite_file.write_text("\n".join(json.dumps(t) for t in [
        {"id": "capital", "prompt": "What is the capital of Norway?", "meta": {"reference": "Oslo"}},
        {"id": "colour", "prompt": "What colour is the sky on a clear day?"}]) + "\n")
    suite = load_suite(suite_file)
    with pytest.raises(UserError, match="no 'check'"):
        run_suite(suite, Scripts(lambda t: []), tmp_path / "none")
    agent_replies = {"capital": "Oslo.", "colour": "Green."}
    judge_model = ScriptedBackend([final(js({"score": 1, "reason": "Matches the reference."})),
                                   final(js({"score": 0.2, "reason": "The sky is blue."}))], constrained=True)
    judge = JudgeScorer(judge_model)
    records = run_suite(suite, Scripts(lambda t: [final(agent_replies[t.task.id])]), tmp_path / "judged",
                        scorer=judge)
    judge_model.assert_consumed()
    assert [(r["score"], r["passed"]) for r in records] == [(1.0, True), (0.2, False)]
    assert records[1]["reason"] == "The sky is blue."
    first = judge_model.encoding.decode(judge_model.prompts[0])
    assert "Reference answer:\nOslo" in first and "Assistant's answer:\nOslo." in first

    scorer_file = tmp_path / "my_scorer.py"
    scorer_file.write_text("def score(task, outcome):\n    return 0.5 if 'Oslo' in (outcome.answer or '') else 0.0\n")
    scorer = load_scorer(f"{scorer_file}:score")
    records = run_suite(suite, Scripts(lambda t: [final(agent_replies[t.task.id])]), tmp_path / "user",
                        scorer=scorer)
    assert [r["score"] for r in records] == [0.5, 0.0] and not any(r["passed"] for r in records)
    assert summarize(records)["all"]["score"] == 0.25


def test_answer_extraction_without_constraints() -> None:
    assert extract_choice('{"answer":"c"}') == "C"
    assert extract_choice("Looking at the options, the answer is (B).") == "B"
    assert extract_choice(" D ") == "D" and extract_choice("I cannot tell.") is None
    assert extract_integer("... so the result is \\boxed{1,204}.") == 1204
    assert extract_integer("2 + 3 = 5, then 5 * 4 = 20") == 20
    assert extract_integer(None, {"answer": 33}) == 33


@pytest.fixture()
def scripted_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "replies.json"
    answers = {"sum-multiples": 2318, "digits": 21, "remainder": 3}
    path.write_text(json.dumps({k: [final(js({"answer": v}))] for k, v in answers.items()}))
    yield path


def cli(argv: list[str]) -> int:
    """``ossagent eval ARGV`` through the real entry point."""
    return ossagent_main(["eval", *argv])


def test_cli_runs_continues_and_compares(tmp_path: Path, scripted_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    base = [str(EXAMPLES / "aime_sample.jsonl"), "--scripted", str(scripted_file), "-q"]
    args = [*base, "--out", str(out)]
    assert cli([*args, "--reasoning", "low"]) == 0
    shown = capsys.readouterr().out
    assert "67%" in shown and "aime_sample" in shown
    summary = json.loads((out / "summary.json").read_text())
    assert summary["by_effort"]["low"]["score"] == pytest.approx(2 / 3)
    assert cli([*args, "--reasoning", "low", "--json"]) == 0  # continues: nothing left, same figures
    assert json.loads(capsys.readouterr().out)["by_effort"]["low"]["score"] == pytest.approx(2 / 3)
    assert cli([*args, "--reasoning", "high"]) == 2
    assert "holds another run" in capsys.readouterr().err
    assert cli([*base, "--out", str(tmp_path / "other"), "--n", "1", "--k", "2"]) == 2
    assert "pass@k needs" in capsys.readouterr().err
    assert cli([*base, "--out", str(tmp_path / "b"), "--reasoning", "low"]) == 0
    capsys.readouterr()
    assert cli(["--compare", str(out), str(tmp_path / "b")]) == 0
    shown = capsys.readouterr().out
    assert "run vs b" in shown and "+0 pts" in shown
