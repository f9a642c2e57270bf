"""The worked fine-tuning example's pieces (scripts/demo/finetune_example.py): its training mix, its held-out
suite (the original families are the demo suite's own tasks) and its shared folder of gold runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ossagent.agent.eval.suites import load_suite
from scripts.demo.finetune_example import NEW, OLD, build_data, eval_suite, training_tasks


def test_training_mix_interleaves_new_and_replayed_tasks() -> None:
    stems = [stem for stem, _ in training_tasks(2, 4, 30)]
    assert stems == ["convert-h30-0000", "replay-0000-python", "convert-h30-0001", "replay-0001-python",
                     "replay-0002-python", "replay-0003-files"]
    # the new tasks depend on how many are held out; a stem never names two different tasks, so a shared folder
    # of saved runs cannot hand one count's task (maybe held out under the other count) to the other
    by_stem: dict[str, str] = {}
    for held_out in (30, 100):
        for stem, task in training_tasks(150, 0, held_out):
            assert by_stem.setdefault(stem, task.user) == task.user, stem
    assert {t.family for _, t in training_tasks(3, 0, 30)} == {"convert"}


def test_held_out_suite_is_new_tasks_and_the_demo_suites_first_tasks() -> None:
    suite = eval_suite(4)
    assert [t.id for t in suite.tasks] == [f"convert-{i:03d}" for i in range(4)] + [f"demo-{i:03d}" for i in range(4)]
    assert {t.group for t in suite.tasks[:4]} == {"convert"} and NEW != OLD
    demo = load_suite("demo")
    assert [t.digest for t in suite.tasks[4:]] == [t.digest for t in demo.tasks[:4]]
    held_out = {t.prompt for t in eval_suite(30).tasks if t.group == "convert"}
    assert len({t.user for _, t in training_tasks(150, 0, 30)}) > 100
    assert not {t.user for _, t in training_tasks(150, 0, 30)} & held_out  # no held-out question is trained on


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="the gold runs use sandboxed python")
def test_gold_runs_are_saved_once_and_reused(tmp_path: Path) -> None:
    tasks = training_tasks(1, 1, 30)
    first = build_data(tasks, tmp_path)
    saved = sorted(tmp_path.iterdir())
    assert [p.name for p in saved] == ["convert-h30-0000.jsonl", "replay-0000-python.jsonl"]
    stamps = [p.stat().st_mtime_ns for p in saved]
    again = build_data(tasks, tmp_path)  # from the saved transcripts, without running the loop again
    assert [p.stat().st_mtime_ns for p in saved] == stamps
    assert [(e.tokens, e.mask) for e in again] == [(e.tokens, e.mask) for e in first]
    assert all(e.trained > 0 for e in first)
