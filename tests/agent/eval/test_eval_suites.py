"""A suite of each kind end to end with a scripted model: known scores, a wrong answer, a crashed tool."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ossagent.agent.eval.runner import RunConfig, Trial, run_suite
from ossagent.agent.eval.suites import load_suite
from ossagent.agent.eval.summary import summarize
from tests.agent.eval.scripts import EXAMPLES, Scripts, call, final, js, python


def test_multiple_choice_mmlu(tmp_path: Path) -> None:
    answers = {"astro-1": "B", "chem-1": "A", "maths-1": "D"}  # chem-1 is wrong (Na is C)
    scripts = Scripts(lambda t: [final(js({"answer": answers[t.task.id]}))])
    records = run_suite(load_suite(EXAMPLES / "mmlu_sample.jsonl"), scripts, tmp_path, progress=True)
    scripts.check()
    assert [(r["task"], r["passed"]) for r in records] == [("astro-1", True), ("chem-1", False), ("maths-1", True)]
    assert records[1]["reason"] == "chose A, not C"
    assert all(r["effort"] == "medium" and r["completion_tokens"] > 0 and r["tool_calls"] == 0 for r in records)
    # the letter came through the constrained format, rendered in the developer message
    prompt = scripts.backends[0][1].encoding.decode(scripts.backends[0][1].prompts[0])
    assert '"enum":["A","B","C","D"]' in prompt.replace(" ", "") and "B) Mercury" in prompt
    s = summarize(records)
    assert s["all"]["score"] == pytest.approx(2 / 3) and s["by_group"]["chemistry"]["all"] == 0.0
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all((tmp_path / json.loads(ln)["transcript"]).is_file() for ln in lines)


def test_gpqa_csv_shuffles_choices_reproducibly() -> None:
    tasks = load_suite(EXAMPLES / "gpqa_sample.csv").tasks
    again = load_suite(EXAMPLES / "gpqa_sample.csv").tasks
    assert [t.prompt for t in tasks] == [t.prompt for t in again]
    for t in tasks:
        letter = t.check["choice"]
        right = {"Photon", "-1"}
        line = next(ln for ln in t.prompt.splitlines() if ln.startswith(f"{letter}) "))
        assert line[3:] in right


def test_maths_aime(tmp_path: Path) -> None:
    answers = {"sum-multiples": 2318, "digits": 20, "remainder": 2}  # digits is wrong (21)
    scripts = Scripts(lambda t: [final(js({"answer": answers[t.task.id]}))])
    records = run_suite(load_suite(EXAMPLES / "aime_sample.jsonl"), scripts, tmp_path,
                        RunConfig(efforts=("low", "high")))
    scripts.check()
    assert [r["passed"] for r in records] == [True, True, False, False, True, True]
    s = summarize(records)
    assert s["efforts"] == ["low", "high"]
    assert s["by_effort"]["low"]["score"] == pytest.approx(2 / 3)
    assert s["by_effort"]["low"]["ci"][0] < 2 / 3 < s["by_effort"]["low"]["ci"][1]


def _tool_replies(trial: Trial) -> list[str]:
    config = "[server]\nhost = 127.0.0.1\nport = 8080\n"
    return {
        "count-errors": [python("print(sum('ERROR' in l for l in open('/mnt/data/app.log')))"), final("3")],
        "set-port": [call("files.write", {"path": "config.ini", "content": config}), final("Done: port 8080.")],
        "csv-total": [  # the first program kills the python process: a crashed tool; the model tries again
            python("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),
            python("import csv\nrows = list(csv.DictReader(open('/mnt/data/sales.csv')))\n"
                   "open('/mnt/data/total.txt', 'w').write(str(sum(float(r['amount']) for r in rows)))",
                   think="It crashed; try again."),
            final("The total, 49.75, is in total.txt."),
        ],
        "town-river": [
            call("browser.search", {"query": "Ashford river"}),
            call("browser.open", {"id": "https://offline.invalid/ashford.html"}),
            final("Ashford lies on the Tamar 【1†L4】."),
        ],
        "refund-order": [  # refunds the wrong order: the calls check fails
            call("functions.get_order", {"order_id": 4411}),
            final("Order 4411 (kettle, 30.00) can be refunded. Shall I refund it to your card?"),
            call("functions.refund_order", {"order_id": 4412}),
            final("Refunded 30.00 to your card."),
        ],
    }[trial.task.id]


def test_tool_use_declarative(tmp_path: Path) -> None:
    scripts = Scripts(_tool_replies)
    records = run_suite(load_suite(EXAMPLES / "tool_use.json"), scripts, tmp_path)
    scripts.check()
    by = {r["task"]: r for r in records}
    assert {k: r["passed"] for k, r in by.items()} == {
        "count-errors": True, "set-port": True, "csv-total": True, "town-river": True, "refund-order": False}
    assert by["csv-total"]["tool_errors"] == 1 and by["csv-total"]["tool_calls"] == 2
    assert "refund_order" in by["refund-order"]["reason"] and by["refund-order"]["turns"] == 4
    # the simulated user's turn reached the model, and the function answered from its scripted results
    refund = scripts.backends[-1][1]
    second_turn = refund.encoding.decode(refund.prompts[2])
    assert "Yes, please refund it to my original card." in second_turn
    assert '"status":"delivered"' in second_turn.replace(" ", "")
    assert "Ashford lies on the Tamar" in (tmp_path / by["town-river"]["transcript"]).read_text()
    s = summarize(records)
    assert s["all"]["score"] == pytest.approx(0.8) and s["all"]["tool_calls"] == pytest.approx(8 / 5)


def test_a_crashing_function_and_a_model_that_stops(tmp_path: Path) -> None:
    suite_file = tmp_path / "suite.json"
    suite_file.write_text(json.dumps({"tasks": [
        {"id": "boom", "prompt": "Look up order 1.", "functions": [
            {"name": "get_order", "parameters": {"type": "object", "properties": {"id": {"type": "integer"}}},
             "error": "database unreachable"}], "check": {"contains": ["unreachable"]}},
        {"id": "cut", "prompt": "Say hi.", "limits": {"max_turns": 1}, "check": {"answer": "hi"}},
    ]}))
    scripts = Scripts(lambda t: {"boom": [call("functions.get_order", {"id": 1}),
                                          final("The database is unreachable.")],
                                 "cut": [call("functions.nothing", {})]}[t.task.id])
    records = run_suite(load_suite(suite_file), scripts, tmp_path / "run")
    by = {r["task"]: r for r in records}
    assert by["boom"]["passed"] and by["boom"]["tool_errors"] == 1
    assert not by["cut"]["passed"] and by["cut"]["error"] is not None  # the script broke the grammar: a crash
    assert by["cut"]["reason"].startswith("crashed: ScriptError")
    assert summarize(records)["all"]["crashed"] == 1
    assert not math.isnan(summarize(records)["all"]["score"])


def test_tools_are_closed_when_the_agent_cannot_be_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial whose Agent fails to build is a crashed trial, and the tools made for it (a sandboxed python, a
    browser) are closed, not left running."""
    import ossagent.agent
    from ossagent.agent.eval import runner

    closed: list[str] = []

    class Tool:
        def __init__(self, name: str) -> None:
            self.name = name

        def close(self) -> None:
            closed.append(self.name)
            raise RuntimeError("closing failed")  # one tool's failure to close does not keep the others open

    def broken_agent(*args: object, **kwargs: object) -> None:
        raise ValueError("bad instructions")

    monkeypatch.setattr(runner, "_tools", lambda task, ws, site: [Tool("python"), Tool("browser")])
    monkeypatch.setattr(ossagent.agent, "Agent", broken_agent)
    suite_file = tmp_path / "suite.json"
    suite_file.write_text(json.dumps({"tasks": [{"id": "t", "prompt": "Say hi.", "check": {"answer": "hi"}}]}))
    records = run_suite(load_suite(suite_file), Scripts(lambda t: [final("hi")]), tmp_path / "run")
    assert records[0]["reason"] == "crashed: ValueError: bad instructions"
    assert closed == ["python", "browser"]
