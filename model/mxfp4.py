"""MXFP4 (OCP microscaling FP4) packing used by gpt-oss expert weights.

A weight ``[..., rows, K]`` is stored as ``blocks [..., rows, K/32, 16] uint8`` (two E2M1 values per byte, the
**low nibble first**) and ``scales [..., rows, K/32] uint8`` (E8M0 exponents with **bias 127**):
``value = E2M1[nibble] * 2**(scale - 127)``.

Decoding here is bit-exact against that definition for every scale 0..254 (255 is NaN in E8M0; this decoder
then yields inf, or NaN for a zero nibble, like the reference ``ldexp``). It works by a 256-entry table that maps
one byte to its two bf16 values (as one int32), followed by an exact multiply by the power-of-two scale.
"""

from __future__ import annotations

import sys

import torch

E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
BLOCK = 32  # values per scale
SCALE_BIAS = 127

_TABLES: dict[tuple[str, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}


def _tables(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(byte -> pair of ``dtype`` values packed in one int, scale byte -> 2**(s-127) in ``dtype``)."""
    key = (str(device), dtype)
    if key not in _TABLES:
        if sys.byteorder != "little":  # pragma: no cover - every supported platform is little-endian
            raise RuntimeError("the MXFP4 pair table assumes a little-endian machine")
        values = torch.tensor(E2M1_VALUES, dtype=torch.float32).to(dtype)
        byte = torch.arange(256)
        pairs = torch.stack([values[byte & 0x0F], values[byte >> 4]], dim=-1)  # [256, 2]: low nibble first
        packed = pairs.contiguous().view(torch.int32 if dtype.itemsize == 2 else torch.int64).reshape(256)
        exps = torch.arange(256, dtype=torch.float64) - SCALE_BIAS
        scale = torch.exp2(exps).to(dtype)  # 2**128 overflows to inf, as ldexp does
        _TABLES[key] = (packed.to(device), scale.to(device))
    return _TABLES[key]


def dequantize(
    blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.bfloat16, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``blocks [..., G, 16] u8`` + ``scales [..., G] u8`` -> ``[..., G*32]`` in ``dtype`` (bf16, fp16 or fp32)."""
    if blocks.dtype != torch.uint8 or scales.dtype != torch.uint8:
        raise TypeError(f"MXFP4 blocks/scales must be uint8, got {blocks.dtype}/{scales.dtype}")
    if blocks.shape[-1] != BLOCK // 2 or blocks.shape[:-1] != scales.shape:
        raise ValueError(f"MXFP4 shapes do not fit: blocks {tuple(blocks.shape)}, scales {tuple(scales.shape)}")
    pair_table, scale_table = _tables(blocks.device, dtype)
    lead = blocks.shape[:-1]
    n = blocks.numel()
    pair_dtype = pair_table.dtype
    if out is None:
        out = torch.empty((*lead, BLOCK), dtype=dtype, device=blocks.device)
    else:
        out = out.view(*lead, BLOCK)
    # byte -> two values at once; the int view of `out` receives them in place
    torch.index_select(pair_table, 0, blocks.reshape(n).to(torch.int32), out=out.view(pair_dtype).view(n))
    scale = torch.index_select(scale_table, 0, scales.reshape(-1).to(torch.int32)).view(*lead, 1)
    out.mul_(scale)  # exact: a power of two times a value with <= 2 significant bits
    return out.view(*lead[:-1], lead[-1] * BLOCK)


def quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Round ``weight [..., K]`` (K a multiple of 32) to MXFP4: per block of 32, the smallest power-of-two scale
    that brings the largest magnitude to <= 6 (E2M1's largest value, so nothing clips), then each value to the
    nearest E2M1 value (error <= one scale unit). Returns ``(blocks, scales)``."""
    if weight.shape[-1] % BLOCK:
        raise ValueError(f"last dimension {weight.shape[-1]} is not a multiple of {BLOCK}")
    w = weight.detach().float().reshape(*weight.shape[:-1], weight.shape[-1] // BLOCK, BLOCK)
    amax = w.abs().amax(dim=-1).clamp_min(2.0**-126)
    exp = torch.ceil(torch.log2(amax / 6.0)).clamp(-SCALE_BIAS, SCALE_BIAS)  # amax / 2**exp in (3, 6]
    scaled = w / torch.exp2(exp).unsqueeze(-1)
    mags = torch.tensor(E2M1_VALUES[:8], dtype=torch.float32, device=w.device)
    idx = (scaled.abs().unsqueeze(-1) - mags).abs().argmin(dim=-1)  # nearest magnitude, 0..7
    nib = (idx | ((scaled < 0).to(torch.int64) << 3)).to(torch.uint8)
    nib = torch.where(idx == 0, torch.zeros_like(nib), nib)  # +0 rather than -0
    blocks = nib[..., 0::2] | (nib[..., 1::2] << 4)
    scales = (exp + SCALE_BIAS).to(torch.uint8)
    return blocks.contiguous(), scales.contiguous()
