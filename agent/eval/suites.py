"""Suites from local files in their usual public formats (nothing is downloaded).

* Multiple choice, MMLU style: JSON lines ``{"question", "choices": [...], "answer": 1 | "B", "subject"}``
  (the Hugging Face layout) or MMLU's CSV files (no header: question, A, B, C, D, answer letter; a folder of
  them is one suite, one group per file); GPQA's CSV (``Question``, ``Correct Answer``, ``Incorrect Answer
  1..3``; the choices are shuffled by a seed drawn from the question, so every run asks the same order).
  The answer is a constrained final format: ``{"answer": "B"}``.
* Exact-answer maths, AIME style: JSON lines ``{"problem" | "question", "answer": 204}``; the answer is
  ``{"answer": <integer>}``.
* Tool-use tasks in the declarative format of :mod:`ossagent.agent.eval.task`: a JSON file
  ``{"name", "defaults": {...}, "tasks": [...]}`` or one task per line.

A record's kind is told by its fields, so one loader reads them all. Built-in suites by name: ``demo`` (the
demo model's five task families, held out) and ``demo-paraphrase`` (the same families in other wordings).
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ossagent.agent.eval.task import EvalTask, parse_task
from ossagent.tools.base import UserError

LETTERS = "ABCDEFGHIJ"
BUILTIN = {"demo": "demo_suite.json", "demo-paraphrase": "demo_paraphrase.json"}
MC_INSTRUCTIONS = "Answer the multiple-choice question with the letter of the correct choice."
MATHS_INSTRUCTIONS = "Solve the problem. The final answer is an integer."


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[EvalTask, ...]
    defaults: dict[str, Any]  # run settings the suite recommends: temperature, limits

    def select(self, limit: int | None = None, ids: set[str] | None = None) -> Suite:
        tasks = [t for t in self.tasks if ids is None or t.id in ids]
        return Suite(self.name, tuple(tasks[:limit] if limit else tasks), self.defaults)


def mc_schema(n: int) -> dict[str, Any]:
    return {"type": "object", "properties": {"answer": {"type": "string", "enum": list(LETTERS[:n])}},
            "required": ["answer"], "additionalProperties": False}


MATHS_SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"],
                "additionalProperties": False}


def multiple_choice(task_id: str, question: str, choices: list[str], answer: str, group: str = "") -> dict[str, Any]:
    """A declarative record for one multiple-choice question (``answer`` is a letter)."""
    if not 2 <= len(choices) <= len(LETTERS):
        raise UserError(f"task {task_id}: a multiple-choice question needs 2 to {len(LETTERS)} choices")
    listed = "\n".join(f"{LETTERS[i]}) {c}" for i, c in enumerate(choices))
    return {"id": task_id, "group": group, "prompt": f"{question.strip()}\n\n{listed}",
            "instructions": MC_INSTRUCTIONS, "response_format": mc_schema(len(choices)), "check": {"choice": answer}}


def _letter(answer: Any, n: int, where: str) -> str:
    if isinstance(answer, int) and 0 <= answer < n:
        return LETTERS[answer]
    if isinstance(answer, str) and answer.strip().upper() in LETTERS[:n]:
        return answer.strip().upper()
    raise UserError(f"{where}: answer {answer!r} is neither a choice letter nor an index below {n}")


def _gpqa(row: dict[str, Any], task_id: str) -> dict[str, Any]:
    right = str(row["Correct Answer"]).strip()
    choices = [right] + [str(row[f"Incorrect Answer {i}"]).strip() for i in (1, 2, 3)]
    random.Random(str(row["Question"])).shuffle(choices)
    group = str(row.get("High-level domain") or row.get("Subdomain") or "")
    return multiple_choice(task_id, str(row["Question"]), choices, LETTERS[choices.index(right)], group)


def record_to_task(row: dict[str, Any], where: str, index: int, defaults: dict[str, Any] | None = None,
                   group: str = "") -> EvalTask:
    """Any supported record (declarative, MMLU, GPQA, AIME) as an :class:`EvalTask`."""
    task_id = str(row.get("id") if row.get("id") is not None else row.get("ID", index))
    if "prompt" in row or "check" in row:
        rec = row
    elif "choices" in row and "answer" in row:
        choices = [str(c) for c in row["choices"]]
        rec = multiple_choice(task_id, str(row["question"]), choices, _letter(row["answer"], len(choices), where),
                              str(row.get("subject") or group))
    elif "Correct Answer" in row:
        rec = _gpqa(row, task_id)
    elif ("problem" in row or "question" in row) and "answer" in row:
        try:
            value = int(str(row["answer"]).strip())
        except ValueError:
            raise UserError(f"{where}: a maths answer must be an integer, not {row['answer']!r}") from None
        rec = {"id": task_id, "group": str(row.get("group") or group), "instructions": MATHS_INSTRUCTIONS,
               "prompt": str(row.get("problem") or row.get("question")), "response_format": MATHS_SCHEMA,
               "check": {"integer": value}}
    else:
        raise UserError(f"{where}: not a task of a known kind (fields {sorted(row)}): expected a declarative task "
                        "(prompt, check), multiple choice (question, choices, answer), GPQA or maths (problem, answer)")
    return parse_task(rec, where, defaults)


def _mmlu_csv(path: Path) -> list[EvalTask]:
    group = path.stem.removesuffix("_test").removesuffix("_val").removesuffix("_dev")
    tasks = []
    with path.open(newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.reader(fh), start=1):
            if len(row) < 4:
                raise UserError(f"{path}:{i}: an MMLU row is question, choices..., answer letter")
            rec = multiple_choice(f"{group}-{i}", row[0], row[1:-1], _letter(row[-1], len(row) - 2, f"{path}:{i}"),
                                  group)
            tasks.append(parse_task(rec, f"{path}:{i}"))
    return tasks


def _csv(path: Path) -> list[EvalTask]:
    with path.open(newline="", encoding="utf-8") as fh:
        first = next(csv.reader(fh), [])
    if "Correct Answer" not in first:
        return _mmlu_csv(path)
    with path.open(newline="", encoding="utf-8") as fh:
        return [record_to_task(row, f"{path}:{i}", i) for i, row in enumerate(csv.DictReader(fh), start=2)]


def _json(path: Path) -> tuple[str, list[EvalTask], dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not JSON: {exc}") from exc
    if isinstance(data, list):
        data = {"tasks": data}
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise UserError(f"{path}: a suite file is {{\"name\", \"defaults\", \"tasks\": [...]}} or a list of tasks")
    task_defaults = dict(data.get("task_defaults") or {})
    tasks = [record_to_task(r, f"{path} task {i}", i, task_defaults) for i, r in enumerate(data["tasks"], start=1)]
    return str(data.get("name") or path.stem), tasks, dict(data.get("defaults") or {})


def _jsonl(path: Path) -> list[EvalTask]:
    tasks = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{i}: not JSON: {exc}") from exc
        tasks.append(record_to_task(row, f"{path}:{i}", i))
    return tasks


def _file(path: Path) -> tuple[str, list[EvalTask], dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _json(path)
    if suffix == ".jsonl":
        return path.stem, _jsonl(path), {}
    if suffix == ".csv":
        return path.stem, _csv(path), {}
    raise UserError(f"{path}: suites are .json, .jsonl or .csv files (or a folder of them)")


def builtin_path(name: str) -> Path:
    return Path(__file__).with_name(BUILTIN[name])


def load_suite(spec: str | Path) -> Suite:
    """A built-in suite by name, a suite file, or a folder of suite files (one group per file when the
    records name none)."""
    if str(spec) in BUILTIN:
        path = builtin_path(str(spec))
        if not path.is_file():
            raise UserError(f"the built-in suite {spec} is not part of this installation")
        _, tasks, defaults = _file(path)
        return _checked(Suite(str(spec), tuple(tasks), defaults))
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".json", ".jsonl", ".csv"))
        if not files:
            raise UserError(f"{path}: no .json, .jsonl or .csv suite files in this folder")
        tasks, defaults = [], {}
        for f in files:
            _, found, d = _file(f)
            defaults.update(d)
            tasks += [t if t.group else _regroup(t, f.stem) for t in found]
        return _checked(Suite(path.name, tuple(tasks), defaults))
    if not path.is_file():
        raise UserError(f"suite {str(spec)!r} is neither a file, a folder nor a built-in suite "
                        f"({', '.join(BUILTIN)})")
    name, tasks, defaults = _file(path)
    return _checked(Suite(name, tuple(tasks), defaults))


def _regroup(task: EvalTask, group: str) -> EvalTask:
    return replace(task, group=group)


def _checked(suite: Suite) -> Suite:
    seen: set[str] = set()
    for t in suite.tasks:
        if t.id in seen:
            raise UserError(f"suite {suite.name}: two tasks share the id {t.id!r}")
        seen.add(t.id)
    if not suite.tasks:
        raise UserError(f"suite {suite.name} has no tasks")
    return suite
