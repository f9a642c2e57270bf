"""Where a decode step's time goes: torch profiler self time per op, per token, on the gpt-oss-20b shapes.

    .venv/bin/python benchmarks/profile_decode.py --model DIR [--weights int8] [--int8-activations on|off]
        [--context 1024] [--steps 8]

``--configs`` instead times one decode step's CPU time (1 thread, so other processes' turns are not charged)
with the bf16 attention projections and unembedding on oneDNN's ``F.linear`` or on the native bf16 GEMV
(``GemvLinear``), and the experts with bf16 or int8 activations, switched in one process, alternately.

Use a checkpoint with fewer layers (``checkpoint_20b.py``'s ``ensure_checkpoint(path, layers)``) to stay
under 4 GB; per-layer ops then scale with 24 / layers, the unembedding does not. The profiler adds a few
microseconds per op, so the wall time per token it prints is a little above an unprofiled run.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from speed import tokens  # benchmarks/ is on sys.path when run as a script
from torch.profiler import ProfilerActivity, profile

from ossagent.model.engine import Engine
from ossagent.model.kernels.accelerate import accelerate
from ossagent.model.kernels.bf16 import GemvLinear
from ossagent.model.loader import load_model
from ossagent.model.quant8 import set_int8_activations

CONFIGS = {  # (native bf16 GEMV, int8 expert activations): name
    (False, False): "F.linear attention/unembedding, bf16-activation MXFP4 GEMV",
    (True, False): "bf16 GEMV attention/unembedding, bf16-activation MXFP4 GEMV",
    (True, True): "bf16 GEMV attention/unembedding, int8-activation MoE",
}


def compare_configs(engine: Engine, rounds: int = 3, steps: int = 4) -> None:
    """Best CPU time of a decode step per configuration (see the module docstring)."""
    model = engine.model
    linears = [m for m in model.modules() if type(m) is GemvLinear]
    times: dict[tuple[bool, bool], list[float]] = {k: [] for k in CONFIGS}
    for _ in range(rounds):
        for (gemv, acts), ts in times.items():
            for m in linears:
                m.__class__ = GemvLinear if gemv else torch.nn.Linear
            set_int8_activations(model, acts)
            for _ in range(steps):
                t0 = time.thread_time()
                engine._feed([5])
                ts.append(time.thread_time() - t0)
    print(f"\n{model.config.num_hidden_layers} layers, 1 thread, CPU time of a decode step (best of "
          f"{rounds * steps}), load average {os.getloadavg()[0]:.1f}\n")
    print("| configuration | ms per step |\n|---|---|")
    for key, name in CONFIGS.items():
        print(f"| {name} | {min(times[key]) * 1e3:.1f} |")


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
    ap.add_argument("--configs", action="store_true", help="compare configurations instead (bf16 weights)")
    args = ap.parse_args()
    if args.configs:
        args.threads, args.weights = 1, "bf16"
    model = load_model(args.model, device="cpu", weights=args.weights)
    acts = None if args.int8_activations is None else args.int8_activations == "on"
    accelerate(model, int8=args.weights == "int8", threads=args.threads or None, int8_activations=acts)
    engine = Engine(model, max_len=args.context + 64)
    layers = engine.model.config.num_hidden_layers
    logits = engine.prefill(tokens(args.context, 2, engine.model.config.vocab_size))
    if args.configs:
        compare_configs(engine)
        return
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
