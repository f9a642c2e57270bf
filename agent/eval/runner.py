"""Run a suite: every task at every effort, ``samples`` times, through the real :class:`~ossagent.agent.Agent`
(tools in the sandbox, constrained decoding as the backend offers it), each in a fresh world.

A run lives in a folder: ``run.json`` (what was run), ``results.jsonl`` (one line per finished trial, written as
it finishes) and ``transcripts/`` (one transcript per trial). Running again into the same folder continues:
trials already recorded are skipped (a trial whose task definition changed since is redone), so a run that was
stopped, killed or crashed picks up where it was.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import json
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ossagent.agent.eval.scorers import Outcome, Score, Scorer, check, to_score
from ossagent.agent.eval.suites import Suite
from ossagent.agent.eval.task import EvalTask
from ossagent.tools.base import UserError

FORMAT = "ossagent.eval/1"
RESULTS, MANIFEST, TRANSCRIPTS = "results.jsonl", "run.json", "transcripts"
DEFAULT_EFFORT = "medium"


@dataclass(frozen=True)
class Trial:
    task: EvalTask
    effort: str
    sample: int

    @property
    def key(self) -> str:
        return f"{self.task.id}@{self.effort}#{self.sample}"


BackendSource = Callable[[Trial], Any]  # the backend a trial runs on


def per_thread(factory: Callable[[], Any]) -> BackendSource:
    """One backend per worker thread, made on first use (a local engine runs one generation at a time)."""
    local = threading.local()

    def source(_trial: Trial) -> Any:
        if getattr(local, "backend", None) is None:
            local.backend = factory()
        return local.backend

    return source


@dataclass(frozen=True)
class RunConfig:
    """How trials run. ``efforts`` None: each task at its own effort (else medium)."""

    efforts: tuple[str, ...] | None = None
    samples: int = 1
    temperature: float | None = None  # None: the suite's recommendation, else 1.0
    seed: int | None = None  # sample i uses seed + i
    limits: dict[str, Any] = field(default_factory=dict)  # over the suite's and the task's
    current_date: str | None = None  # for tasks that set none (default: the day the run started)
    backend: str = ""  # a description, recorded so a resumed run is on the same model


def trials(suite: Suite, config: RunConfig) -> list[Trial]:
    out = []
    for task in suite.tasks:
        efforts = config.efforts or (task.reasoning or DEFAULT_EFFORT,)
        out += [Trial(task, e, s) for e in efforts for s in range(config.samples)]
    return out


# ------------------------------------------------------------------------------------------- one trial


def write_world(task: EvalTask, root: Path) -> tuple[Path, Path]:
    """The task's workspace files and its offline site on disk."""
    ws, site = root / "workspace", root / "site"
    ws.mkdir()
    site.mkdir()
    for name, text in task.workspace.items():
        path = (ws / name).resolve()
        if not path.is_relative_to(ws.resolve()):
            raise UserError(f"task {task.id}: workspace file {name!r} lies outside the workspace")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for name, page in task.pages.items():
        html = page.get("html")
        if html is None:
            title, text = page.get("title", name), page.get("text", "")
            body = "".join(f"<p>{p}</p>\n" for p in text.split("\n\n"))
            html = f"<html><head><title>{title}</title></head><body><h1>{title}</h1>\n{body}</body></html>\n"
        (site / Path(name).name).write_text(html, encoding="utf-8")
    return ws, site


def _tools(task: EvalTask, ws: Path, site: Path) -> list[Any]:
    tools: list[Any] = []
    for name in task.tools:
        if name == "python":
            from ossagent.tools.python import PythonTool

            tools.append(PythonTool(ws))
        elif name == "files":
            from ossagent.tools.files import FilesTool

            tools.append(FilesTool(ws))
        elif name == "browser":
            from ossagent.tools.browser import Browser, BrowserConfig, BrowserTool, OfflineBackend

            tools.append(BrowserTool(Browser(OfflineBackend(site), BrowserConfig())))
    return tools


def _close_all(tools: list[Any]) -> None:
    for tool in tools:
        with contextlib.suppress(Exception):  # closing the rest matters more than one tool's error here
            tool.close()


def _functions(task: EvalTask) -> list[Any]:
    from ossagent.agent import FunctionTool

    return [FunctionTool.from_schema(f.name, f.parameters, f.description, implementation=lambda _f=f, **kw: _f.answer(kw))
            for f in task.functions]


def _limits(suite: Suite, task: EvalTask, config: RunConfig) -> Any:
    from ossagent.agent import Limits

    return Limits(**{**dict(suite.defaults.get("limits") or {}), **task.limits, **config.limits})


@dataclass
class _Conversation:
    answer: str | None = None
    output: Any = None
    stop_reason: str = "error"
    usage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("prompt_tokens", "completion_tokens", "cached_tokens", "turns"), 0))
    transcript: Any = None
    errors: list[str] = field(default_factory=list)


def _converse(agent: Any, task: EvalTask) -> _Conversation:
    """The first prompt, then each scripted user turn after a final answer (a simulated user)."""
    conv = _Conversation()
    for i, text in enumerate((task.prompt, *task.user_turns)):
        result = agent.run(text, transcript=conv.transcript)
        conv.transcript, conv.stop_reason = result.transcript, result.stop_reason
        for k in conv.usage:
            conv.usage[k] += int(getattr(result.usage, k))
        conv.errors += [f"{e.kind}: {e.message}" for e in result.errors]
        final = result.stop_reason == "final"
        conv.answer, conv.output = (result.text, result.output) if final else (None, None)
        if not final and i < len(task.user_turns):
            break
    return conv


def run_trial(trial: Trial, suite: Suite, backend: Any, config: RunConfig, scorer: Scorer | None = None,
              transcript_dir: Path | None = None) -> dict[str, Any]:
    """One trial in a fresh world; its record (as written to ``results.jsonl``)."""
    from ossagent.agent import Agent

    task = trial.task
    temperature = config.temperature if config.temperature is not None else float(
        suite.defaults.get("temperature", 1.0))
    started = time.perf_counter()
    conv, score, error = _Conversation(), Score(0.0, False, "not run"), None
    with tempfile.TemporaryDirectory(prefix="ossagent-eval-") as tmp:
        try:
            ws, site = write_world(task, Path(tmp))
            tools = _tools(task, ws, site)
            try:
                agent = Agent(backend, tools=tools, functions=_functions(task), instructions=task.instructions,
                              reasoning=trial.effort, response_format=task.response_format,
                              limits=_limits(suite, task, config), temperature=temperature,
                              seed=None if config.seed is None else config.seed + trial.sample,
                              current_date=task.current_date or config.current_date)
            except BaseException:
                _close_all(tools)  # the agent never took them over: a sandbox or browser must not outlive the trial
                raise
            try:
                conv = _converse(agent, task)
            finally:
                agent.close()
            calls = [(m.recipient, m.text) for m in conv.transcript.messages if m.is_tool_call]
            outcome = Outcome(task, trial.effort, conv.answer, conv.stop_reason, conv.output, calls, ws,
                              conv.transcript, conv.errors)
            score = to_score((scorer or check)(task, outcome))
        except UserError:
            raise
        except Exception as exc:  # the model's or a tool's crash is a failed trial, kept with its reason
            error = f"{type(exc).__name__}: {exc}"
            score = Score(0.0, False, f"crashed: {error}")
    seconds = time.perf_counter() - started
    ref = None
    if transcript_dir is not None and conv.transcript is not None:
        ref = f"{TRANSCRIPTS}/{_file_name(trial.key)}"
        conv.transcript.save(transcript_dir.parent / ref)
    msgs = conv.transcript.messages if conv.transcript is not None else []
    return {
        "key": trial.key, "task": task.id, "group": task.group, "effort": trial.effort, "sample": trial.sample,
        "task_hash": task.digest, "score": score.value, "passed": score.passed, "reason": score.reason,
        "answer": conv.answer, "stop_reason": conv.stop_reason, **conv.usage,
        "tool_calls": sum(1 for m in msgs if m.is_tool_call),
        "tool_errors": sum(1 for m in msgs if m.role == "tool" and m.meta.get("is_error")),
        "seconds": round(seconds, 3), "transcript": ref, "error": error, "meta": task.meta,
    }


def _file_name(key: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", key)
    if safe != key:
        import hashlib

        safe += "-" + hashlib.sha1(key.encode()).hexdigest()[:8]
    return safe + ".jsonl"


# --------------------------------------------------------------------------------------------- the run


def read_results(out: Path) -> list[dict[str, Any]]:
    """The recorded trials, the last record of each key (a line cut short by a kill is skipped)."""
    path = Path(out) / RESULTS
    if not path.is_file():
        return []
    latest: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "key" in rec:
            latest[rec["key"]] = rec
    return list(latest.values())


def read_manifest(out: Path) -> dict[str, Any]:
    path = Path(out) / MANIFEST
    if not path.is_file():
        raise UserError(f"{out} holds no evaluation run (no {MANIFEST})")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _manifest(out: Path, suite: Suite, config: RunConfig) -> dict[str, Any]:
    """Start a run folder, or check that the run in it is this one and return its manifest."""
    want = {"format": FORMAT, "suite": suite.name, "efforts": list(config.efforts) if config.efforts else None,
            "samples": config.samples, "temperature": config.temperature, "seed": config.seed,
            "limits": config.limits, "backend": config.backend}
    path = out / MANIFEST
    if path.is_file():
        have = read_manifest(out)
        diff = [k for k in want if have.get(k) != want[k]]
        if diff:
            raise UserError(f"{out} holds another run ({', '.join(f'{k}: {have.get(k)!r}' for k in diff)}); "
                            "continue it with the same settings or give another --out")
        return have
    out.mkdir(parents=True, exist_ok=True)
    (out / TRANSCRIPTS).mkdir(exist_ok=True)
    want["started"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    want["current_date"] = config.current_date or datetime.date.today().isoformat()
    path.write_text(json.dumps(want, indent=2) + "\n", encoding="utf-8")
    return want


@contextmanager
def _progress(total: int, done: int, show: bool) -> Iterator[Callable[[dict[str, Any]], None]]:
    if not show:
        yield lambda _rec: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    passed = [0, 0]
    columns = (TextColumn("[bold]eval[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        job = bar.add_task("", total=total, completed=done)

        def advance(rec: dict[str, Any]) -> None:
            passed[0] += int(bool(rec["passed"]))
            passed[1] += 1
            bar.update(job, advance=1, description=f"{passed[0]}/{passed[1]} passed this session")

        yield advance


def run_suite(suite: Suite, backend: BackendSource, out: str | Path, config: RunConfig | None = None, *,
              scorer: Scorer | None = None, workers: int = 1, progress: bool = False) -> list[dict[str, Any]]:
    """Run (or continue) ``suite`` into ``out``; every record of the run, in trial order."""
    config = config or RunConfig()
    if workers < 1:
        raise UserError(f"--workers must be at least 1, not {workers}")
    if config.samples < 1:
        raise UserError(f"--n (samples per task) must be at least 1, not {config.samples}")
    if scorer is None:
        unchecked = [t.id for t in suite.tasks if not t.check]
        if unchecked:
            raise UserError(f"tasks {unchecked[:5]} have no 'check': give the run a scorer (--scorer, --judge)")
    out = Path(out)
    manifest = _manifest(out, suite, config)
    config = replace(config, current_date=manifest["current_date"])
    all_trials = trials(suite, config)
    done = {r["key"]: r for r in read_results(out)}
    todo = [t for t in all_trials if done.get(t.key, {}).get("task_hash") != t.task.digest]
    tdir = out / TRANSCRIPTS
    results = out / RESULTS
    if results.is_file() and results.stat().st_size and not results.read_bytes().endswith(b"\n"):
        with results.open("a", encoding="utf-8") as fh:  # a line cut short by a kill stays on its own line
            fh.write("\n")

    def one(trial: Trial) -> dict[str, Any]:
        return run_trial(trial, suite, backend(trial), config, scorer, tdir)

    with results.open("a", encoding="utf-8") as sink, \
            _progress(len(all_trials), len(all_trials) - len(todo), progress) as advance:
        def record(rec: dict[str, Any]) -> None:
            sink.write(json.dumps(rec, ensure_ascii=False) + "\n")
            sink.flush()
            done[rec["key"]] = rec
            advance(rec)

        if workers == 1:
            for trial in todo:
                record(one(trial))
        else:
            pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="ossagent-eval")
            try:
                for fut in concurrent.futures.as_completed([pool.submit(one, t) for t in todo]):
                    record(fut.result())
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    return [done[t.key] for t in all_trials]
