"""Decode attention of several sequences in one native call per layer (csrc/attention_kernels.cpp).

A decode step gives each sequence one new query. ``Attention._attend`` handles one sequence at a time with about
ten small torch ops (plus the cache's index tensors), about 1 ms per sequence and layer on 2 cores, whatever the
context: at 8 streams that was 200 of a step's 460 ms at 20b shapes. :func:`decode_attention` does every
sequence's attention in one parallel region, reading each cache layer in place (:class:`~ossagent.model.cache.KeyView`).

It computes what ``_attend`` computes up to the order of fp32 additions and exp's last bit (bf16 logits, fp32
softmax with the sink, bf16 weights, one rounding of the output), as the bf16 GEMV does for the projections.
:func:`usable` decides per call; a model takes the kernel where :func:`~ossagent.model.kernels.accelerate.accelerate`
switched its layers on (``Attention.native_decode``), so Engine.generate and the batch engine agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ossagent.model import kernels
from ossagent.model.cache import KeyView

MAX_HEAD_DIM = 128  # the kernel keeps a query head in 8 AVX-512 registers


def usable(q: torch.Tensor) -> bool:
    """True when a decode query can take the kernel: bf16 on the CPU, no autograd, the kernels loaded."""
    return (
        q.dtype == torch.bfloat16
        and q.device.type == "cpu"
        and q.shape[-1] <= MAX_HEAD_DIM
        and not torch.is_grad_enabled()
        and kernels.available()
    )


def decode_attention(
    q: torch.Tensor,  # [N, nh, d], one query per sequence
    views: Sequence[KeyView],  # each query's keys (the cache layer's storage, in place)
    positions: Sequence[int],  # each query's position
    sinks: torch.Tensor,  # [nh] sink logits
    scale: float,
    window: int,  # 0: full attention
) -> torch.Tensor:
    """Softmax attention with sinks of each query over its own keys: [N, nh * d] bf16."""
    return torch.ops.ossagent_kernels.decode_attention(  # type: ignore[no-any-return]
        q, [w.k for w in views], [w.v for w in views], [w.pos for w in views], [w.first for w in views],
        [w.length for w in views], list(positions), sinks, scale, window)
