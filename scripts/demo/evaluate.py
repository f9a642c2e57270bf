"""Evaluate the demo model on held-out generated tasks (unseen seed, answer names from held-out pools).

    .venv/bin/python -m scripts.demo.evaluate --model model/demo_weights --n 100

Prints success per family and per reasoning effort, and tokens/s on CPU. Each task runs through the real
agent loop (:class:`ossagent.agent.loop.Agent` with the local engine and its default constrained decoding, run by
``ossagent eval``'s runner over the demo suite of :mod:`scripts.demo.evalsuite`) and
the real tools (python in the sandbox, the browser over the offline search backend, function tools), in a
fresh world; the final answer is checked against the task's expected values.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from scripts.demo.evalsuite import suite, to_record
from scripts.demo.tasks import EFFORTS, FAMILIES, Task, generate


def check(task: Task, final: str | None, calls: list[tuple[str, str]]) -> tuple[bool, str]:
    """Whether a run solved ``task``; the reason when it did not (the ``ossagent eval`` checks of the demo suite)."""
    from ossagent.agent.eval.scorers import Outcome
    from ossagent.agent.eval.scorers import check as eval_check
    from ossagent.agent.eval.task import parse_task

    et = parse_task(to_record(task, "task"), "demo task")
    score = eval_check(et, Outcome(et, task.effort, final, "final" if final is not None else "error", calls=calls))
    return score.passed, score.reason


def decode_speed(backend: Any, n_prompt: int = 400, n_new: int = 64) -> tuple[float, float]:
    """(prefill tokens/s, decode tokens/s) of the local engine: greedy, no hook, stop tokens off."""
    from ossagent.agent.backends.base import GenerationParams, Prompt

    prompt = [200006, 17360, 200008] + [1000 + i % 500 for i in range(n_prompt - 3)]
    eng = backend.engine
    eng.reset()
    t0 = time.perf_counter()
    eng.prefill(prompt)
    t1 = time.perf_counter()
    eng.reset()
    params = GenerationParams(max_tokens=n_new, temperature=0.0, stop_tokens=frozenset())
    t2 = time.perf_counter()
    n = sum(1 for _ in backend.generate(Prompt(prompt), params))
    t3 = time.perf_counter()
    decode_s = (t3 - t2) - (t1 - t0)
    return len(prompt) / (t1 - t0), n / decode_s if decode_s > 0 else float("nan")


def evaluate(model_dir: Path, n: int, seed: int, temperature: float = 0.0, verbose: bool = False,
             device: str = "cpu", current_date: str | None = None, shard: tuple[int, int] = (0, 1),
             out: Path | None = None) -> dict[str, Any]:
    """Run the first ``n`` held-out tasks (those with index % shard[1] == shard[0]) through ``ossagent eval``'s
    runner (into ``out``, resumable, or a temporary folder); the report of :func:`summarize`."""
    from ossagent.agent import LocalBackend
    from ossagent.agent.eval.runner import RunConfig, run_suite
    from ossagent.agent.eval.suites import Suite
    from ossagent.agent.eval.task import parse_task

    backend = LocalBackend.from_pretrained(model_dir, device=device)
    prefill_tps, decode_tps = decode_speed(backend)
    data = suite("demo", ((f"demo-{i:03d}", t) for i, t in enumerate(generate(n, seed, "eval"))
                          if i % shard[1] == shard[0]))
    records = [{**r, "current_date": current_date or r["current_date"]} for r in data["tasks"]]
    tasks = Suite("demo", tuple(parse_task(r, "demo") for r in records), data["defaults"])
    config = RunConfig(temperature=temperature, backend=f"local:{model_dir}")
    with tempfile.TemporaryDirectory(prefix="ossagent-demo-eval-") as tmp:
        results = run_suite(tasks, lambda _trial: backend, out or Path(tmp), config, progress=verbose)
    failures = [f"[{r['group']}/{r['effort']}] {r['task']}: {r['reason']}" for r in results if not r["passed"]]
    if verbose:
        print("\n".join(failures), flush=True)
    return summarize({"results": [(r["group"], r["effort"], bool(r["passed"])) for r in results],
                      "run_tokens": sum(r["completion_tokens"] for r in results),
                      "run_seconds": sum(r["seconds"] for r in results),
                      "prefill_tokens_per_s": prefill_tps, "decode_tokens_per_s": decode_tps,
                      "temperature": temperature, "current_date": current_date, "failures": failures})


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Success rates per family, effort and pair from ``raw["results"]`` (family, effort, ok) triples."""
    by_pair: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for f, e, ok in raw["results"]:
        by_pair[(f, e)].append(bool(ok))

    def rate(vs: list[bool]) -> float:
        return sum(vs) / len(vs) if vs else float("nan")

    fam = {f: rate([v for (ff, _), vs in by_pair.items() if ff == f for v in vs]) for f in FAMILIES}
    eff = {e: rate([v for (_, ee), vs in by_pair.items() if ee == e for v in vs]) for e in EFFORTS}
    allv = [v for vs in by_pair.values() for v in vs]
    secs = raw["run_seconds"]
    return {**raw, "overall": rate(allv), "n": len(allv), "family": fam, "effort": eff,
            "pair": {f"{f}/{e}": rate(v) for (f, e), v in by_pair.items()},
            "counts": {f"{f}/{e}": len(v) for (f, e), v in by_pair.items()},
            "run_tokens_per_s": raw["run_tokens"] / secs if secs else 0.0}


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from the reports of several shards (speeds are the shards' means)."""
    raw = {"results": [r for rep in reports for r in rep["results"]],
           "run_tokens": sum(r["run_tokens"] for r in reports), "run_seconds": sum(r["run_seconds"] for r in reports),
           "failures": [f for rep in reports for f in rep["failures"]]}
    for k in ("prefill_tokens_per_s", "decode_tokens_per_s"):
        raw[k] = sum(r[k] for r in reports) / len(reports)
    for k in ("temperature", "current_date"):
        raw[k] = reports[0][k]
    return summarize(raw)


def print_report(r: dict[str, Any]) -> None:
    print(f"overall: {r['overall']:.0%} of {r['n']} held-out tasks (temperature {r['temperature']}, "
          f"current date {r['current_date'] or 'of each task (random)'})")
    print(f"speed (CPU): prefill {r['prefill_tokens_per_s']:.0f} tokens/s, decode {r['decode_tokens_per_s']:.1f} "
          f"tokens/s; whole runs incl. tools and constrained decoding {r['run_tokens_per_s']:.1f} tokens/s")
    print(f"{'family':10s} " + " ".join(f"{e:>7s}" for e in EFFORTS) + "      all")
    for f in FAMILIES:
        cells = [r["pair"].get(f"{f}/{e}") for e in EFFORTS]
        print(f"{f:10s} " + " ".join(f"{c:7.0%}" if c is not None else "      -" for c in cells)
              + f"  {r['family'][f]:7.0%}")
    print(f"{'all':10s} " + " ".join(f"{r['effort'][e]:7.0%}" for e in EFFORTS) + f"  {r['overall']:7.0%}")


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(description="evaluate the demo model on held-out tasks")
    ap.add_argument("--model", type=Path, default=Path("model/demo_weights"))
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--date", help="the current date in every system message (default: each task's own random date)")
    ap.add_argument("--json", type=Path, help="also write the report (with every failure) here")
    ap.add_argument("--shard", default="0/1", help="K/N: run only tasks whose index %% N == K (parallel runs)")
    ap.add_argument("--merge", type=Path, nargs="+", help="print one report from these shards' --json reports")
    ap.add_argument("--out", type=Path, help="run folder (resumable; `ossagent eval --compare` reads it)")
    ap.add_argument("-v", "--verbose", action="store_true", help="a progress bar, then every failure")
    args = ap.parse_args(argv)
    if args.merge:
        r = merge([json.loads(p.read_text()) for p in args.merge])
        print_report(r)
        return 0
    torch.set_num_threads(args.threads)
    k, n = (int(x) for x in args.shard.split("/"))
    r = evaluate(args.model, args.n, args.seed, args.temperature, verbose=args.verbose, current_date=args.date,
                 shard=(k, n), out=args.out)
    print_report(r)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
