"""MXFP4 expert MLP on the native kernels: a drop-in for :func:`ossagent.model.gpt_oss.expert_mlp`.

A bf16 batch of a few tokens (decode, batched decode of several sequences, short chunks) goes through one native
call per layer: every (token, expert) pair of the layer in one parallel region per projection, each touched
expert's rows read once for all the tokens routed to it.

* with bf16 activations (the default configuration): one token takes ``mxfp4_moe_decode``, 2 to
  ``GROUPED_BF16_MAX_TOKENS`` tokens ``mxfp4_moe_bf16`` (the same arithmetic: each token's result is the same
  bits as ``mxfp4_moe_decode`` gives for it alone);
* with int8 activations (``experts.int8_activations``, set by ``accelerate``; the default of the 8-bit
  configuration), up to ``GROUPED_MAX_TOKENS`` tokens take ``mxfp4_moe_q8``: the activations quantised to int8 per
  32-value block and multiplied with VNNI integer dot products, its only difference from the reference
  (benchmarks/int8_quality.py measures what that costs).

Larger batches (prefill), and activations in other dtypes, are computed expert by expert
(:func:`per_expert_mlp`): the fused MXFP4 GEMV for the pairs of experts that see few tokens (bf16 only: it reads
the packed weights once per pair, no bf16 matrix is formed), and for the others the expert dequantised once
(bit-exact) into a reused bf16 buffer and multiplied with ``F.linear`` (oneDNN, AMX where present).

All round where the reference rounds (bf16 after each projection, SwiGLU in bf16, the routing weight product
and the sum over experts in bf16, experts summed in ascending id order), so the only difference from the
reference is the order of fp32 additions inside the dot products (and the int8 activations where chosen); the
dequant path is bit-identical.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ossagent.model import kernels
from ossagent.model.gpt_oss import Experts, group_by_expert, swiglu

#: experts that receive at most this many tokens use the fused GEMV; more use dequant + matmul
GEMV_MAX_TOKENS = 2
#: with int8 activations, batches of at most this many tokens take the grouped kernel. benchmarks/kernels.py, one
#: layer of 48 experts, 1 thread: 2.6x the per-expert paths at 16 tokens, 3.3x at 64, 2.2x at 128, 1.6x at 256
#: (each touched expert is decoded once, but the work per (token, expert) pair does not shrink, while the
#: dequantised bf16 matmul's does); 2 threads on a busy machine: 6-7x at 16-64 tokens (2 regions, not ~6 per expert)
GROUPED_MAX_TOKENS = 128
#: with bf16 activations, batches of 2 to this many tokens take the grouped bf16 kernel ``mxfp4_moe_bf16``.
#: benchmarks/kernels.py --moe-bf16, one 20b-shaped layer (top-4 of 32 experts), 1 thread, CPU time, load 2.6-2.9:
#: 1.17x the per-expert paths at 2 tokens, 1.16x at 4, 1.6x at 8, 2.2x at 16, 2.5x at 32, 1.9x at 64, 1.24x at 128,
#: 0.98x at 192, 0.86x at 256 (the dequantised matmul's work per token shrinks, the grouped kernel's does not)
GROUPED_BF16_MAX_TOKENS = 128

_buffers: dict[tuple[tuple[int, ...], torch.dtype], torch.Tensor] = {}


def dequantize_into(blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Expert weight [N, K] in ``dtype`` from blocks [N, K/32, 16] / scales [N, K/32] into a reused buffer.

    The buffer is overwritten by the next call with the same shape: use the result before asking again."""
    n, g, _ = blocks.shape
    key = ((n, g * 32), torch.bfloat16)
    buf = _buffers.get(key)
    if buf is None:
        buf = _buffers[key] = torch.empty(n, g * 32, dtype=torch.bfloat16)
    torch.ops.ossagent_kernels.mxfp4_dequant(blocks, scales, buf)
    return buf if dtype == torch.bfloat16 else buf.to(dtype)


def _gemv_pairs(
    x: torch.Tensor, tokens: torch.Tensor, ids: torch.Tensor, experts: Experts, limit: float, alpha: float
) -> torch.Tensor:
    """Expert outputs (before routing weights) for (token, expert) pairs by the fused GEMV: [P, H] in x.dtype."""
    ops = torch.ops.ossagent_kernels
    xs = x[tokens]
    h = ops.mxfp4_gemv(xs, experts.mlp1_blocks, experts.mlp1_scales, ids, experts.mlp1_bias, 0, alpha, limit)
    a = swiglu(h.to(x.dtype), limit, alpha)
    y = ops.mxfp4_gemv(a, experts.mlp2_blocks, experts.mlp2_scales, ids, experts.mlp2_bias, 0, alpha, limit)
    return y.to(x.dtype)


def _dequant_expert(x: torch.Tensor, e: int, experts: Experts, limit: float, alpha: float) -> torch.Tensor:
    """Expert e on token rows x [c, H] after dequantising it once: [c, H] in x.dtype (bit-exact vs reference)."""
    w1 = dequantize_into(experts.mlp1_blocks[e], experts.mlp1_scales[e], x.dtype)
    h = swiglu(F.linear(x, w1, experts.mlp1_bias[e]), limit, alpha)
    w2 = dequantize_into(experts.mlp2_blocks[e], experts.mlp2_scales[e], x.dtype)
    return F.linear(h, w2, experts.mlp2_bias[e])


def _layer_call(
    op: torch._ops.OpOverloadPacket, x: torch.Tensor, expert_ids: torch.Tensor, expert_weights: torch.Tensor,
    experts: Experts, limit: float, alpha: float,
) -> torch.Tensor:
    """One native call for the whole layer (``mxfp4_moe_decode``, ``mxfp4_moe_bf16`` or ``mxfp4_moe_q8``)."""
    return op(x, experts.mlp1_blocks, experts.mlp1_scales, experts.mlp1_bias, experts.mlp2_blocks,  # type: ignore[no-any-return]
              experts.mlp2_scales, experts.mlp2_bias, expert_ids, expert_weights, alpha, limit)


def native_expert_mlp(
    x: torch.Tensor,  # [N, H] normed tokens
    expert_ids: torch.Tensor,  # [N, k]
    expert_weights: torch.Tensor,  # [N, k]
    experts: Experts,
    limit: float,
    alpha: float = 1.702,
) -> torch.Tensor:
    """Same contract and rounding as ``gpt_oss.expert_mlp``; needs MXFP4 experts and loaded kernels."""
    if not experts.quantized or x.device.type != "cpu" or torch.is_grad_enabled() or not kernels.available():
        from ossagent.model.gpt_oss import expert_mlp

        return expert_mlp(x, expert_ids, expert_weights, experts, limit, alpha)
    n, ops = expert_ids.shape[0], torch.ops.ossagent_kernels
    if x.dtype == torch.bfloat16 and n <= GROUPED_MAX_TOKENS and getattr(experts, "int8_activations", False):
        return _layer_call(ops.mxfp4_moe_q8, x, expert_ids, expert_weights, experts, limit, alpha)
    if x.dtype == torch.bfloat16 and n == 1:
        return _layer_call(ops.mxfp4_moe_decode, x, expert_ids[0], expert_weights[0], experts, limit, alpha)
    if x.dtype == torch.bfloat16 and n <= GROUPED_BF16_MAX_TOKENS:
        return _layer_call(ops.mxfp4_moe_bf16, x, expert_ids, expert_weights, experts, limit, alpha)
    return per_expert_mlp(x, expert_ids, expert_weights, experts, limit, alpha)


def per_expert_mlp(
    x: torch.Tensor, expert_ids: torch.Tensor, expert_weights: torch.Tensor, experts: Experts, limit: float,
    alpha: float = 1.702,
) -> torch.Tensor:
    """Expert by expert: the fused GEMV for the pairs of experts with at most ``GEMV_MAX_TOKENS`` tokens (bf16
    only), dequantise + ``F.linear`` for the others. Same contract as ``native_expert_mlp``."""
    gemv_max = GEMV_MAX_TOKENS if x.dtype == torch.bfloat16 else 0  # the GEMV rounds activations to bf16
    order, counts, token_of, w_sorted = group_by_expert(expert_ids, expert_weights, experts.mlp1_bias.shape[0])
    w_sorted = w_sorted.to(x.dtype)
    sorted_ids = expert_ids.reshape(-1)[order]
    # one batched GEMV call for every pair whose expert sees few tokens
    small = torch.tensor([c <= gemv_max for c in counts])[sorted_ids]
    gemv_rows = torch.nonzero(small).flatten()
    y_small = None
    if gemv_rows.numel():
        y_small = _gemv_pairs(x, token_of[gemv_rows], sorted_ids[gemv_rows], experts, limit, alpha)
    pos_in_small = torch.cumsum(small.long(), 0) - 1
    out = torch.zeros_like(x)
    start = 0
    for e, c in enumerate(counts):
        if c == 0:
            continue
        idx = token_of[start : start + c]
        if c <= gemv_max:
            assert y_small is not None
            p = int(pos_in_small[start])
            y = y_small[p : p + c]
        else:
            y = _dequant_expert(x[idx], e, experts, limit, alpha)
        # = out.index_add_ (tokens within one expert are distinct), without index_add_'s parallel region,
        # which costs up to a scheduler time slice per call when the machine is busy
        out.index_put_((idx,), y * w_sorted[start : start + c, None], accumulate=True)
        start += c
    return out
