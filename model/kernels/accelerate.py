"""One call to put a loaded GptOss on the fast CPU path."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ossagent.model import kernels
from ossagent.model.kernels.threads import follow_load


def accelerate(
    model: nn.Module, int8: bool = False, cache_dir: Path | None = None, threads: int | None = None
) -> bool:
    """Use the native MXFP4 expert kernels (built on first use) and, with ``int8``, 8-bit attention and
    unembedding weights. ``threads`` None makes the model's calls pick torch's thread count from the machine's
    load (ossagent.model.kernels.threads); a number sets it once. Returns True when the native kernels are in
    use; False means the pure-torch path (a warning said why). Only CPU models are changed."""
    from ossagent.model.gpt_oss import GptOss
    from ossagent.model.kernels.moe import native_expert_mlp
    from ossagent.model.quant8 import quantize_model

    if not isinstance(model, GptOss):
        raise TypeError(f"accelerate() takes a GptOss model, got {type(model).__name__}")
    if next(model.parameters()).device.type != "cpu":
        return False
    if threads is None:
        follow_load(model)
    else:
        torch.set_num_threads(threads)
    ok = kernels.load(cache_dir)
    if ok and model.blocks[0].mlp.experts.quantized:  # type: ignore[union-attr]
        model.set_expert_kernel(native_expert_mlp)
    if int8:
        quantize_model(model)
    return ok
