"""KV cache memory of gpt-oss-20b per context length: computed from the architecture and measured on a real
``KVCache`` filled to the length with the 20b shapes (no weights: keys and values are written directly).

Full-attention layers (12 of 24) keep every position: 2 (k, v) x 8 kv heads x 64 dims x 2 bytes = 2 KiB per
token per layer. Sliding layers (12) keep a ring of window + max(chunk, rollback) = 128 + 2,048 slots, and a
snapshot of the window's 128 keys every 1,024 positions (for deep cuts). Full layers grow by doubling up to
``max_len``, so a cache costs what it holds, up to the figure for its ``--context``.

    .venv/bin/python benchmarks/context_memory.py [--measure 8192,32768]   # 131,072 is computed only
"""

from __future__ import annotations

import argparse

import torch

from ossagent.model.cache import KVCache
from ossagent.model.config import GptOssConfig

CONFIG_20B = GptOssConfig(num_hidden_layers=24, num_experts=32, experts_per_token=4, vocab_size=201088,
                          hidden_size=2880, intermediate_size=2880, head_dim=64, num_attention_heads=64,
                          num_key_value_heads=8, sliding_window=128)
MIB = 2**20


def computed(n: int, cfg: GptOssConfig = CONFIG_20B, chunk: int = 512, rollback: int = 2048,
             snapshot_every: int = 1024) -> tuple[int, int, int]:
    """(full layers, rings, snapshots) in bytes for a cache holding n positions with max_len n."""
    per = 2 * cfg.num_key_value_heads * cfg.head_dim * 2  # k and v, bf16
    full = sum(1 for i in range(cfg.num_hidden_layers) if not cfg.is_sliding(i))
    rings = cfg.num_hidden_layers - full
    slots = cfg.sliding_window + max(chunk, rollback)
    return full * n * per, rings * slots * per, rings * (n // snapshot_every) * cfg.sliding_window * per


def measured(n: int, cfg: GptOssConfig = CONFIG_20B, chunk: int = 512) -> int:
    cache = KVCache(cfg, max_len=n, max_chunk=chunk, dtype=torch.bfloat16)
    k = torch.zeros(chunk, cfg.num_key_value_heads, cfg.head_dim, dtype=torch.bfloat16)
    while cache.length < n:
        t = min(chunk, n - cache.length)
        for layer in cache.layers:
            layer.update(k[:t], k[:t], cache.length)
        cache.advance(t)
    return cache.nbytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measure", default="8192,32768", help="lengths to fill for real (comma-separated)")
    args = ap.parse_args()
    measure = {int(x) for x in args.measure.split(",") if x}
    print("| context | full layers | rings | snapshots | total (computed) | total (measured) |")
    print("|---|---|---|---|---|---|")
    for n in (8192, 32768, 131072):
        full, rings, snaps = computed(n)
        got = f"{measured(n) / MIB:,.0f} MiB" if n in measure else "not measured"
        print(f"| {n:,} | {full / MIB:,.0f} MiB | {rings / MIB:,.0f} MiB | {snaps / MIB:,.0f} MiB | "
              f"{(full + rings + snaps) / MIB:,.0f} MiB | {got} |")


if __name__ == "__main__":
    main()
