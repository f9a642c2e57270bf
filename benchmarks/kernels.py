"""Native kernel throughput: the bf16-activation kernels against the int8-activation (VNNI) ones, in one run.

    .venv/bin/python benchmarks/kernels.py [--threads 2] [--calls 40] [--rounds 3] [--tokens 1,2,4,8,16,32,64]

Each row pair (old, new) is timed alternately in ``--rounds`` rounds of ``--calls`` calls, and each side keeps
its best call, so both see the same machine; the ratio is old time / new time (> 1: the new kernel is faster).
"from DRAM" rows cycle over a weight pool larger than the L3, so every call streams its weights from memory.
GB/s counts the packed weight bytes a call reads (MXFP4: 17 bytes per 32 weights; int8: 1 byte per weight).
The bf16 GEMV row compares oneDNN's ``F.linear`` for one row (the bf16 attention and unembedding before)
with the native ``bf16_linear`` (``kernels.bf16.GemvLinear``). The MoE rows run a whole layer's experts for T
tokens (top-4 of 48 random experts per token): the old path
is ``native_expert_mlp`` with bf16 activations (one fused call for one token; for more, the pair GEMV for
experts with <= 2 tokens and dequantise + bf16 matmul for the rest), the new one the grouped int8 kernel.
``--moe-bf16`` times only the MoE layer with bf16 activations, the gpt-oss-20b's routing (top-4 of 32 experts,
uniformly random per token, as tokens of different sequences route independently): old, the per-expert paths
(``moe.per_expert_mlp``; ``mxfp4_moe_decode`` for one token), against the grouped bf16 kernel ``mxfp4_moe_bf16``;
this sets ``GROUPED_BF16_MAX_TOKENS``.
The load average is printed with the table: the machine is shared, and a call longer than a scheduler time
slice is often interrupted, so with ``--threads 1`` ``--cpu-time`` times the thread's CPU time instead (memory
stalls count, other processes' turns do not). Uses about 3 GB.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ossagent.model import kernels
from ossagent.model.config import GptOssConfig
from ossagent.model.gpt_oss import Experts
from ossagent.model.kernels.moe import native_expert_mlp, per_expert_mlp

H = INTER = 2880
E = 48  # 48 experts x 13.2 MB = 0.64 GB > L3
MX = 17 / 32  # bytes per MXFP4 weight
Fn = Callable[[int], object]


CLOCK = time.perf_counter  # --cpu-time: time.thread_time


def best(fn: Fn, n: int) -> float:
    times = []
    for i in range(n):
        t0 = CLOCK()
        fn(i)
        times.append(CLOCK() - t0)
    return min(times)


def pair(old: Fn, new: Fn, calls: int, rounds: int) -> tuple[float, float]:
    """Best time of each, measured alternately."""
    t_old = t_new = float("inf")
    for _ in range(rounds):
        t_old = min(t_old, best(old, calls))
        t_new = min(t_new, best(new, calls))
    return t_old, t_new


def experts(g: torch.Generator) -> Experts:
    cfg = GptOssConfig(num_hidden_layers=1, num_experts=E, experts_per_token=4, vocab_size=32, hidden_size=H,
                       intermediate_size=INTER, head_dim=64, num_attention_heads=64, num_key_value_heads=8,
                       sliding_window=128)
    ex = Experts(cfg, quantized=True, device="cpu", dtype=torch.bfloat16)
    with torch.no_grad():
        for name in ("mlp1_blocks", "mlp2_blocks"):
            ex.get_buffer(name).random_(0, 256, generator=g)
        for name in ("mlp1_scales", "mlp2_scales"):
            ex.get_buffer(name).random_(118, 124, generator=g)
        ex.mlp1_bias.normal_(generator=g)
        ex.mlp2_bias.normal_(generator=g)
    return ex


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", default="1,2,4,8,16,32,64", help="token counts of the MoE layer rows")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time the calling thread's CPU time instead of wall time (needs --threads 1): calls "
                         "longer than a time slice are then not charged for the time other processes ran")
    ap.add_argument("--moe-bf16", action="store_true",
                    help="only the MoE layer with bf16 activations: per-expert paths against mxfp4_moe_bf16")
    args = ap.parse_args()
    global CLOCK
    if args.cpu_time:
        if args.threads != 1:
            raise SystemExit("--cpu-time needs --threads 1")
        CLOCK = time.thread_time
    torch.set_num_threads(args.threads)
    if not kernels.load():
        raise SystemExit("native kernels unavailable")
    ops = torch.ops.ossagent_kernels
    g = torch.Generator().manual_seed(0)
    ex = experts(g)
    b1, s1 = ex.mlp1_blocks, ex.mlp1_scales
    x = torch.randn(1, H, generator=g).to(torch.bfloat16)
    load0 = os.getloadavg()
    rows: list[tuple[str, float, float, float]] = []  # name, old s, new s, bytes

    def add(name: str, old: Fn, new: Fn, nbytes: float, calls: int = args.calls) -> None:
        rows.append((name, *pair(old, new, calls, args.rounds), nbytes))

    small_b, small_s = b1[0, :512].contiguous()[None], s1[0, :512].contiguous()[None]
    zero = torch.tensor([0])
    add("MXFP4 GEMV 512x2880, in L2", lambda i: ops.mxfp4_gemv(x, small_b, small_s, zero, None, 0, 1.702, 7.0),
        lambda i: ops.mxfp4_gemv_q8(x, small_b, small_s, zero, None), 512 * H * MX, 10 * args.calls)
    add("MXFP4 GEMV 5760x2880, in cache", lambda i: ops.mxfp4_gemv(x, b1, s1, zero, None, 0, 1.702, 7.0),
        lambda i: ops.mxfp4_gemv_q8(x, b1, s1, zero, None), 2 * INTER * H * MX)
    add("MXFP4 GEMV 5760x2880, DRAM",
        lambda i: ops.mxfp4_gemv(x, b1, s1, torch.tensor([i % E]), None, 0, 1.702, 7.0),
        lambda i: ops.mxfp4_gemv_q8(x, b1, s1, torch.tensor([(i + 7) % E]), None), 2 * INTER * H * MX)
    if args.moe_bf16:
        return moe_bf16_table(args, ex, g)
    for t in [int(v) for v in args.tokens.split(",")]:
        xs = torch.randn(t, H, generator=g).to(torch.bfloat16)
        routes = [torch.stack([torch.randperm(E, generator=g)[:4] for _ in range(t)]) for _ in range(8)]
        w = torch.full((t, 4), 0.25, dtype=torch.bfloat16)
        used = sum(len(torch.unique(r)) for r in routes) / len(routes)
        ex.int8_activations = False
        old = lambda i, xs=xs, routes=routes, w=w: native_expert_mlp(xs, routes[i % 8], w, ex, 7.0)  # noqa: E731
        new = lambda i, xs=xs, routes=routes, w=w: ops.mxfp4_moe_q8(  # noqa: E731
            xs, b1, s1, ex.mlp1_bias, ex.mlp2_blocks, ex.mlp2_scales, ex.mlp2_bias, routes[i % 8], w, 1.702, 7.0)
        with torch.no_grad():
            add(f"MoE layer, {t} token(s), {used:.1f} experts, DRAM", old, new, used * 3 * H * INTER * MX,
                max(4, args.calls // max(1, t // 4)))

    w8s = torch.randint(-127, 128, (1024, H), generator=g, dtype=torch.int8)
    sc8 = torch.rand(1024, generator=g)
    add("int8 GEMV 1024x2880, in cache", lambda i: ops.int8_gemv(x, w8s, sc8, None),
        lambda i: ops.int8_gemv_q8(x, w8s, sc8, None), 1024 * H, 10 * args.calls)
    n, pool = 201088 // 8, 6
    w8 = [torch.randint(-127, 128, (n, H), generator=g, dtype=torch.int8) for _ in range(pool)]
    sc = torch.rand(n, generator=g)
    add(f"int8 GEMV {n}x{H}, DRAM", lambda i: ops.int8_gemv(x, w8[i % pool], sc, None),
        lambda i: ops.int8_gemv_q8(x, w8[(i + 3) % pool], sc, None), n * H)

    wb = [torch.randn(5120, H, generator=g).to(torch.bfloat16) for _ in range(24)]  # 24 x 29.5 MB
    add("bf16 GEMV 5120x2880 (qkv size), DRAM; old: F.linear", lambda i: F.linear(x, wb[i % 24]),
        lambda i: ops.bf16_linear(x, wb[(i + 12) % 24], None, x.dtype), 5120 * H * 2)

    table(args, load0, rows, "kernel (old: bf16 activations, new: int8 VNNI)")


def table(args: argparse.Namespace, load0: tuple[float, float, float], rows: list[tuple[str, float, float, float]],
          title: str) -> None:
    load1 = os.getloadavg()
    clock = "CPU time of the thread" if args.cpu_time else "wall time"
    print(f"\n{args.threads} threads, {clock}, best of {args.rounds} x {args.calls} calls per side, alternating; "
          f"load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end (1 min)\n")
    print(f"| {title:<46} | {'old ms':>7} | {'old GB/s':>8} | "
          f"{'new ms':>7} | {'new GB/s':>8} | {'ratio':>5} |")
    print(f"|{'-' * 48}|{'-' * 9}|{'-' * 10}|{'-' * 9}|{'-' * 10}|{'-' * 7}|")
    for name, t_old, t_new, nbytes in rows:
        print(f"| {name:<46} | {t_old * 1e3:>7.3f} | {nbytes / t_old / 1e9:>8.1f} | {t_new * 1e3:>7.3f} | "
              f"{nbytes / t_new / 1e9:>8.1f} | {t_old / t_new:>5.2f} |")


def moe_bf16_table(args: argparse.Namespace, ex: Experts, g: torch.Generator) -> None:
    """One layer for T tokens with bf16 activations, top-4 of the first 32 experts: per-expert paths (old)
    against the grouped kernel (new)."""
    ops, load0 = torch.ops.ossagent_kernels, os.getloadavg()
    ex.int8_activations = False
    rows: list[tuple[str, float, float, float]] = []
    for t in [int(v) for v in args.tokens.split(",")]:
        xs = torch.randn(t, H, generator=g).to(torch.bfloat16)
        routes = [torch.stack([torch.randperm(32, generator=g)[:4] for _ in range(t)]) for _ in range(8)]
        w = torch.softmax(torch.randn(t, 4, generator=g), -1).to(torch.bfloat16)
        used = sum(len(torch.unique(r)) for r in routes) / len(routes)

        def old(i: int, xs: torch.Tensor = xs, routes: list[torch.Tensor] = routes, w: torch.Tensor = w) -> object:
            if xs.shape[0] == 1:
                return ops.mxfp4_moe_decode(xs, ex.mlp1_blocks, ex.mlp1_scales, ex.mlp1_bias, ex.mlp2_blocks,
                                            ex.mlp2_scales, ex.mlp2_bias, routes[i % 8][0], w[0], 1.702, 7.0)
            return per_expert_mlp(xs, routes[i % 8], w, ex, 7.0)

        def new(i: int, xs: torch.Tensor = xs, routes: list[torch.Tensor] = routes, w: torch.Tensor = w) -> object:
            return ops.mxfp4_moe_bf16(xs, ex.mlp1_blocks, ex.mlp1_scales, ex.mlp1_bias, ex.mlp2_blocks,
                                      ex.mlp2_scales, ex.mlp2_bias, routes[i % 8], w, 1.702, 7.0)

        with torch.no_grad():
            rows.append((f"MoE layer bf16, {t} token(s), {used:.1f} experts", *pair(
                old, new, max(4, args.calls // max(1, t // 4)), args.rounds), used * 3 * H * INTER * MX))
    table(args, load0, rows, "MoE bf16 (old: per expert, new: grouped)")


if __name__ == "__main__":
    main()
