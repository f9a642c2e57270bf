"""bf16 projections at decode sizes: torch ``F.linear`` against the native ``bf16_linear`` kernel.

    .venv/bin/python benchmarks/bf16_gemv.py [--threads 2] [--reps 15] [--rows 1,2,4,8]
    flock /tmp/ossagent-20b.lock .venv/bin/python benchmarks/bf16_gemv.py --model DIR [--threads 1]

For the gpt-oss-20b shapes (attention q 2880->4096, k and v 2880->512, out 4096->2880, the unembedding
2880->201088) and M rows of bf16 activations, prints the weight bytes read per second (GB/s) of both, measured
alternately in one run (torch call, kernel call, torch call, ...), so both see the same machine load. Each call
uses the next copy of the weight from a pool larger than the 32 MB L3 (as decode reads each layer's weights
from DRAM); the unembedding is one 1.16 GB matrix. The 1-minute load average is printed before and after.
Median and best of ``--reps`` calls per cell; ratio = torch time / kernel time (> 1: the kernel wins). Uses about 2.5 GB of memory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ossagent.model import kernels
from ossagent.model.kernels.bf16 import GemvLinear, bf16_linear

H, Q, KV, VOCAB = 2880, 4096, 512, 201088
#: name -> (out features N, in features K, bias)
SHAPES: dict[str, tuple[int, int, bool]] = {
    "attn q 2880->4096": (Q, H, True),
    "attn k 2880->512": (KV, H, True),
    "attn v 2880->512": (KV, H, True),
    "attn out 4096->2880": (H, Q, True),
    "unembedding 2880->201088": (VOCAB, H, False),
}
POOL_BYTES = 256 << 20


def _pool(n: int, k: int, bias: bool, gen: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    copies = max(1, -(-POOL_BYTES // (n * k * 2)))
    out = []
    for _ in range(copies):
        w = torch.empty(n, k, dtype=torch.bfloat16)
        for a in range(0, n, 16384):  # no full fp32 temporary for the unembedding
            w[a : a + 16384] = (torch.randn(min(16384, n - a), k, generator=gen) * 0.02).to(torch.bfloat16)
        b = (torch.randn(n, generator=gen) * 0.02).to(torch.bfloat16) if bias else None
        out.append((w, b))
    return out


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(pool: list[tuple[torch.Tensor, torch.Tensor | None]], m: int, reps: int,
            gen: torch.Generator) -> tuple[list[float], list[float]]:
    """Seconds per call of (torch, kernel), alternating, each call on the next pool copy."""
    k = pool[0][0].shape[1]
    x = torch.randn(m, k, generator=gen).to(torch.bfloat16)
    ts: list[float] = []
    tk: list[float] = []
    for i in range(reps + 1):  # the first round warms both up and is dropped
        w, b = pool[(2 * i) % len(pool)]
        a = _timed(lambda: F.linear(x, w, b))  # noqa: B023 - called at once
        w, b = pool[(2 * i + 1) % len(pool)]
        c = _timed(lambda: bf16_linear(x, w, b))  # noqa: B023 - called at once
        if i:
            ts.append(a)
            tk.append(c)
    return ts, tk


def _plain(linear: nn.Linear) -> nn.Linear:
    plain = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
    plain.weight, plain.bias = linear.weight, linear.bias
    return plain


def decode(path: Path, threads: int, steps: int, rounds: int, context: int) -> None:
    """Decode steps alternating F.linear and the kernel for the switched projections (see the docstring)."""
    from ossagent.model.engine import Engine
    from ossagent.model.kernels.accelerate import accelerate
    from ossagent.model.loader import load_model

    model = load_model(path, device="cpu")
    accelerate(model, threads=threads)
    slots = [(parent, name, mod) for parent in model.modules() for name, mod in parent.named_children()
             if isinstance(mod, GemvLinear)]
    ways = {"F.linear": [(p, n, _plain(m)) for p, n, m in slots], "kernel": slots}
    engine = Engine(model, max_len=context + 2 * steps * rounds + 8)
    gen = torch.Generator().manual_seed(0)
    logits = engine.prefill(torch.randint(0, model.config.vocab_size, (context,), generator=gen).tolist())
    times: dict[str, list[float]] = {way: [] for way in ways}
    load0 = os.getloadavg()[0]
    for r in range(rounds + 1):  # round 0 warms up
        for way, mods in ways.items():
            for parent, name, mod in mods:
                setattr(parent, name, mod)
            for _ in range(steps):
                t0 = time.perf_counter()
                logits = engine._feed([int(torch.argmax(logits))])
                if r:
                    times[way].append(time.perf_counter() - t0)
    print(f"{model.config.num_hidden_layers} layers, {len(slots)} projections switched, {threads} threads, "
          f"ctx {context}; load average {load0:.2f} before, {os.getloadavg()[0]:.2f} after")
    for way, ts in times.items():
        print(f"{way:9s} ms/token median {statistics.median(ts) * 1e3:7.1f}  best {min(ts) * 1e3:7.1f}")
    med = {way: statistics.median(ts) for way, ts in times.items()}
    print(f"speed-up (F.linear / kernel, medians): {med['F.linear'] / med['kernel']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--rows", default="1,2,4,8", help="comma-separated M values")
    ap.add_argument("--shapes", default="", help="substring filter on the shape names")
    ap.add_argument("--model", type=Path, help="decode steps of this checkpoint instead of single calls")
    ap.add_argument("--steps", type=int, default=4, help="--model: tokens per round and way")
    ap.add_argument("--rounds", type=int, default=5, help="--model: rounds")
    ap.add_argument("--context", type=int, default=256, help="--model: prefill tokens")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not kernels.load():
        raise SystemExit("native kernels unavailable on this machine")
    if args.model is not None:
        with torch.inference_mode():
            decode(args.model, args.threads, args.steps, args.rounds, args.context)
        return
    rows = [int(r) for r in args.rows.split(",")]
    gen = torch.Generator().manual_seed(0)
    load0 = os.getloadavg()[0]
    print(f"threads {args.threads}, load average before: {load0:.2f}")
    print(f"{'shape':26s} {'M':>3s} {'torch GB/s med/best':>20s} {'kernel GB/s med/best':>21s} "
          f"{'ratio med/best':>15s}")
    with torch.inference_mode():
        for name, (n, k, bias) in SHAPES.items():
            if args.shapes not in name:
                continue
            pool = _pool(n, k, bias, gen)
            nbytes = n * k * 2
            for m in rows:
                ts, tk = measure(pool, m, args.reps, gen)
                med_t, med_k, best_t, best_k = statistics.median(ts), statistics.median(tk), min(ts), min(tk)
                print(f"{name:26s} {m:3d} {nbytes / med_t / 1e9:11.1f} /{nbytes / best_t / 1e9:6.1f} "
                      f"{nbytes / med_k / 1e9:12.1f} /{nbytes / best_k / 1e9:6.1f} "
                      f"{med_t / med_k:8.2f} /{best_t / best_k:5.2f}", flush=True)
            del pool
    print(f"load average after: {os.getloadavg()[0]:.2f} (before: {load0:.2f})")


if __name__ == "__main__":
    main()
