"""How close a decode runs to the machine's memory bandwidth: a read probe and the bytes one token reads.

    .venv/bin/python benchmarks/bandwidth.py [--model DIR] [--threads 2] [--gb 2]

A decode step of a bandwidth-bound model reads every weight it uses once, so tok/s x (bytes per token) is the
rate the program streams memory at, and its share of what a plain read reaches on the same machine is the
figure to compare across hosts (``vs_llamacpp.py`` prints both for its decode rows).

* ``read_probe``: the best of several ``sum()`` passes over a ``gb``-sized fp32 tensor with ``threads``
  threads (fresh memory, far larger than the caches): a plain sequential read, the practical ceiling.
* ``decode_bytes``: what one decoded token reads from a gpt-oss checkpoint's ``config.json``: the attention
  projections and the unembedding in the given format, the router, ``experts_per_token`` experts per layer in
  MXFP4 (17 bytes per 32 weights) with their biases, and the KV cache at the given depth (bf16 / f16 keys and
  values; sliding-window layers read at most their window). Norms, sinks and the embedding row are left out
  (under 0.1%).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

#: bytes per weight of the non-expert matrices. "int8": our 8-bit rows (one fp32 scale per row, counted
#: separately); "q8_0": llama.cpp's 32-value blocks of int8 with an f16 scale (34 bytes per 32)
REST_BYTES = {"bf16": 2.0, "int8": 1.0, "q8_0": 34 / 32}
MXFP4_BYTES = 17 / 32  # 16 bytes of nibbles and one scale byte per 32 weights


def decode_bytes(config: dict[str, object], rest: str, depth: int) -> float:
    """Bytes one decode step reads at ``depth`` tokens of context (see the module docstring)."""
    def num(key: str, default: object = None) -> int:
        return int(config.get(key, default))  # type: ignore[call-overload]

    h, hd, heads, kv = num("hidden_size"), num("head_dim"), num("num_attention_heads"), num("num_key_value_heads")
    inter, vocab, experts = num("intermediate_size"), num("vocab_size"), num("num_local_experts")
    k = num("experts_per_token", config.get("num_experts_per_tok"))
    window = int(config.get("sliding_window") or 128)  # type: ignore[call-overload]
    types = list(config["layer_types"])  # type: ignore[call-overload]
    wb = REST_BYTES[rest]
    row_scale = 4 if rest == "int8" else 0  # our 8-bit rows carry one fp32 scale each
    qkv_rows, out_rows = heads * hd + 2 * kv * hd, h
    attention = (qkv_rows * h + out_rows * heads * hd) * wb + (qkv_rows + out_rows) * (2 + row_scale)
    router = experts * h * 2 + experts * 2
    expert = (2 * inter * h + h * inter) * MXFP4_BYTES + (2 * inter + h) * 2
    total = 0.0
    for kind in types:
        positions = min(depth, window) if kind == "sliding_attention" else depth
        total += attention + router + k * expert + positions * kv * hd * 2 * 2  # keys and values, 2 bytes each
    unembedding = vocab * h * wb + vocab * row_scale
    return total + unembedding


def read_probe(threads: int, gb: float = 2.0, passes: int = 6) -> float:
    """GB/s of the best plain read pass over ``gb`` GB with ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    x = torch.ones(int(gb * 1e9) // 4, dtype=torch.float32)  # touched: every page is resident
    best = float("inf")
    for _ in range(passes):
        t0 = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t0)
    return x.numel() * 4 / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="a gpt-oss checkpoint folder (config.json): print bytes per token")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--json", action="store_true", help="print one JSON line (for vs_llamacpp.py)")
    args = ap.parse_args()
    gbs = read_probe(args.threads, args.gb)
    if args.json:
        print(json.dumps({"read GB/s": gbs, "threads": args.threads}))
        return
    print(f"read probe: {gbs:.1f} GB/s with {args.threads} threads ({args.gb} GB, best pass)")
    if args.model:
        cfg = json.loads((args.model / "config.json").read_text())
        for rest in REST_BYTES:
            for depth in (1024, 8192):
                b = decode_bytes(cfg, rest, depth)
                print(f"decode @{depth} with {rest} rest reads {b / 1e9:.2f} GB a token: at most "
                      f"{gbs * 1e9 / b:.2f} tok/s at the probed bandwidth")


if __name__ == "__main__":
    main()
