"""A decode step's attention for several sequences, one layer of gpt-oss-20b's shapes: per sequence in torch
against the native kernel (one call for all of them).

    .venv/bin/python benchmarks/decode_attention.py [--threads 2] [--streams 1,4,8] [--context 1024] [--rounds 20]

Shapes: 64 query heads, 8 key/value heads, head_dim 64, bf16, random values. Each of B sequences has a cache of
about ``--context`` positions (sequence i: context + 7 i, so the rings wrap at different slots) and one new token.
"old" is ``Attention.forward_packed``'s per-sequence path: ``update`` (the cache's index tensors) then
``attend``/``_attend``; "new" is its one-token path: ``update_one`` per sequence then one ``decode_attention``
call. Only attention is timed (no projections), for a full layer and a sliding one (window 128); "step (24 layers)"
adds 12 of each, as gpt-oss-20b has. The caches are cut back after every call (not timed), so each call
attends to the same keys. Old and new alternate, ``--rounds`` times each, best time kept; the 1-minute load
average is printed with each row (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch

from ossagent.model import kernels
from ossagent.model.cache import FullLayer, RingLayer
from ossagent.model.config import GptOssConfig
from ossagent.model.gpt_oss import Attention

CONFIG = GptOssConfig(
    num_hidden_layers=2, num_experts=4, experts_per_token=2, vocab_size=256, hidden_size=2880,
    intermediate_size=2880, head_dim=64, num_attention_heads=64, num_key_value_heads=8, sliding_window=128,
)  # layer 0 slides, layer 1 attends fully (as in gpt-oss-20b)
DTYPE = torch.bfloat16
Layer = FullLayer | RingLayer


def caches(layer: int, lengths: list[int], g: torch.Generator) -> list[Layer]:
    nkv, d = CONFIG.num_key_value_heads, CONFIG.head_dim
    out: list[Layer] = []
    for n in lengths:
        if CONFIG.is_sliding(layer):
            cache: Layer = RingLayer(nkv, d, CONFIG.sliding_window, 512, 2048, 1 << 30, "cpu", DTYPE)
        else:
            cache = FullLayer(nkv, d, n + 1, "cpu", DTYPE)
        for a in range(0, n, 512):  # the prompt in chunks, as the engine feeds it
            t = min(512, n - a)
            cache.update(torch.randn(t, nkv, d, generator=g).to(DTYPE), torch.randn(t, nkv, d, generator=g).to(DTYPE), a)
        out.append(cache)
    return out


def best(fn: Callable[[], object], undo: Callable[[], None], rounds: int) -> float:
    t_best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        t_best = min(t_best, time.perf_counter() - t0)
        undo()
    return t_best


def layer_times(layer: int, streams: int, context: int, rounds: int) -> tuple[float, float]:
    """(old, new) seconds for one layer's attention of ``streams`` one-token steps."""
    g = torch.Generator().manual_seed(layer)
    attn = Attention(CONFIG, layer, "cpu", DTYPE)
    with torch.no_grad():
        attn.sinks.copy_(torch.randn(attn.nh, generator=g))
    lengths = [context + 7 * i for i in range(streams)]
    layers = caches(layer, lengths, g)
    nh, nkv, d = attn.nh, attn.nkv, attn.d
    q = torch.randn(1, streams, nh, d, generator=g).to(DTYPE)
    k, v = (torch.randn(1, streams, nkv, d, generator=g).to(DTYPE) for _ in range(2))
    positions = torch.tensor(lengths)

    def old() -> torch.Tensor:
        outs = []
        for i, cache in enumerate(layers):
            k_all, v_all, key_pos = cache.update(k[0, i : i + 1], v[0, i : i + 1], lengths[i])
            outs.append(attn.attend(q[:, i : i + 1], k_all[None], v_all[None], positions[i : i + 1], key_pos))
        return torch.cat(outs, dim=1)

    def new() -> torch.Tensor:
        return attn._decode(q[0], k[0], v[0], lengths, layers)

    def undo() -> None:
        for cache, n in zip(layers, lengths, strict=True):
            cache.truncate(n)

    t_old = t_new = float("inf")
    with torch.no_grad():
        for _ in range(2):  # alternate, so that both see the same machine load
            t_old = min(t_old, best(old, undo, rounds))
            t_new = min(t_new, best(new, undo, rounds))
    return t_old, t_new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--streams", default="1,4,8")
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not kernels.load():
        raise SystemExit("the native kernels are not available on this machine")
    print(f"threads {args.threads}, context ~{args.context}, load {os.getloadavg()[0]:.2f}")
    print("streams | full layer old / new ms | sliding layer old / new ms | step (24 layers) old / new ms | ratio | load")
    for b in (int(s) for s in args.streams.split(",")):
        full_old, full_new = layer_times(1, b, args.context, args.rounds)
        ring_old, ring_new = layer_times(0, b, args.context, args.rounds)
        step_old, step_new = 12 * (full_old + ring_old), 12 * (full_new + ring_new)
        print(f"{b} | {full_old * 1e3:.2f} / {full_new * 1e3:.2f} | {ring_old * 1e3:.2f} / {ring_new * 1e3:.2f} | "
              f"{step_old * 1e3:.1f} / {step_new * 1e3:.1f} | {step_old / step_new:.1f}x | {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
