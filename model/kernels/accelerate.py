"""One call to put a loaded GptOss on the fast CPU path."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ossagent.model import kernels
from ossagent.model.kernels.threads import follow_load
from ossagent.model.quant8 import set_int8_activations


def accelerate(
    model: nn.Module, int8: bool = False, cache_dir: Path | None = None, threads: int | None = None,
    int8_activations: bool | None = None,
) -> bool:
    """Use the native MXFP4 expert kernels (built on first use), the native bf16 GEMV for the attention
    projections' and unembedding's decode rows (:class:`~ossagent.model.kernels.bf16.GemvLinear`), the native
    decode attention (every sequence's one-token step in one call per layer, ossagent.model.kernels.attention) and, with
    ``int8``, 8-bit attention and unembedding weights. ``threads`` None makes the model's calls pick torch's thread count from the machine's
    load (ossagent.model.kernels.threads); a number sets it once. ``int8_activations``: decode-sized calls
    quantise their activations to int8 per 32-value block and use VNNI integer dot products (as llama.cpp's
    Q8_0 activations; half the arithmetic of the bf16 kernels, which only shows where the weights are not
    streamed from DRAM, and several tokens' experts in one grouped call), no longer the reference's numbers;
    False keeps bf16/fp32 activations; None (default) follows ``int8``, so the bf16 configuration keeps the
    reference's greedy tokens. Returns True when the native kernels are in use; False means the pure-torch path
    (a warning said why). Only CPU models are changed."""
    from ossagent.model.gpt_oss import GptOss
    from ossagent.model.kernels.bf16 import switch_linears
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
        quantize_model(model, int8_activations=False)
    if ok:  # the bf16 projections left (all of them without int8) take the bf16 GEMV at decode sizes
        switch_linears(model)
    for block in model.blocks:  # one-token steps: every sequence's attention in one native call per layer
        block.attn.native_decode = ok  # type: ignore[union-attr]
    set_int8_activations(model, ok and (int8 if int8_activations is None else int8_activations))
    return ok
