"""Concurrent streaming clients against ``ossagent serve`` on loopback (scripted model, so the server is measured).

Usage: .venv/bin/python benchmarks/server_concurrency.py [--clients 50] [--slots 4] [--tokens 200]
Prints one table row per run: clients, slots, wall time, time to first byte and to first content (p50/p95),
errors, and the threads left over afterwards (leaks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time

import httpx

from ossagent.agent.backends.scripted import ScriptedBackend
from ossagent.agent.server import ServerConfig, create_app
from ossagent.agent.server.serve import start_in_thread


def reply(words: int) -> str:
    return ("<|channel|>analysis<|message|>Thinking.<|end|><|start|>assistant<|channel|>final<|message|>"
            + " ".join(f"w{i}" for i in range(words)) + "<|return|>")


async def client_run(client: httpx.AsyncClient, url: str, i: int) -> tuple[float, float, bool]:
    body = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": f"go {i}"}]}
    start = time.perf_counter()
    first_byte = first_content = 0.0
    done = False
    async with client.stream("POST", url + "/chat/completions", json=body) as resp:
        async for line in resp.aiter_lines():
            if not first_byte:
                first_byte = time.perf_counter() - start
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: ") and not first_content:
                chunk = json.loads(line[6:])
                if any(c["delta"].get("content") for c in chunk.get("choices", [])):
                    first_content = time.perf_counter() - start
    return first_byte, first_content, done and resp.status_code == 200


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def run(clients: int, slots: int, words: int) -> str:
    app = create_app(ServerConfig(backend=ScriptedBackend([reply(words)] * clients), model_id="bench", slots=slots))
    server = start_in_thread(app)
    threads_before = threading.active_count()

    async def all_clients() -> list[tuple[float, float, bool]]:
        async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=clients + 10)) as c:
            return await asyncio.gather(*(client_run(c, server.url, i) for i in range(clients)))

    start = time.perf_counter()
    results = asyncio.run(all_clients())
    wall = time.perf_counter() - start
    time.sleep(0.5)
    leaked = threading.active_count() - threads_before
    server.stop()
    fb = [r[0] for r in results]
    fc = [r[1] for r in results]
    errors = sum(not r[2] for r in results)
    return (f"| {clients:7d} | {slots:5d} | {wall:7.2f} | {pct(fb, .5):8.0f} / {pct(fb, .95):<8.0f} | "
            f"{pct(fc, .5):8.0f} / {pct(fc, .95):<8.0f} | {errors:6d} | {max(leaked, 0):6d} {statistics.mean(fc) * 1000:9.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 10, 50])
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=100, help="words in each answer")
    args = ap.parse_args()
    print("| clients | slots | wall s | first byte ms p50/p95 | first content ms p50/p95 | errors | leaked threads | mean first content ms |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.clients:
        print(run(n, args.slots, args.tokens), flush=True)


if __name__ == "__main__":
    main()
