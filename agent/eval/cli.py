"""``ossagent eval``: run a suite and print its summary, or put two runs side by side.

Attach to the ``ossagent`` parser with :func:`add_parser` and dispatch ``eval`` to :func:`main`::

    ossagent eval demo                                  # the demo model's own families (built in)
    ossagent eval examples/eval/maths.jsonl --remote http://localhost:8000/v1 --reasoning low,high --n 4 --k 1,4
    ossagent eval --compare eval-runs/before eval-runs/after
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ossagent.tools.base import UserError

EFFORTS = ("low", "medium", "high")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to an ``add_subparsers()`` object; returns its parser."""
    p = subparsers.add_parser("eval", help="measure an agent on a task suite (offline, any backend)",
                              description="Run every task of SUITE through the agent and summarise the scores.")
    p.add_argument("suite", nargs="?", help="a suite file (.json, .jsonl, .csv), a folder of them, or a built-in "
                   "suite: demo, demo-paraphrase")
    g = p.add_argument_group("model")
    g.add_argument("--backend", choices=("local", "remote", "scripted"),
                   help="default: remote with --remote, scripted with --scripted, else local")
    g.add_argument("--model", help="checkpoint folder for the local backend (default: OSSAGENT_MODEL, then the "
                   "built-in demo model)")
    g.add_argument("--adapter", metavar="DIR", help="a LoRA adapter folder (ossagent finetune) merged into the local "
                   "model's weights as they load")
    g.add_argument("--remote", help="an OpenAI-compatible server's base URL (e.g. http://localhost:8000/v1)")
    g.add_argument("--remote-model", default="gpt-oss-20b", help="model name on the remote server")
    g.add_argument("--api-key", help="API key for --remote")
    g.add_argument("--scripted", help="a JSON object of scripted replies per task id (tests and demos)")
    r = p.add_argument_group("run")
    r.add_argument("--reasoning", help="comma-separated efforts, e.g. low,medium,high (default: each task's own)")
    r.add_argument("--n", type=int, default=1, help="samples per task and effort (for pass@k)")
    r.add_argument("--k", default="1", help="comma-separated k for pass@k (each at most --n)")
    r.add_argument("--workers", type=int, default=1, help="trials at once (one backend each)")
    r.add_argument("--out", help="run folder; running again into it continues (default: eval-runs/SUITE)")
    r.add_argument("--limit", type=int, help="only the first LIMIT tasks")
    r.add_argument("--tasks", help="only these comma-separated task ids")
    r.add_argument("--temperature", type=float, help="sampling temperature (default: the suite's, else 1.0)")
    r.add_argument("--seed", type=int, help="sample i uses seed + i")
    r.add_argument("--max-turns", type=int)
    r.add_argument("--max-tokens", type=int, help="completion tokens per run")
    r.add_argument("--timeout", type=float, help="wall-clock seconds per run")
    s = p.add_argument_group("scoring")
    s.add_argument("--scorer", help="a Python scorer: module:function or file.py:function")
    s.add_argument("--judge", help="grade with a judge model at this OpenAI-compatible URL (or 'local': the same "
                   "local model)")
    s.add_argument("--judge-model", default="gpt-oss-20b", help="the judge's model name on --judge")
    s.add_argument("--judge-rubric", help="extra grading instructions for the judge")
    o = p.add_argument_group("output")
    o.add_argument("--compare", nargs=2, metavar=("A", "B"), help="put two run folders side by side")
    o.add_argument("--group-by", help="group the table by this field of the tasks' meta instead of their group")
    o.add_argument("--json", action="store_true", help="print the summary as JSON")
    o.add_argument("--markdown", action="store_true", help="also print the group table as Markdown")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _efforts(value: str | None) -> tuple[str, ...] | None:
    efforts = _csv(value)
    bad = [e for e in efforts if e not in EFFORTS]
    if bad:
        raise UserError(f"--reasoning takes {', '.join(EFFORTS)}, not {', '.join(bad)}")
    return tuple(dict.fromkeys(efforts)) or None


def _ks(value: str, n: int) -> list[int]:
    try:
        ks = sorted({int(k) for k in _csv(value)})
    except ValueError:
        raise UserError(f"--k takes comma-separated integers, not {value!r}") from None
    bad = [k for k in ks if not 1 <= k <= n]
    if bad:
        raise UserError(f"pass@k needs 1 <= k <= --n ({n}); drop k={bad} or raise --n")
    return ks


def _local_folder(args: argparse.Namespace) -> Path:
    from ossagent.agent.settings import Settings

    folder = args.model or Settings.from_env().model
    if folder:
        return Path(folder).expanduser()
    from ossagent.model.demo import demo_model_dir

    demo = demo_model_dir()
    if demo is None:
        raise UserError("no model: pass --model FOLDER, set OSSAGENT_MODEL or use --remote URL")
    return demo


def _scripts(path: str) -> dict[str, list[str]]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"--scripted {path}: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise UserError(f"--scripted {path}: a JSON object of task id -> list of harmony replies")
    return data


def backend_source(args: argparse.Namespace) -> tuple[Any, str]:
    """(the backend for each trial, a description recorded in the run)."""
    from ossagent.agent.eval.runner import Trial, per_thread

    kind = args.backend or ("remote" if args.remote else "scripted" if args.scripted else "local")
    if kind == "scripted":
        from ossagent.agent import ScriptedBackend

        if not args.scripted:
            raise UserError("--backend scripted needs --scripted FILE")
        scripts = _scripts(args.scripted)

        def scripted(trial: Trial) -> Any:
            steps = scripts.get(f"{trial.task.id}@{trial.effort}", scripts.get(trial.task.id))
            if steps is None:
                raise UserError(f"--scripted has no replies for task {trial.task.id}")
            return ScriptedBackend(steps, constrained=True)

        return scripted, f"scripted:{Path(args.scripted).name}"
    if kind == "remote":
        from ossagent.agent import RemoteBackend

        if not args.remote:
            raise UserError("--backend remote needs --remote URL")
        RemoteBackend(args.remote, args.remote_model, api_key=args.api_key)  # checks the URL now
        return per_thread(lambda: RemoteBackend(args.remote, args.remote_model, api_key=args.api_key)), \
            f"remote:{args.remote}:{args.remote_model}"
    from ossagent.agent import LocalBackend
    from ossagent.agent.settings import Settings

    folder, device = _local_folder(args), Settings.from_env().device
    return per_thread(lambda: LocalBackend.from_pretrained(folder, device=device, adapter=args.adapter)), \
        f"local:{folder.resolve()}" + (f"+{Path(args.adapter).resolve()}" if args.adapter else "")


def _scorer(args: argparse.Namespace) -> Any:
    from ossagent.agent.eval.scorers import JudgeScorer, load_scorer

    if args.scorer and args.judge:
        raise UserError("give --scorer or --judge, not both")
    if args.scorer:
        return load_scorer(args.scorer)
    if args.judge:
        if args.judge == "local":
            from ossagent.agent import LocalBackend

            judge: Any = LocalBackend.from_pretrained(_local_folder(args))
        else:
            from ossagent.agent import RemoteBackend

            judge = RemoteBackend(args.judge, args.judge_model, api_key=args.api_key)
        return JudgeScorer(judge, rubric=args.judge_rubric)
    return None


def _print(summary: dict[str, Any], args: argparse.Namespace, title: str) -> None:
    from rich.console import Console

    from ossagent.agent.eval.summary import markdown, tables

    if args.json:
        print(json.dumps(summary, indent=2))
        return
    console = Console(highlight=False)
    for t in tables(summary, title):
        console.print(t)
    if args.markdown:
        print(markdown(summary))


def _compare(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ossagent.agent.eval.runner import read_manifest, read_results
    from ossagent.agent.eval.summary import compare

    a, b = (Path(x) for x in args.compare)
    for folder in (a, b):
        read_manifest(folder)
    console = Console(highlight=False)
    console.print(compare(read_results(a), read_results(b), (a.name, b.name)))
    return 0


def main(args: argparse.Namespace) -> int:
    """Run ``ossagent eval`` with parsed arguments; the exit status (user errors raise :class:`UserError`)."""
    from ossagent.agent.eval.runner import RunConfig, run_suite
    from ossagent.agent.eval.suites import load_suite
    from ossagent.agent.eval.summary import summarize

    if args.compare:
        return _compare(args)
    if not args.suite:
        raise UserError("give a SUITE to run, or --compare A B")
    suite = load_suite(args.suite).select(args.limit, set(_csv(args.tasks)) or None)
    if not suite.tasks:
        raise UserError("no task of the suite was selected (--tasks, --limit)")
    ks = _ks(args.k, args.n)
    limits = {k: v for k, v in (("max_turns", args.max_turns), ("max_tokens", args.max_tokens),
                                ("max_time", args.timeout)) if v is not None}
    source, described = backend_source(args)
    config = RunConfig(efforts=_efforts(args.reasoning), samples=args.n, temperature=args.temperature,
                       seed=args.seed, limits=limits, backend=described)
    out = Path(args.out) if args.out else Path("eval-runs") / suite.name
    records = run_suite(suite, source, out, config, scorer=_scorer(args), workers=args.workers,
                        progress=not args.quiet and sys.stderr.isatty())
    summary = summarize(records, ks, args.group_by)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    _print(summary, args, f"{suite.name}: {len(records)} trials ({described}); results in {out}")
    return 0


def run(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m ossagent.agent.eval.cli SUITE ...``) until ``ossagent eval`` is wired."""
    parser = argparse.ArgumentParser(prog="ossagent")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", *(sys.argv[1:] if argv is None else argv)])
    try:
        return main(args)
    except UserError as exc:
        print(f"ossagent eval: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(run())
