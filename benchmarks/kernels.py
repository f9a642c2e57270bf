"""Native kernel throughput: MXFP4 GEMV (in L2 and from DRAM), MXFP4 dequant, int8 GEMV vs torch GEMVs.

    .venv/bin/python benchmarks/kernels.py [--threads 2]

Best of many calls per row (the machine is shared). "from DRAM" rows cycle over a weight pool larger than
the 300 MB L3, so every call streams its weights from memory. Uses about 2.5 GB.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ossagent.model import kernels
from ossagent.model.gpt_oss import swiglu

H = INTER = 2880


def best(fn: Callable[[int], object], n: int) -> float:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not kernels.load():
        raise SystemExit("native kernels unavailable")
    ops = torch.ops.ossagent_kernels
    g = torch.Generator().manual_seed(0)
    e = 48  # 48 experts x 13.2 MB = 0.64 GB > L3
    b1 = torch.randint(0, 256, (e, 2 * INTER, H // 32, 16), generator=g, dtype=torch.uint8)
    s1 = torch.randint(118, 124, (e, 2 * INTER, H // 32), generator=g, dtype=torch.uint8)
    b2 = torch.randint(0, 256, (e, H, INTER // 32, 16), generator=g, dtype=torch.uint8)
    s2 = torch.randint(118, 124, (e, H, INTER // 32), generator=g, dtype=torch.uint8)
    x = torch.randn(1, H, generator=g).to(torch.bfloat16)
    rows = []

    def gemv(ex: int) -> None:
        ids = torch.tensor([ex % e])
        ops.mxfp4_gemv(x, b1, s1, ids, None, 0, 1.702, 7.0)

    small_b, small_s = b1[0, :512].contiguous()[None], s1[0, :512].contiguous()[None]
    zero = torch.tensor([0])
    t = best(lambda i: ops.mxfp4_gemv(x, small_b, small_s, zero, None, 0, 1.702, 7.0), 10 * args.calls)
    rows.append(("MXFP4 GEMV 512x2880, weights in L2", t, 512 * H * 17 / 32))
    w8s = torch.randint(-127, 128, (1024, H), generator=g, dtype=torch.int8)
    sc8 = torch.rand(1024, generator=g)
    t = best(lambda i: ops.int8_gemv(x, w8s, sc8, None), 10 * args.calls)
    rows.append(("int8 GEMV 1024x2880, in cache", t, 1024 * H))
    wbs = torch.randn(1024, H, generator=g).to(torch.bfloat16)
    t = best(lambda i: F.linear(x, wbs), 10 * args.calls)
    rows.append(("bf16 F.linear M=1 1024x2880, in cache", t, 1024 * H * 2))
    t = best(lambda i: gemv(0), args.calls)
    rows.append(("MXFP4 GEMV 5760x2880, weights in cache", t, 2 * INTER * H * 17 / 32))
    t = best(gemv, args.calls)
    rows.append(("MXFP4 GEMV 5760x2880, from DRAM", t, 2 * INTER * H * 17 / 32))

    def moe(i: int) -> None:
        ids = torch.randperm(e, generator=g)[:4]
        h = ops.mxfp4_gemv(x.expand(4, H), b1, s1, ids, None, 1, 1.702, 7.0)
        ops.mxfp4_gemv(h, b2, s2, ids, None, 0, 1.702, 7.0)

    t = best(moe, args.calls)
    rows.append(("MoE decode step: 4 experts up+down, DRAM", t, 4 * 3 * H * INTER * 17 / 32))
    bias1 = torch.zeros(e, 2 * INTER, dtype=torch.bfloat16)
    bias2 = torch.zeros(e, H, dtype=torch.bfloat16)
    w4 = torch.full((4,), 0.25, dtype=torch.bfloat16)

    def moe_torch(i: int) -> None:  # the decode path before mxfp4_moe_decode: 2 GEMVs + ~12 torch ops
        ids, _ = torch.sort(torch.randperm(e, generator=g)[:4])
        h = ops.mxfp4_gemv(x.expand(4, H), b1, s1, ids, bias1, 0, 1.702, 7.0)
        a = swiglu(h.to(torch.bfloat16), 7.0, 1.702)
        y = ops.mxfp4_gemv(a, b2, s2, ids, bias2, 0, 1.702, 7.0).to(torch.bfloat16) * w4[:, None]
        out = y[0:1]
        for j in range(1, 4):
            out = out + y[j : j + 1]

    def moe_fused(i: int) -> None:
        ids = torch.randperm(e, generator=g)[:4]
        ops.mxfp4_moe_decode(x, b1, s1, bias1, b2, s2, bias2, ids, w4, 1.702, 7.0)

    for _ in range(2):  # alternate, so both see the same machine
        rows.append(("MoE layer decode, GEMVs + torch ops, DRAM", best(moe_torch, args.calls), 4 * 3 * H * INTER * 17 / 32))
        rows.append(("MoE layer decode, one fused call, DRAM", best(moe_fused, args.calls), 4 * 3 * H * INTER * 17 / 32))
    out = torch.empty(2 * INTER, H, dtype=torch.bfloat16)
    t = best(lambda i: ops.mxfp4_dequant(b1[i % e], s1[i % e], out), args.calls)
    rows.append(("MXFP4 -> bf16 dequant 5760x2880 (bytes out)", t, 2 * INTER * H * 2))

    n = 201088 // 8
    pool = 8
    w8 = [torch.randint(-127, 128, (n, H), generator=g, dtype=torch.int8) for _ in range(pool)]
    sc = torch.rand(n, generator=g)
    t = best(lambda i: ops.int8_gemv(x, w8[i % pool], sc, None), args.calls)
    rows.append((f"int8 GEMV {n}x{H}, DRAM", t, n * H))
    t = best(lambda i: torch._weight_int8pack_mm(x, w8[i % pool], sc.to(torch.bfloat16)), args.calls)
    rows.append((f"torch _weight_int8pack_mm {n}x{H}, DRAM", t, n * H))

    wb = [torch.randn(n // 2, H, generator=g).to(torch.bfloat16) for _ in range(pool)]
    t = best(lambda i: F.linear(x, wb[i % pool]), args.calls)
    rows.append((f"bf16 F.linear M=1 {n // 2}x{H}, DRAM", t, n * H))
    wf = [w.float() for w in wb[:4]]

    t = best(lambda i: F.linear(x.float(), wf[i % 4]), args.calls)
    rows.append((f"fp32 F.linear M=1 {n // 2}x{H}, DRAM", t, n * H * 2))

    print(f"\n{args.threads} threads, best of {args.calls} calls\n")
    print(f"| {'kernel':<46} | {'ms':>7} | {'GB/s':>6} |")
    print(f"|{'-' * 48}|{'-' * 9}|{'-' * 8}|")
    for name, sec, nbytes in rows:
        print(f"| {name:<46} | {sec * 1e3:>7.3f} | {nbytes / sec / 1e9:>6.1f} |")


if __name__ == "__main__":
    main()
