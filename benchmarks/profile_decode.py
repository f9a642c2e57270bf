"""Where a decode step's time goes: torch profiler self time per op, per token, on the gpt-oss-20b shapes.

    .venv/bin/python benchmarks/profile_decode.py --model DIR [--weights int8] [--int8-activations on|off]
        [--context 1024] [--steps 8]

Use a checkpoint with fewer layers (``checkpoint_20b.py``'s ``ensure_checkpoint(path, layers)``) to stay
under 4 GB; per-layer ops then scale with 24 / layers, the unembedding does not. The profiler adds a few
microseconds per op, so the wall time per token it prints is a little above an unprofiled run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from speed import tokens  # benchmarks/ is on sys.path when run as a script
from torch.profiler import ProfilerActivity, profile

from ossagent.model.engine import Engine
from ossagent.model.kernels.accelerate import accelerate
from ossagent.model.loader import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--weights", default="bf16", choices=["bf16", "int8"])
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="0: follow the load, as the engine does")
    ap.add_argument("--top", type=int, default=14)
    ap.add_argument("--int8-activations", choices=["on", "off"], default=None,
                    help="int8 decode activations (VNNI kernels); default: on with --weights int8")
    args = ap.parse_args()
    model = load_model(args.model, device="cpu", weights=args.weights)
    acts = None if args.int8_activations is None else args.int8_activations == "on"
    accelerate(model, int8=args.weights == "int8", threads=args.threads or None, int8_activations=acts)
    engine = Engine(model, max_len=args.context + 64)
    layers = engine.model.config.num_hidden_layers
    logits = engine.prefill(tokens(args.context, 2, engine.model.config.vocab_size))
    for _ in range(2):  # warm up
        logits = engine._feed([int(torch.argmax(logits))])
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            logits = engine._feed([int(torch.argmax(logits))])
    wall = (time.perf_counter() - t0) / args.steps
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in rows) / args.steps / 1e3
    acts_on = bool(getattr(model.blocks[0].mlp.experts, "int8_activations", False))
    print(f"\n{layers} layers, weights {args.weights}, int8 activations {acts_on}, ctx {args.context}, {torch.get_num_threads()} threads at the end: "
          f"{wall * 1e3:.1f} ms per token (profiled), ops' self time {total:.1f} ms\n")
    print(f"| {'op':<40} | {'calls/tok':>9} | {'ms/tok':>7} | {'share':>6} |")
    print(f"|{'-' * 42}|{'-' * 11}|{'-' * 9}|{'-' * 8}|")
    for e in rows[: args.top]:
        ms = e.self_cpu_time_total / args.steps / 1e3
        print(f"| {e.key[:40]:<40} | {e.count / args.steps:>9.1f} | {ms:>7.2f} | {ms / total:>6.1%} |")


if __name__ == "__main__":
    main()
