"""gpt-oss-20b speed and memory on this CPU: one table with our figures, the goals, the limits and llama.cpp.

    flock /tmp/ossagent-20b.lock .venv/bin/python benchmarks/speed.py [--model DIR] [--runs 3]

Uses the random-weight gpt-oss-20b checkpoint (exact shapes, MXFP4 experts, bf16 rest), written on first use by
benchmarks/checkpoint_20b.py. Every timed figure is the best of ``--runs`` runs: the machine is shared, so the
best run is the one least disturbed by other work. Peak RSS is the process's VmHWM (weights are mmapped
from the checkpoint, so their pages count once they are read).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch
from checkpoint_20b import cache_dir, ensure_checkpoint  # benchmarks/ is on sys.path when run as a script
from memory import peak_rss_gb  # benchmarks/memory.py

from ossagent.model.cache import FullLayer
from ossagent.model.engine import Engine
from ossagent.model.gpt_oss import GptOss
from ossagent.model.kernels.accelerate import accelerate
from ossagent.model.loader import load_model
from ossagent.model.quant8 import quantize_model

# reference points: shared/docs/cpu-performance.md of the project docs (sections 2 and 4), measured on this machine
LIMIT_DECODE, LIMIT_DECODE_Q8, LIMIT_PREFILL = 6.3, 9.2, 260.0
LLAMA = {"decode": 2.46, "decode_q8": 4.23, "prefill": 15.2, "prefill_q8": 17.4}
GOALS = {"decode": 3.5, "decode_q8": 4.5, "prefill": 60.0, "rss": 14.5}


def best_of(runs: int, fn: Callable[[], float]) -> float:
    times = []
    for _ in range(runs):
        times.append(fn())
        print(f"  run: {times[-1]:.3f} s", flush=True)
    return min(times)


def tokens(n: int, seed: int, vocab: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(200000) % vocab for _ in range(n)]


def time_prefill(engine: Engine, prompt: list[int]) -> float:
    engine.reset()
    t0 = time.perf_counter()
    engine.prefill(prompt)
    return time.perf_counter() - t0


def time_decode(engine: Engine, context: list[int], steps: int) -> float:
    """Seconds per token for greedy decode steps after ``context`` (the cache is re-cut to it each run)."""
    engine.prefill(context)
    token = context[-1]
    t0 = time.perf_counter()
    for _ in range(steps):
        logits = engine._feed([token])
        token = int(torch.argmax(logits))
    return (time.perf_counter() - t0) / steps


def prefix_reuse(
    engine: Engine, prefix: list[int], news: list[int], runs: int
) -> list[tuple[int, int, float]]:
    """(new tokens, tokens computed, best time to first token) for turns that share ``prefix``."""
    engine.reset()
    engine.prefill(prefix)
    rows = []
    for n in news:

        def turn(n: int = n) -> float:
            engine.prefill([*prefix, *tokens(64, 99, engine.model.config.vocab_size)])  # a previous turn
            t0 = time.perf_counter()
            engine.prefill([*prefix, *tokens(n, n, engine.model.config.vocab_size)])
            return time.perf_counter() - t0

        ttft = best_of(runs, turn)
        rows.append((n, engine.cache_stats.computed_tokens, ttft))
    return rows


def unembedding_seconds(model: GptOss, runs: int) -> float:
    """Final norm + unembedding of one token (the part of a decode step that does not scale with layers)."""
    x = torch.randn(1, 1, model.config.hidden_size).to(model.dtype)

    def once() -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            model.unembedding(model.norm(x))
        return time.perf_counter() - t0

    return min(once() for _ in range(max(runs, 5)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="default cache/gpt-oss-20b-random[-Nl] above the checkout")
    ap.add_argument("--layers", type=int, default=24, help="fewer layers (same shapes): figures extrapolated")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="compute threads: one per physical core")
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--decode-steps", type=int, default=8)
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--prefix", type=int, default=2048)
    ap.add_argument(
        "--max-len", type=int, default=8192, help="KV cache reserved (and touched) for the RSS figure"
    )
    ap.add_argument("--no-native", action="store_true", help="the pure-torch path (the unoptimised baseline)")
    args = ap.parse_args()
    full = 24
    scale = full / args.layers  # per-layer work scales with the layer count; unembedding does not
    path = args.model or cache_dir() / f"gpt-oss-20b-random{'' if args.layers == full else f'-{args.layers}l'}"

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = load_model(ensure_checkpoint(path, args.layers), device="cpu")
    native = False if args.no_native else accelerate(model)
    load_s = time.perf_counter() - t0
    block_bytes = sum(
        t.numel() * t.element_size() for t in [*model.blocks[0].parameters(), *model.blocks[0].buffers()]
    )
    engine = Engine(model, max_len=args.max_len, chunk_size=512)
    for layer in engine.cache.layers:  # the whole 8k cache resident, as a long conversation would have it
        if isinstance(layer, FullLayer):
            layer._reserve(args.max_len)
            layer.k.fill_(0)
            layer.v.fill_(0)
    cache_extra = (full - args.layers) * sum(layer.nbytes() for layer in engine.cache.layers) / args.layers
    vocab = model.config.vocab_size
    res: dict[str, float] = {}

    def decode_rate() -> float:
        u = unembedding_seconds(model, args.runs)
        step = best_of(args.runs, lambda: time_decode(engine, ctx, args.decode_steps))
        return 1 / (u + (step - u) * scale)

    prompt = tokens(args.prefill, 1, vocab)
    res["prefill"] = args.prefill / (scale * best_of(args.runs, lambda: time_prefill(engine, prompt)))
    print(f"prefill {res['prefill']:.2f} tok/s", flush=True)
    ctx = tokens(args.context, 2, vocab)
    res["decode"] = decode_rate()
    print(f"decode {res['decode']:.2f} tok/s", flush=True)
    reuse = [
        (n, c, t * scale)
        for n, c, t in prefix_reuse(engine, tokens(args.prefix, 3, vocab), [16, 128, 512], args.runs)
    ]
    rss_bf16 = peak_rss_gb() + ((full - args.layers) * block_bytes + cache_extra) / 1e9
    print(f"prefix reuse {reuse}, peak RSS {rss_bf16:.2f} GB", flush=True)
    quantize_model(model)
    res["decode_q8"] = decode_rate()
    print(f"decode int8 {res['decode_q8']:.2f} tok/s", flush=True)
    res["prefill_q8"] = args.prefill / (scale * best_of(args.runs, lambda: time_prefill(engine, prompt)))

    if args.layers != full:
        print(
            f"\nmeasured on the first {args.layers} of 24 layers (same shapes, full vocabulary); per-layer times "
            f"scaled by {scale:g}, unembedding measured apart and not scaled; RSS adds the missing layers' bytes"
        )
    print(
        f"\ngpt-oss-20b (random weights, MXFP4 experts), {args.threads} threads, native kernels: {native}, "
        f"best of {args.runs} runs; load {load_s:.0f} s\n"
    )
    print(f"| {'figure':<42} | {'ours':>8} | {'goal':>8} | {'limit':>8} | {'llama.cpp':>9} |")
    print(f"|{'-' * 44}|{'-' * 10}|{'-' * 10}|{'-' * 10}|{'-' * 11}|")

    def row(name: str, ours: float, goal: str, limit: str, llama: str) -> None:
        print(f"| {name:<42} | {ours:>8.2f} | {goal:>8} | {limit:>8} | {llama:>9} |")

    row(f"decode tok/s @ {args.context} ctx, bf16 rest", res["decode"], ">= 3.5", f"{LIMIT_DECODE}", "2.46")
    row(
        f"decode tok/s @ {args.context} ctx, int8 attn+unemb",
        res["decode_q8"],
        ">= 4.5",
        f"{LIMIT_DECODE_Q8}",
        "4.23",
    )
    row(
        f"prefill tok/s, {args.prefill} tokens, bf16 rest",
        res["prefill"],
        ">= 60",
        f"{LIMIT_PREFILL:.0f}",
        "15.2",
    )
    row(
        f"prefill tok/s, {args.prefill} tokens, int8 attn+unemb",
        res["prefill_q8"],
        "",
        f"{LIMIT_PREFILL:.0f}",
        "17.4",
    )
    row(f"peak RSS GB, bf16 rest, {args.max_len // 1024}k cache", rss_bf16, "<= 14.5", "", "")
    for n, computed, ttft in reuse:
        row(f"TTFT s, {args.prefix} prefix + {n} new ({computed} computed)", ttft, "", "", "")
    print(f"\npeak RSS after int8 conversion: {peak_rss_gb():.2f} GB (the bf16 copies were resident first)")


if __name__ == "__main__":
    main()
