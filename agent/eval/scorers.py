"""Scoring a run: the task's own checks, a user's Python callable, or a judge model.

A scorer is any callable ``(task, outcome) -> Score | bool | float``; :func:`load_scorer` finds one named
``module:function`` or ``path/to/file.py:function``. :class:`JudgeScorer` asks a model (any backend) to grade
the answer in a JSON Schema-constrained final format.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ossagent.agent.eval.task import EvalTask
from ossagent.tools.base import UserError

PREDICATE_MARK = "__ossagent_eval_predicate__"


@dataclass
class Outcome:
    """What one run produced, as scorers see it. ``workspace`` exists only while scorers run."""

    task: EvalTask
    effort: str
    answer: str | None  # the last final answer; None when the run stopped without one
    stop_reason: str
    output: Any = None  # the answer parsed as JSON when the task sets a response format
    calls: list[tuple[str, str]] = field(default_factory=list)  # (recipient, arguments) of every tool call
    workspace: Path | None = None
    transcript: Any = None
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Score:
    value: float  # 0..1
    passed: bool
    reason: str = ""  # why it failed (or the judge's words)


Scorer = Callable[[EvalTask, Outcome], "Score | bool | float"]


def to_score(raw: Score | bool | float, threshold: float = 1.0) -> Score:
    if isinstance(raw, Score):
        return raw
    if isinstance(raw, bool):
        return Score(float(raw), raw)
    if isinstance(raw, int | float):
        value = float(raw)
        if not 0.0 <= value <= 1.0:
            raise UserError(f"a scorer returned {value}; scores are within [0, 1]")
        return Score(value, value >= threshold)
    raise UserError(f"a scorer must return a Score, a bool or a float, not {type(raw).__name__}")


# ------------------------------------------------------------------------------------------ extraction


def _json_answer(answer: str | None, output: Any) -> Any:
    if output is not None:
        return output
    if answer is None:
        return None
    text = answer.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    try:
        return json.loads(fenced.group(1) if fenced else text)
    except json.JSONDecodeError:
        return None


def extract_choice(answer: str | None, output: Any = None) -> str | None:
    """The chosen letter: the constrained ``{"answer": "B"}``, else ``Answer: B`` or a lone letter."""
    data = _json_answer(answer, output)
    if isinstance(data, dict) and isinstance(data.get("answer"), str) and len(data["answer"].strip()) == 1:
        return data["answer"].strip().upper()
    if not answer:
        return None
    m = re.search(r"answer\W{0,5}(?:is\W{0,3})?\(?([A-J])\b", answer, re.I)
    if m:
        return m.group(1).upper()
    m = re.fullmatch(r"\W*\(?([A-J])\)?\W*", answer.strip())
    return m.group(1).upper() if m else None


def extract_integer(answer: str | None, output: Any = None) -> int | None:
    """The integer answer: the constrained ``{"answer": 204}``, else ``\\boxed{204}``, else the last integer."""
    data = _json_answer(answer, output)
    if isinstance(data, dict) and isinstance(data.get("answer"), int | str):
        try:
            return int(str(data["answer"]).replace(",", "").strip())
        except ValueError:
            pass
    if not answer:
        return None
    boxed = re.findall(r"\\boxed\{\s*(-?[\d,]+)\s*\}", answer)
    found = boxed or re.findall(r"-?\d[\d,]*", answer)
    try:
        return int(found[-1].replace(",", "")) if found else None
    except ValueError:
        return None


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold().rstrip(".")


# -------------------------------------------------------------------------------------------- checks


def _call_made(calls: list[tuple[str, str]], want: dict[str, Any]) -> bool:
    for recipient, args in calls:
        if recipient != f"functions.{want['name']}":
            continue
        try:
            if "arguments" not in want or json.loads(args) == want["arguments"]:
                return True
        except json.JSONDecodeError:
            continue
    return False


def _file_check(spec: dict[str, Any], workspace: Path | None) -> str:
    if workspace is None:
        return "no workspace to check"
    path = (workspace / spec["path"]).resolve()
    if not path.is_relative_to(workspace.resolve()):
        return f"file check path {spec['path']!r} leaves the workspace"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return f"file {spec['path']} does not exist"
    if "equals" in spec and text != spec["equals"]:
        return f"file {spec['path']} is {text[:200]!r}, expected {spec['equals'][:200]!r}"
    if "contains" in spec and spec["contains"] not in text:
        return f"file {spec['path']} lacks {spec['contains'][:200]!r}"
    return ""


def run_predicate(source: str, outcome: Outcome) -> tuple[bool, str]:
    """Run a check written in Python in the sandbox, over the run's workspace (``/mnt/data``)."""
    import tempfile

    from ossagent.tools.python import PythonTool

    try:
        ast.parse(source, mode="eval")
        body = f"ok = ({source})"
    except SyntaxError:
        body = source
    values = {"answer": outcome.answer, "output": outcome.output, "calls": [list(c) for c in outcome.calls]}
    code = "import json as _json\n" + "".join(
        f"{k} = _json.loads({json.dumps(v, ensure_ascii=False)!r})\n" for k, v in values.items()
    ) + f"{body}\nprint({PREDICATE_MARK!r}, _json.dumps(bool(ok)))\n"
    with tempfile.TemporaryDirectory(prefix="ossagent-eval-check-") as spare:
        tool = PythonTool(outcome.workspace or Path(spare), timeout=60.0)
        try:
            result = tool.call("python", code)
        finally:
            tool.close()
    m = re.search(rf"{PREDICATE_MARK} (true|false)", result.text)
    if m is None:
        return False, f"the predicate did not run: {result.text[-400:]}"
    return m.group(1) == "true", "" if m.group(1) == "true" else "the predicate is false"


def check(task: EvalTask, outcome: Outcome) -> Score:
    """The task's own checks (see :mod:`ossagent.agent.eval.task`): 1 when every one passes, else 0."""
    spec = task.check
    if not spec:
        raise UserError(f"task {task.id} has no 'check': give the run a scorer (--scorer, --judge)")
    if outcome.answer is None:
        return Score(0.0, False, f"no final answer (stopped: {outcome.stop_reason}) {outcome.errors}".strip())
    answer = outcome.answer
    problems: list[str] = []
    if "answer" in spec and _norm(answer) != _norm(str(spec["answer"])):
        problems.append(f"answer {answer!r} is not {spec['answer']!r}")
    missing = [s for s in spec.get("contains", []) if str(s).lower() not in answer.lower()]
    if missing:
        problems.append(f"missing {missing} in {answer!r}")
    if "regex" in spec and not re.search(spec["regex"], answer):
        problems.append(f"{answer!r} does not match {spec['regex']!r}")
    if "json" in spec and _json_answer(answer, outcome.output) != spec["json"]:
        problems.append(f"JSON differs: {answer}")
    if "choice" in spec and extract_choice(answer, outcome.output) != str(spec["choice"]).upper():
        problems.append(f"chose {extract_choice(answer, outcome.output)}, not {spec['choice']}")
    if "integer" in spec and extract_integer(answer, outcome.output) != int(spec["integer"]):
        problems.append(f"answered {extract_integer(answer, outcome.output)}, not {spec['integer']}")
    wanted = ([spec["call"]] if "call" in spec else []) + list(spec.get("calls", []))
    for want in wanted:
        if not _call_made(outcome.calls, want):
            problems.append(f"expected call functions.{want['name']}({want.get('arguments')}), got {outcome.calls}")
    if "file" in spec:
        why = _file_check(spec["file"], outcome.workspace)
        if why:
            problems.append(why)
    if "predicate" in spec and not problems:
        ok, why = run_predicate(spec["predicate"], outcome)
        if not ok:
            problems.append(why)
    return Score(0.0 if problems else 1.0, not problems, "; ".join(problems))


# ------------------------------------------------------------------------------------- user scorers


def load_scorer(spec: str) -> Scorer:
    """``module:function`` or ``path/to/file.py:function``."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise UserError(f"a scorer is named module:function or file.py:function, not {spec!r}")
    if where.endswith(".py"):
        path = Path(where).expanduser()
        if not path.is_file():
            raise UserError(f"scorer file {path} does not exist")
        mod_spec = importlib.util.spec_from_file_location(f"ossagent_eval_scorer_{path.stem}", path)
        if mod_spec is None or mod_spec.loader is None:
            raise UserError(f"cannot load scorer file {path}")
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise UserError(f"cannot import scorer module {where}: {exc}") from exc
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UserError(f"{where} has no callable {name!r}")
    return fn  # type: ignore[no-any-return]


JUDGE_SCHEMA = {"type": "object", "properties": {"score": {"type": "number", "minimum": 0, "maximum": 1},
                                                 "reason": {"type": "string"}},
                "required": ["score", "reason"], "additionalProperties": False}
JUDGE_INSTRUCTIONS = ("You grade an assistant's answer to a task. Compare it with the reference when one is given. "
                      "Give a score between 0 (wrong) and 1 (fully correct) and a one-sentence reason.")


class JudgeScorer:
    """A model grades the answer: one run of an :class:`~ossagent.agent.Agent` over ``backend`` whose final
    answer is constrained to ``schema`` (``{"score": 0..1, "reason": "..."}`` by default).

    rubric: extra grading instructions. reference: how to get a reference answer from a task (default: the
    task's ``meta["reference"]``, else its ``answer`` check). A run the judge cannot grade scores 0."""

    def __init__(self, backend: Any, *, rubric: str | None = None, schema: dict[str, Any] | None = None,
                 reasoning: str = "low", threshold: float = 0.5, temperature: float = 0.0,
                 reference: Callable[[EvalTask], str | None] | None = None) -> None:
        self.backend = backend
        self.rubric, self.reasoning, self.threshold, self.temperature = rubric, reasoning, threshold, temperature
        self.schema = schema or JUDGE_SCHEMA
        self.reference = reference or _reference
        self._lock = threading.Lock()  # one grading at a time: a local backend runs one generation

    def prompt(self, task: EvalTask, outcome: Outcome) -> str:
        ref = self.reference(task)
        parts = [f"Task:\n{task.prompt}", *(f"Follow-up from the user:\n{t}" for t in task.user_turns)]
        if ref is not None:
            parts.append(f"Reference answer:\n{ref}")
        parts.append(f"Assistant's answer:\n{outcome.answer if outcome.answer is not None else '(no answer)'}")
        return "\n\n".join(parts)

    def __call__(self, task: EvalTask, outcome: Outcome) -> Score:
        from ossagent.agent import Agent

        instructions = JUDGE_INSTRUCTIONS + (f"\n{self.rubric}" if self.rubric else "")
        agent = Agent(self.backend, instructions=instructions, reasoning=self.reasoning,
                      response_format=self.schema, temperature=self.temperature)
        try:
            with self._lock:
                result = agent.run(self.prompt(task, outcome))
        finally:
            agent.close()
        if not result.ok or not isinstance(result.output, dict) or "score" not in result.output:
            return Score(0.0, False, f"the judge gave no grade (stopped: {result.stop_reason})")
        value = min(1.0, max(0.0, float(result.output["score"])))
        return Score(value, value >= self.threshold, str(result.output.get("reason", "")))


def _reference(task: EvalTask) -> str | None:
    ref = task.meta.get("reference", task.check.get("answer"))
    return None if ref is None else str(ref)
