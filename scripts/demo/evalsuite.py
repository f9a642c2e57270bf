"""The demo model's task families as ``ossagent eval`` suites (the declarative format of
:mod:`ossagent.agent.eval.task`), so the installed package can evaluate the demo model without this folder.

    .venv/bin/python -m scripts.demo.evalsuite            # rewrites agent/eval/demo_suite.json and demo_paraphrase.json

``demo``: the first 300 held-out tasks of :func:`scripts.demo.tasks.generate` (seed 1, split ``eval``: names
never used as answers in training), exactly what ``scripts/demo/evaluate.py`` measures. ``demo-paraphrase``: the
same families asked in wordings the generator never uses (:mod:`scripts.demo.paraphrase`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scripts.demo.tasks import Task, generate

ROOT = Path(__file__).resolve().parents[2]
CITATION = r"【\d+†L\d+(-L\d+)?】"
DEFAULTS = {"temperature": 0.0, "limits": {"max_turns": 8, "max_tokens": 1200}}  # greedy, as the CLI runs it
DEMO_N, DEMO_SEED = 300, 1


def to_record(task: Task, task_id: str) -> dict[str, Any]:
    """One generated task as a declarative eval task: same prompt, world, agent settings and checks."""
    rec: dict[str, Any] = {"id": task_id, "group": task.family, "reasoning": task.effort, "prompt": task.user,
                           "current_date": task.date}
    if task.builtin_tools:
        rec["tools"] = list(task.builtin_tools)
    if task.instructions:
        rec["instructions"] = task.instructions
    if task.files:
        rec["workspace"] = dict(task.files)
    if task.pages:
        rec["pages"] = {url.rsplit("/", 1)[-1]: {"title": title, "text": text}
                        for url, (title, text) in task.pages.items()}
    if task.functions:
        wanted = dict([task.expected_call]) if task.expected_call else {}
        rec["functions"] = [
            {"name": f.name, "description": f.description, "parameters": f.parameters,
             "results": [{"arguments": wanted[f.name], "output": f.impl(wanted[f.name])}] if f.name in wanted else []}
            for f in task.functions
        ]
    if task.response_format:
        rec["response_format"] = task.response_format[1]
    rec["check"] = check_spec(task)
    return rec


def check_spec(task: Task) -> dict[str, Any]:
    """The checks of ``scripts/demo/evaluate.py``: the JSON answer, or the call, the values and (browser) a
    citation."""
    if task.expected_json is not None:
        return {"json": task.expected_json}
    spec: dict[str, Any] = {}
    if task.expected_call is not None:
        spec["call"] = {"name": task.expected_call[0], "arguments": task.expected_call[1]}
    if task.expected:
        spec["contains"] = list(task.expected)
    if task.family == "browser":
        spec["regex"] = CITATION
    return spec


def suite(name: str, tasks: Iterable[tuple[str, Task]]) -> dict[str, Any]:
    return {"name": name, "defaults": DEFAULTS, "tasks": [to_record(t, i) for i, t in tasks]}


def demo_suite(n: int = DEMO_N, seed: int = DEMO_SEED) -> dict[str, Any]:
    return suite("demo", ((f"demo-{i:03d}", t) for i, t in enumerate(generate(n, seed, "eval"))))


def write(data: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=None, separators=(",", ":")) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    from scripts.demo.paraphrase import paraphrase_suite

    ap = argparse.ArgumentParser(description="write the demo eval suites")
    ap.add_argument("--dir", type=Path, default=ROOT / "agent" / "eval")
    args = ap.parse_args(argv)
    write(demo_suite(), args.dir / "demo_suite.json")
    write(paraphrase_suite(), args.dir / "demo_paraphrase.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
