"""Aggregate decode speed with 1, 2, 4, 8 concurrent streams (continuous batching), and a shared prefix.

    .venv/bin/python benchmarks/batched_decode.py --tiny
    flock /tmp/ossagent-20b.lock .venv/bin/python benchmarks/batched_decode.py --model DIR

Each row: B streams with different ``--context``-token prompts decode greedily together through
``BatchEngine``; after every stream has its first token, ``--steps`` steps are timed (one forward each, B new
tokens). Best of ``--runs`` (the machine is shared: the best run is the least disturbed); the prompts stay in the
pool between runs, so only the first run of a stream computes its prompt. ``single`` is the single-sequence
``Engine`` on the same model (no pool, no batching) for comparison. The shared-prefix row: 8 requests arriving
together whose prompts share ``--prefix`` tokens, time until each has its first token, and tokens computed.
Every row records the 1-minute load average when it was measured; peak RSS is the process's VmHWM.
``--torch-decode-attention`` times the path before the native decode attention kernel (each sequence's decode
attention in torch, one after another) on the same model.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import torch
from memory import peak_rss_gb  # benchmarks/memory.py

from ossagent.model.batch import BatchEngine, Stream
from ossagent.model.checkpoint_writer import write_checkpoint
from ossagent.model.config import GptOssConfig
from ossagent.model.engine import Engine, SamplingParams

TINY = dict(  # the tests' tiny shape, a bigger vocabulary
    num_hidden_layers=4, num_experts=8, experts_per_token=2, vocab_size=1000, hidden_size=64,
    intermediate_size=64, head_dim=16, num_attention_heads=8, num_key_value_heads=2, sliding_window=8,
)


def tokens(n: int, seed: int, vocab: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(vocab) for _ in range(n)]


def first_tokens(batch: BatchEngine, streams: list[Stream]) -> None:
    while not all(s.generated for s in streams):
        batch.step()


def unembedding_seconds(batch: BatchEngine, n: int) -> float:
    """Final norm + unembedding of n tokens (the part of a step that does not scale with the layer count)."""
    model = batch.model
    x = torch.randn(n, model.config.hidden_size).to(model.dtype)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        with torch.no_grad():
            model.unembedding(model.norm(x))
        times.append(time.perf_counter() - t0)
    return min(times)


def decode_rate(batch: BatchEngine, n: int, context: int, steps: int, scale: float = 1.0) -> float:
    """Aggregate tok/s of n streams decoding together (prompts already in the pool after the first run).
    ``scale`` != 1: per-layer time scaled by it (a checkpoint with fewer layers standing in for the full one)."""
    vocab = batch.model.config.vocab_size
    params = SamplingParams(max_tokens=steps + 2, temperature=0)  # every timed step feeds every stream
    streams = [batch.generate(tokens(context, i, vocab), params) for i in range(n)]
    first_tokens(batch, streams)
    before = sum(len(s.generated) for s in streams)
    t0 = time.perf_counter()
    for _ in range(steps):
        batch.step()
    seconds = time.perf_counter() - t0
    if scale != 1.0:
        u = unembedding_seconds(batch, n) * steps
        seconds = u + (seconds - u) * scale
    made = sum(len(s.generated) for s in streams) - before
    for s in streams:
        s.close()
    return made / seconds


def single_rate(engine: Engine, context: int, steps: int) -> float:
    engine.prefill(tokens(context, 0, engine.model.config.vocab_size))
    token = 0
    t0 = time.perf_counter()
    for _ in range(steps):
        token = int(torch.argmax(engine._feed([token])))
    return steps / (time.perf_counter() - t0)


def shared_prefix(batch: BatchEngine, prefix: int, n: int) -> tuple[float, int]:
    """Seconds until n requests sharing ``prefix`` tokens (each + 16 own) all have a first token; computed."""
    vocab = batch.model.config.vocab_size
    common = tokens(prefix, 999, vocab)
    computed = batch.cache_stats.total_computed
    t0 = time.perf_counter()
    streams = [batch.generate([*common, *tokens(16, 1000 + i, vocab)], SamplingParams(max_tokens=1, temperature=0))
               for i in range(n)]
    first_tokens(batch, streams)
    return time.perf_counter() - t0, batch.cache_stats.total_computed - computed


def load(args: argparse.Namespace) -> tuple[Engine, str]:
    if args.tiny:
        folder = Path(tempfile.mkdtemp(prefix="ossagent-tiny-"))
        write_checkpoint(folder, GptOssConfig(**TINY), layout="hf", experts="mxfp4", seed=1)  # type: ignore[arg-type]
        return Engine.from_pretrained(folder, device="cpu", chunk_size=args.chunk), "tiny (4 layers, hidden 64)"
    if not (args.model / "config.json").is_file():
        raise SystemExit(f"no checkpoint in {args.model}: build it with benchmarks/checkpoint_20b.py (under the lock)")
    return Engine.from_pretrained(args.model, device="cpu", chunk_size=args.chunk), f"{args.model.name}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="checkpoint folder (the synthetic gpt-oss-20b)")
    ap.add_argument("--tiny", action="store_true", help="a tiny random model written to a temporary folder")
    ap.add_argument("--streams", default="1,2,4,8")
    ap.add_argument("--context", type=int, default=256, help="prompt tokens per stream")
    ap.add_argument("--steps", type=int, default=8, help="timed decode steps per run")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--prefix", type=int, default=2048, help="shared prefix of the 8 simultaneous requests (0: skip)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=512, help="prefill chunk")
    ap.add_argument("--kv-memory", type=float, default=4.0, help="GB of KV cache the pool keeps")
    ap.add_argument("--torch-decode-attention", action="store_true",
                    help="decode steps attend per sequence in torch, not on the native kernel (the path before it)")
    ap.add_argument("--full-layers", type=int, default=0,
                    help="the checkpoint has fewer layers than this model: scale per-layer time up to it")
    args = ap.parse_args()
    if args.tiny == (args.model is not None):
        ap.error("give exactly one of --tiny and --model")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    engine, name = load(args)
    if args.torch_decode_attention:
        for block in engine.model.blocks:
            block.attn.native_decode = False  # type: ignore[union-attr]
        name += ", decode attention in torch"
    print(f"loaded {name} in {time.perf_counter() - t0:.0f} s, {args.threads} threads", flush=True)
    batch = BatchEngine(engine, kv_memory=int(args.kv_memory * 1e9), max_batch=8, max_ahead=1 << 20)
    layers = engine.model.config.num_hidden_layers
    scale = args.full_layers / layers if args.full_layers else 1.0
    counts = [int(x) for x in args.streams.split(",")]
    best: dict[str, tuple[float, float]] = {}  # label -> (best aggregate tok/s, load average then)
    for run in range(args.runs):  # every stream count once per run, so load changes touch them all alike
        for label in [*(["single Engine"] if scale == 1.0 else []), *map(str, counts)]:
            if label == "single Engine":
                rate = single_rate(engine, args.context, args.steps)
            else:
                batch.max_batch = int(label)
                rate = decode_rate(batch, int(label), args.context, args.steps, scale)
            load1 = os.getloadavg()[0]
            print(f"run {run + 1}: {label}: {rate:.3f} tok/s, load {load1:.2f}", flush=True)
            if rate > best.get(label, (0.0, 0.0))[0]:
                best[label] = (rate, load1)
    base = best[str(counts[0])][0]
    rows = [(label, rate, rate / (int(label) if label.isdigit() else 1), load1) for label, (rate, load1) in best.items()]
    print(f"\n{name}: greedy decode after {args.context}-token prompts, best of {args.runs} x {args.steps} steps")
    if scale != 1.0:
        print(f"measured on {layers} layers; per-layer time scaled by {scale:g} to {args.full_layers} layers "
              "(unembedding of the batch measured apart, not scaled)")
    print()
    print("| streams | aggregate tok/s | per stream tok/s | vs 1 stream | load avg (1 min) |")
    print("|---|---:|---:|---:|---:|")
    for label, rate, per, load1 in rows:
        print(f"| {label} | {rate:.2f} | {per:.2f} | {rate / base:.2f}x | {load1:.2f} |")
    if args.prefix:
        batch.max_batch = 8
        seconds, computed = shared_prefix(batch, args.prefix, 8)
        print(f"\n8 requests sharing a {args.prefix}-token prefix (+16 own tokens each), arriving together: all first "
              f"tokens after {seconds:.1f} s, {computed} tokens computed (8 x {args.prefix + 16} = "
              f"{8 * (args.prefix + 16)} without sharing); load {os.getloadavg()[0]:.2f}")
    stats = batch.cache_stats
    print(f"\npool: {stats.entries} entries, {stats.nbytes / 1e9:.2f} GB of KV (budget {args.kv_memory} GB), "
          f"{stats.evictions} evictions, {stats.forks} forks; peak RSS {peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
