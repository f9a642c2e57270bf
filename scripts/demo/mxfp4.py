"""MXFP4 (OCP microscaling FP4, E2M1 values with a shared UE8 scale per 32) quantisation for the demo
checkpoint's expert weights, in the layout gpt-oss checkpoints use (blocks [..., rows, K/32, 16] uint8 with
the low nibble first, scales [..., rows, K/32] uint8 with bias 127)."""

from __future__ import annotations

import torch

FP4_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)


def quantize(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Round ``w`` [..., rows, K] (K a multiple of 32) to MXFP4; returns (blocks, scales)."""
    if w.shape[-1] % 32:
        raise ValueError(f"MXFP4 needs the last dimension to be a multiple of 32, got {tuple(w.shape)}")
    x = w.detach().float().reshape(*w.shape[:-1], w.shape[-1] // 32, 32)
    amax = x.abs().amax(dim=-1, keepdim=True)
    # smallest power of two e with amax / 2**e <= 6 (the largest E2M1 magnitude)
    e = torch.ceil(torch.log2(torch.where(amax > 0, amax, torch.ones_like(amax)) / 6.0))
    e = torch.where(amax > 0, e, torch.full_like(e, -127.0)).clamp(-127, 127)
    y = x / torch.exp2(e)
    mags = torch.tensor(FP4_VALUES[:8])
    idx = (y.abs().unsqueeze(-1) - mags).abs().argmin(dim=-1)  # nearest magnitude (ties -> smaller)
    nib = (idx | ((y < 0).long() << 3)).to(torch.uint8)
    nib = torch.where(idx == 0, torch.zeros_like(nib), nib)  # never emit -0
    blocks = (nib[..., 0::2] | (nib[..., 1::2] << 4)).contiguous()
    scales = (e.squeeze(-1) + 127).to(torch.uint8).contiguous()
    return blocks, scales


def dequantize(blocks: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    lut = torch.tensor(FP4_VALUES)
    lo = lut[(blocks & 0x0F).long()]
    hi = lut[(blocks >> 4).long()]
    vals = torch.stack([lo, hi], dim=-1).reshape(*blocks.shape[:-1], 32)
    out = torch.ldexp(vals, scales.long().unsqueeze(-1) - 127)
    return out.reshape(*blocks.shape[:-2], blocks.shape[-2] * 32)


def fake_quantize(w: torch.Tensor) -> torch.Tensor:
    """``w`` as the checkpoint will hold it."""
    return dequantize(*quantize(w)).to(w.dtype)
