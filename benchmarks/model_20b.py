"""gpt-oss-20b shapes on this machine: load time, peak RSS, prefill and decode speed. Prints one table.

    flock /tmp/ossagent-bigmem.lock .venv/bin/python benchmarks/model_20b.py

The first run writes a random-weight checkpoint with the exact gpt-oss-20b shapes (HF layout, MXFP4 experts,
bf16 elsewhere, ~13.8 GB) to cache/gpt-oss-20b-random above the checkout (outside git), in a child process so that its
memory does not count here; later runs reuse it. Peak RSS is this process's VmHWM (file-backed mmap pages that
were touched count, as they should: they are the weights in memory).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

from checkpoint_20b import DEFAULT  # benchmarks/ is on sys.path when run as a script

DEFAULT_PATH = DEFAULT  # cache/gpt-oss-20b-random above the checkout

GPT_OSS_20B = dict(
    num_hidden_layers=24, num_experts=32, experts_per_token=4, vocab_size=201088, hidden_size=2880,
    intermediate_size=2880, head_dim=64, num_attention_heads=64, num_key_value_heads=8, sliding_window=128,
    swiglu_limit=7.0, initial_context_length=4096, rope_theta=150000.0, rope_scaling_factor=32.0,
    rope_ntk_alpha=1.0, rope_ntk_beta=32.0,
)


def write(path: Path) -> None:
    from ossagent.model.checkpoint_writer import write_checkpoint
    from ossagent.model.config import GptOssConfig

    t = time.perf_counter()
    write_checkpoint(path, GptOssConfig(**GPT_OSS_20B), layout="hf", experts="mxfp4", seed=0)  # type: ignore[arg-type]
    print(f"wrote {path} in {time.perf_counter() - t:.0f} s", flush=True)


def rss_gb() -> tuple[float, float]:
    """(current VmRSS, peak VmHWM) in GB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            key, value = line.split(":")
            fields[key] = int(value.split()[0]) * 1024 / 1e9
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", type=Path, default=DEFAULT_PATH)
    ap.add_argument("--prefill", type=int, default=512, help="prompt length for the prefill figure")
    ap.add_argument("--context", type=int, default=1024, help="context before the decode figure")
    ap.add_argument("--decode", type=int, default=4, help="tokens decoded for the decode figure")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--write-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.write_only:
        write(args.path)
        return
    if not (args.path / "config.json").is_file():
        subprocess.run([sys.executable, __file__, "--write-only", "--path", str(args.path)], check=True)

    import torch

    from ossagent.model.engine import Engine, SamplingParams

    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[tuple[str, str]] = []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    t = time.perf_counter()
    engine = Engine.from_pretrained(args.path, device="cpu", dtype=torch.bfloat16, chunk_size=512)
    rows.append(("load (mmap, lazy)", f"{time.perf_counter() - t:.2f} s"))

    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, 200000, (args.context,), generator=gen).tolist()
    t = time.perf_counter()
    engine.prefill(prompt[: args.prefill])
    dt = time.perf_counter() - t
    rows.append((f"prefill {args.prefill} tokens (first touch of the weights)", f"{args.prefill / dt:.2f} tok/s"))

    engine.prefill(prompt)  # extend to the decode context; reuses the first part
    t = time.perf_counter()
    n = 0
    for _ in engine.generate(prompt, SamplingParams(max_tokens=args.decode, temperature=0)):
        n += 1
        if n == 1:  # the first token needs no decode step (the prompt's logits are cached)
            t = time.perf_counter()
    dt = time.perf_counter() - t
    rows.append((f"decode at {args.context} context ({n - 1} steps)", f"{(n - 1) / dt:.3f} tok/s"))
    cur, peak = rss_gb()
    rows.append(("RSS after decode", f"{cur:.2f} GB"))
    rows.append(("peak RSS (VmHWM)", f"{peak:.2f} GB"))
    rows.append(("threads", str(torch.get_num_threads())))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    rows.append(("CPU share (process CPU s / wall s)", f"{cpu:.0f} / {wall:.0f} = {cpu / wall:.2f} cores"))
    rows.append(("KV cache", f"{engine.cache.nbytes() / 1e6:.1f} MB"))

    width = max(len(k) for k, _ in rows)
    print(f"\ngpt-oss-20b shapes, random weights, {args.path}")
    print(f"{'metric'.ljust(width)} | value")
    print(f"{'-' * width}-|-{'-' * 14}")
    for k, v in rows:
        print(f"{k.ljust(width)} | {v}")


if __name__ == "__main__":
    main()
