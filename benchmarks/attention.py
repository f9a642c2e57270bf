"""One attention layer of gpt-oss-20b's shapes: the plain path against torch's fused CPU kernel, in one run.

    .venv/bin/python benchmarks/attention.py [--threads 1,2] [--rounds 3] [--prefix 0,2048,8192]
        [--decode 1024,8192] [--few 1,8,16,32]

Shapes: 64 query heads, 8 key/value heads, head_dim 64, bf16, random weights. Each prefill row attends T = 512
new queries (``--tokens``) after a cached prefix of S_prefix positions, in a full layer (a ``FullLayer`` cache,
S = S_prefix + T keys) or a sliding one (a ``RingLayer``, window 128: the 127 keys before the chunk plus the
chunk). The keys come from the real cache classes, so both paths read the cache's head-major storage as the
model does. Only ``Attention.attend`` is timed (no projections): "old" with ``fused = False`` (the default:
plain masked softmax in query blocks), "new" with ``fused = True`` (the fused kernel for T >=
``FLASH_MIN_QUERIES``). The rows for a few
new tokens (T in ``--few``, a full layer at a context of 1k / 8k tokens: decode and short turns) time ``_attend``
against ``_attend_flash`` directly, whatever ``attend`` would pick: they show where the fused kernel starts to
win, which sets ``FLASH_MIN_QUERIES``. Old and new run alternately, ``--rounds`` times each, and each keeps its best time; ratio = old / new.
The load average (1 min) is printed at the start and the end of every row: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch

from ossagent.model.cache import FullLayer, RingLayer
from ossagent.model.config import GptOssConfig
from ossagent.model.gpt_oss import Attention, flash_attention_op

CONFIG = GptOssConfig(
    num_hidden_layers=2, num_experts=4, experts_per_token=2, vocab_size=256, hidden_size=2880,
    intermediate_size=2880, head_dim=64, num_attention_heads=64, num_key_value_heads=8, sliding_window=128,
)  # layer 0 slides, layer 1 attends fully (as in gpt-oss-20b)
DTYPE = torch.bfloat16
Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def cached_inputs(layer: int, prefix: int, t: int, g: torch.Generator) -> Inputs:
    """q [1, T, nh, d], keys/values [1, S, nkv, d] as the layer's cache returns them, q_pos [T], k_pos [S]."""
    nh, nkv, d = CONFIG.num_attention_heads, CONFIG.num_key_value_heads, CONFIG.head_dim
    if CONFIG.is_sliding(layer):
        cache: FullLayer | RingLayer = RingLayer(nkv, d, CONFIG.sliding_window, 512, 0, 1 << 30, "cpu", DTYPE)
    else:
        cache = FullLayer(nkv, d, prefix + t, "cpu", DTYPE)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(DTYPE)

    for a in range(0, prefix, 512):  # the prefix in chunks, as the engine feeds it
        n = min(512, prefix - a)
        cache.update(rand(n, nkv, d), rand(n, nkv, d), a)
    k, v, k_pos = cache.update(rand(t, nkv, d), rand(t, nkv, d), prefix)
    return rand(1, t, nh, d), k[None], v[None], torch.arange(prefix, prefix + t), k_pos


def best_pair(old: Callable[[], object], new: Callable[[], object], rounds: int) -> tuple[float, float]:
    t_old = t_new = float("inf")
    for _ in range(rounds):
        for fn, is_old in ((old, True), (new, False)):
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            t_old, t_new = (min(t_old, dt), t_new) if is_old else (t_old, min(t_new, dt))
    return t_old, t_new


def run_row(attn: Attention, inputs: Inputs, direct: bool, rounds: int) -> tuple[float, float]:
    flash = flash_attention_op()
    assert flash is not None, "this torch has no fused CPU attention kernel"

    def old() -> object:
        return attn._attend(*inputs) if direct else attn.attend(*inputs)

    def new() -> object:
        if direct:
            return attn._attend_flash(flash, *inputs)
        attn.fused = True
        try:
            return attn.attend(*inputs)
        finally:
            attn.fused = False

    return best_pair(old, new, rounds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--prefix", default="0,2048,8192")
    p.add_argument("--decode", default="1024,8192", help="contexts of the few-token rows ('' for none)")
    p.add_argument("--few", default="1,8,16,32", help="T of the few-token rows")
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    layers = {layer: Attention(CONFIG, layer, "cpu", DTYPE) for layer in (0, 1)}
    for attn in layers.values():
        with torch.no_grad():
            attn.sinks.copy_(torch.randn(CONFIG.num_attention_heads, generator=g))
    rows: list[tuple[str, int, int, int, bool]] = []  # label, layer, prefix, T, direct
    for prefix in (int(x) for x in args.prefix.split(",") if x):
        rows += [("full", 1, prefix, args.tokens, False), ("sliding 128", 0, prefix, args.tokens, False)]
    for ctx in (int(x) for x in args.decode.split(",") if x):
        rows += [("full", 1, ctx - t, t, True) for t in (int(x) for x in args.few.split(","))]
    print(f"torch {torch.__version__}, bf16, 64 q heads / 8 kv heads, d 64; best of {args.rounds}, alternately\n")
    print("| threads | layer | T | S_prefix | old ms | new ms | old / new | new tok/s | load start-end |")
    print("|---|---|---|---|---|---|---|---|---|")
    for threads in (int(x) for x in args.threads.split(",")):
        torch.set_num_threads(threads)
        for label, layer, prefix, t, direct in rows:
            inputs = cached_inputs(layer, prefix, t, g)
            load0 = os.getloadavg()[0]
            with torch.inference_mode():
                t_old, t_new = run_row(layers[layer], inputs, direct, args.rounds)
            load1 = os.getloadavg()[0]
            print(f"| {threads} | {label} | {t} | {prefix} | {t_old * 1e3:.1f} | {t_new * 1e3:.1f} | "
                  f"{t_old / t_new:.2f} | {t / t_new:.0f} | {load0:.2f}-{load1:.2f} |", flush=True)


if __name__ == "__main__":
    main()
