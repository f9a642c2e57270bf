"""One evaluation task, as read from a suite file: what the user says, the world the agent works in, and
how its answer is checked.

The declarative format (a JSON object; every field but ``id`` and ``prompt`` optional)::

    {"id": "fix-port",                      # unique within the suite
     "group": "files",                      # a row of the summary table (subject, family)
     "prompt": "Set the port in config.ini to 8080.",
     "user_turns": ["Thanks. Now also ..."],  # simulated user (Tau-bench style): sent after each final answer
     "reasoning": "low",                    # the task's own effort (when the run does not set efforts)
     "instructions": "...",                 # developer message
     "tools": ["python", "files", "browser"],  # built-in tools; the browser searches the task's pages only
     "workspace": {"config.ini": "port = 80\n"},  # files written into the workspace (/mnt/data)
     "pages": {"oslo.html": {"title": "Oslo", "text": "para one\n\npara two"}},  # the browser's offline site
     "functions": [{"name": "get_order", "description": "...", "parameters": {JSON Schema},
                    "results": [{"arguments": {"id": 7}, "output": {"status": "shipped"}}],
                    "default": "no such order", "error": null}],  # "error": the function raises (a crash)
     "response_format": {JSON Schema},      # the final answer must follow it (constrained decoding)
     "current_date": "2026-01-31",
     "limits": {"max_turns": 8, "max_tokens": 1200},
     "check": {...}}                        # see CHECKS; every check given must pass

Checks: ``answer`` (the final answer equals it, spaces and case aside), ``contains`` (substrings, any case),
``regex``, ``json`` (the answer parses to this value), ``choice`` (a letter: multiple choice),
``integer`` (maths), ``call`` / ``calls`` (functions called with these arguments), ``file`` (``path`` plus
``equals`` or ``contains``: the workspace after the run) and ``predicate`` (Python run in the sandbox over
the workspace, with ``answer``, ``output`` and ``calls`` defined; an expression, or a program setting ``ok``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ossagent.tools.base import UserError

TOOLS = ("python", "files", "browser")
CHECKS = ("answer", "contains", "regex", "json", "choice", "integer", "call", "calls", "file", "predicate")
FIELDS = ("id", "group", "prompt", "user_turns", "reasoning", "instructions", "tools", "workspace", "pages",
          "functions", "response_format", "current_date", "limits", "check", "meta")
LIMIT_FIELDS = ("max_turns", "max_tokens", "max_time", "max_turn_tokens")


@dataclass(frozen=True)
class FunctionSpec:
    """A function tool whose answers are scripted: ``results`` by arguments, else ``default``; ``error``
    makes every call raise (a tool that crashes)."""

    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None
    results: tuple[tuple[Any, Any], ...] = ()
    default: Any = '{"error": "no record matches these arguments"}'
    error: str | None = None

    def answer(self, arguments: dict[str, Any]) -> str:
        if self.error is not None:
            raise RuntimeError(self.error)
        for args, output in self.results:
            if args == arguments:
                return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
        return self.default if isinstance(self.default, str) else json.dumps(self.default, ensure_ascii=False)


@dataclass(frozen=True)
class EvalTask:
    id: str
    prompt: str
    group: str = ""
    user_turns: tuple[str, ...] = ()
    reasoning: str | None = None
    instructions: str | None = None
    tools: tuple[str, ...] = ()
    workspace: dict[str, str] = field(default_factory=dict)
    pages: dict[str, dict[str, str]] = field(default_factory=dict)
    functions: tuple[FunctionSpec, ...] = ()
    response_format: dict[str, Any] | None = None
    current_date: str | None = None
    limits: dict[str, Any] = field(default_factory=dict)
    check: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # the record as read

    @property
    def digest(self) -> str:
        """A hash of the task's definition: a resumed run redoes a task whose definition changed."""
        blob = json.dumps(self.source, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _need(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise UserError(f"{where}: {message}")


def _function(raw: Any, where: str) -> FunctionSpec:
    _need(isinstance(raw, dict) and isinstance(raw.get("name"), str), where, "a function needs a 'name'")
    unknown = set(raw) - {"name", "description", "parameters", "results", "default", "error"}
    _need(not unknown, where, f"unknown function fields {sorted(unknown)}")
    results = []
    for r in raw.get("results") or []:
        _need(isinstance(r, dict) and "arguments" in r and "output" in r, where,
              "each function result needs 'arguments' and 'output'")
        results.append((r["arguments"], r["output"]))
    kwargs = {k: raw[k] for k in ("description", "parameters", "default", "error") if k in raw}
    return FunctionSpec(raw["name"], results=tuple(results), **kwargs)


def _check_spec(check: Any, where: str) -> dict[str, Any]:
    if check is None:  # scored by a scorer the run is given (a Python callable, a judge)
        return {}
    _need(isinstance(check, dict) and bool(check), where, f"'check' must be an object with one of {CHECKS}")
    unknown = set(check) - set(CHECKS)
    _need(not unknown, where, f"unknown checks {sorted(unknown)}; choose from {', '.join(CHECKS)}")
    if "file" in check:
        f = check["file"]
        _need(isinstance(f, dict) and "path" in f and ("equals" in f or "contains" in f), where,
              "a 'file' check needs 'path' and 'equals' or 'contains'")
    if "contains" in check and isinstance(check["contains"], str):
        check = {**check, "contains": [check["contains"]]}
    return dict(check)


def parse_task(raw: Any, where: str, defaults: dict[str, Any] | None = None) -> EvalTask:
    """An :class:`EvalTask` from its JSON record (``defaults`` fill fields the record leaves out)."""
    _need(isinstance(raw, dict), where, "a task must be a JSON object")
    record = {**(defaults or {}), **raw}
    unknown = set(record) - set(FIELDS)
    _need(not unknown, where, f"unknown task fields {sorted(unknown)}")
    _need(isinstance(record.get("id"), str | int), where, "a task needs an 'id'")
    _need(isinstance(record.get("prompt"), str) and bool(record["prompt"]), where, "a task needs a 'prompt'")
    where = f"{where} (task {record['id']})"
    tools = tuple(record.get("tools") or ())
    bad = [t for t in tools if t not in TOOLS]
    _need(not bad, where, f"unknown tools {bad}; choose from {', '.join(TOOLS)}")
    _need(bool(record.get("pages")) <= ("browser" in tools), where, "'pages' are for the browser tool")
    limits = dict(record.get("limits") or {})
    _need(set(limits) <= set(LIMIT_FIELDS), where, f"limits may set {', '.join(LIMIT_FIELDS)}")
    turns = record.get("user_turns") or []
    _need(isinstance(turns, list) and all(isinstance(t, str) for t in turns), where,
          "'user_turns' must be a list of strings")
    files = record.get("workspace") or {}
    _need(isinstance(files, dict) and all(isinstance(v, str) for v in files.values()), where,
          "'workspace' maps file names to their text")
    return EvalTask(
        id=str(record["id"]), prompt=record["prompt"], group=str(record.get("group") or ""),
        user_turns=tuple(turns), reasoning=record.get("reasoning"), instructions=record.get("instructions"),
        tools=tools, workspace=dict(files), pages=dict(record.get("pages") or {}),
        functions=tuple(_function(f, where) for f in record.get("functions") or []),
        response_format=record.get("response_format"), current_date=record.get("current_date"),
        limits=limits, check=_check_spec(record.get("check"), where), meta=dict(record.get("meta") or {}),
        source=record,
    )
