"""Sandbox start-up and per-call latency, per backend. Prints a table.

    .venv/bin/python benchmarks/sandbox_latency.py [rounds]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from ossagent.sandbox import Backend, Policy, PythonSandbox, probe


def main(rounds: int) -> None:
    print("| backend | start median (ms) | start min | call median (ms) | call min | rounds |")
    print("|---|---|---|---|---|---|")
    for backend in (Backend.BWRAP, Backend.UNSHARE_LANDLOCK, Backend.UNSAFE_NO_ISOLATION):
        reason = probe(backend)
        if reason is not None:
            print(f"| {backend.value} | unavailable: {reason} | | | | |")
            continue
        starts, calls = [], []
        with tempfile.TemporaryDirectory() as ws:
            for _ in range(rounds):
                sbx = PythonSandbox(Policy(workspace=Path(ws)), backend)
                t0 = time.perf_counter()
                sbx.start()
                starts.append(time.perf_counter() - t0)
                for _ in range(20):
                    t0 = time.perf_counter()
                    sbx.run("x = 1")
                    calls.append(time.perf_counter() - t0)
                sbx.close()
        ms = lambda xs, f: f"{1000 * f(xs):.1f}"  # noqa: E731
        print(f"| {backend.value} | {ms(starts, statistics.median)} | {ms(starts, min)} | "
              f"{ms(calls, statistics.median)} | {ms(calls, min)} | {rounds} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
