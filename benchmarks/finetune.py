"""LoRA fine-tuning: memory and time per step, measured for the demo model on CPU and estimated for gpt-oss-20b
on one 80 GB GPU from one 20b-sized layer measured here.

    nice .venv/bin/python benchmarks/finetune.py [--lengths 256,1024] [--layer-lengths 128,256,512] [--threads 1]

Each configuration runs in its own process, so peak RSS belongs to it alone.

Table 1 (demo model, CPU, ``model/finetune.py`` as ``ossagent finetune`` runs it: fp32, LoRA rank 8 on q/k/v/out,
one sequence a step, the loss on its second half): seconds per optimizer step (median of 3 after one warm-up) and
peak RSS above the RSS after loading, with gradient checkpointing on and off.

Table 2 (one gpt-oss-20b block, bf16, MXFP4 experts, LoRA rank 8 on q/k/v/out, on this CPU): per sequence length,
the time of one checkpointed forward + recomputed forward + backward with the training expert kernel
(:func:`ossagent.model.finetune.frozen_expert_mlp`), the bytes the backward keeps (tensors saved in the recomputed
forward: the activation memory of the layer in flight; also with plain autograd through the experts, which keeps
every used expert's decoded weights), and the FLOPs counted by ``torch.utils.flop_counter`` (forward, recompute
and backward; the frozen kernel's second decode is not a FLOP).

Table 3 (estimate, gpt-oss-20b on one 80 GB GPU, bf16, batch of one sequence): memory = the checkpoint's tensors
(counted exactly from the shapes) + adapters with their gradient and AdamW state (fp32) + the 24 layer inputs kept
by checkpointing + one layer's saved tensors (quadratic fit in T of table 2) + the loss chunk (128 targets x
201,088 fp32 logits, three live copies). Time = FLOPs (quadratic fit of table 2, x24, plus the unembedding at the
targets: half of T here) at an assumed 30% of an H100's 989 TFLOP/s bf16 peak, plus decoding the MXFP4 experts
three times a step (forward, recompute, backward) at an assumed 2 TB/s. Both assumptions are stated, not measured: no GPU was
available to this benchmark's author; the GPU smoke test (tests/model/test_finetune.py) runs where one is.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

GPU_FLOPS = 0.30 * 989e12
GPU_BYTES_PER_S = 2.0e12
LOSS_CHUNK = 128


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child_tiny(length: int, checkpointing: bool, threads: int) -> dict[str, Any]:
    import torch

    from ossagent.model.demo import demo_model_dir
    from ossagent.model.finetune import TrainConfig, Trainer
    from ossagent.model.loader import load_model
    from ossagent.model.lora import LoraAdapters, LoraConfig

    torch.set_num_threads(threads)
    model = load_model(demo_model_dir(), dtype=torch.float32)  # type: ignore[arg-type]
    base = _rss()
    adapters = LoraAdapters(model)
    adapters.add("bench", LoraConfig(rank=8))
    trainer = Trainer(adapters, "bench", TrainConfig(checkpointing=checkpointing), "/nonexistent")

    class S:
        def __init__(self) -> None:
            self.tokens = torch.randint(0, 200_000, (length,), generator=torch.Generator().manual_seed(0)).tolist()
            self.mask = [i >= length // 2 for i in range(length)]

    times = []
    for _ in range(4):
        t0 = time.perf_counter()
        trainer._step([S()])
        times.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(times[1:]), "peak_above_load": _peak() - base, "load_rss": base}


def _one_layer(threads: int) -> tuple[Any, Any, Any]:
    """One gpt-oss-20b block (random MXFP4 experts) inside a 1-layer shell the LoRA code accepts."""
    import torch
    from checkpoint_20b import config  # benchmarks/ is on sys.path when run as a script
    from torch import nn

    from ossagent.model.gpt_oss import Block, Rotary
    from ossagent.model.lora import LoraAdapters, LoraConfig

    torch.set_num_threads(threads)
    cfg = config(layers=1)
    shell = nn.Module()
    shell.config = cfg  # type: ignore[assignment]
    # layer 1 attends fully (layer 0 has the 128-token window): the costlier kind, taken for all 24 layers
    shell.blocks = nn.ModuleList([Block(config(layers=2), 1, True, "cpu", torch.bfloat16)])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in shell.named_parameters():
            if not name.endswith("norm.scale"):
                p.copy_((torch.randn(p.shape, generator=g) * 0.02).to(p.dtype))
        for name, buf in shell.named_buffers():
            if name.endswith("_blocks"):
                buf.copy_(torch.randint(0, 256, buf.shape, generator=g, dtype=torch.uint8))
            elif name.endswith("_scales"):
                buf.copy_(torch.randint(120, 123, buf.shape, generator=g, dtype=torch.uint8))
    adapters = LoraAdapters(shell)
    adapters.add("bench", LoraConfig(rank=8))
    adapters.freeze_base()
    for p in adapters.parameters_of("bench"):
        p.requires_grad_(True)
    return shell, adapters, Rotary(cfg)


def child_layer(length: int, threads: int) -> dict[str, Any]:
    import torch
    from torch.utils.checkpoint import checkpoint
    from torch.utils.flop_counter import FlopCounterMode

    from ossagent.model.finetune import frozen_expert_mlp

    shell, adapters, rotary = _one_layer(threads)
    block = shell.blocks[0]
    positions = torch.arange(length)
    cos_sin = rotary.cos_sin(positions, torch.bfloat16)
    x = torch.randn(1, length, 2880, dtype=torch.bfloat16, generator=torch.Generator().manual_seed(1))
    grad = torch.randn_like(x)

    def step() -> None:
        xi = x.clone().requires_grad_(True)
        checkpoint(block, xi, positions, cos_sin, None, use_reentrant=False).backward(grad)

    def saved_bytes() -> int:
        saved: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            st = t.untyped_storage()
            saved[st.data_ptr()] = st.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            block(x.clone().requires_grad_(True), positions, cos_sin, None)
        return sum(saved.values())

    saved_autograd = saved_bytes()
    block.mlp.kernel = frozen_expert_mlp  # what the Trainer uses
    saved_frozen = saved_bytes()
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    with FlopCounterMode(display=False) as counter:
        step()
    experts = block.mlp.experts
    t0 = time.perf_counter()
    for e in range(experts.mlp1_bias.shape[0]):
        experts.weights(e)
    decode = time.perf_counter() - t0
    tensors = sum(t.numel() * t.element_size() for t in [*block.parameters(), *block.buffers()])
    lora = sum(p.numel() for p in adapters.parameters_of("bench"))
    return {"step_s": min(times), "saved_bytes": saved_frozen, "saved_autograd": saved_autograd,
            "flops": counter.get_total_flops(),
            "decode_s": decode, "layer_bytes": tensors, "lora_params": lora,
            "packed_bytes": sum(b.numel() for n, b in block.named_buffers() if n.endswith(("_blocks", "_scales")))}


def _run(kind: str, *args: Any) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps([kind, *args])]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if out.returncode:
        raise SystemExit(f"{kind} {args} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _fit(xs: list[int], ys: list[float]) -> tuple[float, float, float]:
    """y = a + b x + c x^2 through the points (least squares when more than three)."""
    import numpy as np

    coef = np.polyfit(np.array(xs, dtype=float), np.array(ys, dtype=float), min(2, len(xs) - 1))
    c = [0.0] * (3 - len(coef)) + list(coef)
    return float(c[2]), float(c[1]), float(c[0])


def _table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def estimate_20b(layer: dict[int, dict[str, Any]], lengths: list[int]) -> str:
    from checkpoint_20b import config  # benchmarks/ is on sys.path when run as a script

    c = config()
    ts = sorted(layer)
    mem_fit = _fit(ts, [layer[t]["saved_bytes"] for t in ts])
    flop_fit = _fit(ts, [layer[t]["flops"] for t in ts])
    one = layer[ts[-1]]
    h, v, n = c.hidden_size, c.vocab_size, c.num_hidden_layers
    weights = n * one["layer_bytes"] + 2 * v * h * 2 + h * 4
    lora = n * one["lora_params"] * 4 * 4  # fp32 parameter, gradient, two AdamW moments
    rows = []
    for t in lengths:
        def poly(f: tuple[float, float, float], t: int = t) -> float:
            return f[0] + f[1] * t + f[2] * t * t

        targets = t // 2
        act = n * t * h * 2 + poly(mem_fit) + 3 * min(targets, LOSS_CHUNK) * v * 4
        total = weights + lora + act
        flops = n * poly(flop_fit) + 3 * 2 * targets * h * v
        decode = 3 * n * one["packed_bytes"] * (1 + 4) / GPU_BYTES_PER_S  # read packed, write bf16 (~4x)
        secs = flops / GPU_FLOPS + decode
        rows.append([str(t), f"{weights / 2**30:.1f}", f"{act / 2**30:.1f}", f"{total / 2**30:.1f}",
                     "yes" if total < 80 * 2**30 * 0.95 else "no", f"{flops / 1e12:.1f}", f"{secs:.2f}",
                     f"{t / secs:.0f}"])
    return _table(["tokens", "weights GiB", "activations GiB", "total GiB", "fits 80 GB", "TFLOP/step",
                   "est. s/step", "tokens/s"], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", default="256,1024")
    ap.add_argument("--layer-lengths", default="128,256,512,1024")
    ap.add_argument("--estimate-lengths", default="1024,2048,4096,8192")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, *rest = json.loads(args.child)
        print(json.dumps(child_tiny(*rest) if kind == "tiny" else child_layer(*rest)))
        return 0
    rows = []
    for t in [int(x) for x in args.lengths.split(",") if x]:
        for ckpt in (True, False):
            r = _run("tiny", t, ckpt, args.threads)
            rows.append([str(t), "on" if ckpt else "off", f"{r['step_s']:.2f}",
                         f"{r['peak_above_load'] / 2**20:.0f}", f"{r['load_rss'] / 2**20:.0f}"])
    if rows:
        print(f"Demo model, CPU, fp32, LoRA r=8 on q/k/v/out, {args.threads} thread(s):")
        print(_table(["tokens", "checkpointing", "s/step", "peak MiB above load", "RSS after load MiB"], rows))
    lengths = [int(x) for x in args.layer_lengths.split(",") if x]
    if not lengths:
        return 0
    layer = {t: _run("layer", t, args.threads) for t in lengths}
    print(f"\nOne gpt-oss-20b layer, CPU bf16, MXFP4 experts, LoRA r=8, {args.threads} thread(s):")
    print(_table(["tokens", "fwd+recompute+bwd s", "saved MiB", "saved MiB, autograd through experts", "GFLOP",
                  "decode 32 experts s"],
                 [[str(t), f"{r['step_s']:.2f}", f"{r['saved_bytes'] / 2**20:.0f}",
                   f"{r['saved_autograd'] / 2**20:.0f}", f"{r['flops'] / 1e9:.0f}", f"{r['decode_s']:.2f}"]
                  for t, r in layer.items()]))
    print("\nEstimate: gpt-oss-20b, one 80 GB GPU, bf16, LoRA r=8, one sequence a step, loss on half of it "
          "(30% of 989 TFLOP/s, 2 TB/s assumed):")
    print(estimate_20b(layer, [int(x) for x in args.estimate_lengths.split(",")]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
