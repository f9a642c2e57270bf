"""MXFP4 decoding is bit-exact against a reference written from the format's definition."""

from __future__ import annotations

import struct

import pytest
import torch

from ossagent.model import mxfp4

# E2M1: sign bit 3, exponent bits 2-1 (bias 1), mantissa bit 0; exponent 0 is subnormal (0 or 0.5)


def e2m1(nibble: int) -> float:
    sign = -1.0 if nibble & 8 else 1.0
    exp, man = (nibble >> 1) & 3, nibble & 1
    mag = man * 0.5 if exp == 0 else (1 + man / 2) * 2.0 ** (exp - 1)
    return sign * mag


def reference_decode(blocks: torch.Tensor, scales: torch.Tensor) -> list[list[float]]:
    """Row by row, byte by byte: low nibble is element 2j, high nibble 2j+1, times 2**(scale - 127)."""
    rows = []
    for r in range(blocks.shape[0]):
        row: list[float] = []
        for g in range(blocks.shape[1]):
            s = 2.0 ** (int(scales[r, g]) - 127)
            for byte in blocks[r, g].tolist():
                row += [e2m1(byte & 0x0F) * s, e2m1(byte >> 4) * s]
        rows.append(row)
    return rows


def bits(values: torch.Tensor) -> list[int]:
    return values.contiguous().view(torch.int16).reshape(-1).tolist()


def test_e2m1_table_matches_definition() -> None:
    assert [e2m1(n) for n in range(16)] == list(mxfp4.E2M1_VALUES)
    assert struct.pack("<f", e2m1(8)) == struct.pack("<f", -0.0)  # sign of zero kept


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_dequantize_bit_exact_all_bytes_and_scales(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    # every byte value appears in every row; every scale 0..254 appears (255 is NaN in E8M0)
    rows, groups = 255, 16
    blocks = torch.arange(rows * groups * 16).remainder(256).to(torch.uint8).view(rows, groups, 16)
    blocks = blocks[torch.randperm(rows, generator=g)]
    scales = torch.arange(rows * groups).remainder(255).to(torch.uint8).view(rows, groups)
    got = mxfp4.dequantize(blocks, scales, dtype)
    assert got.shape == (rows, groups * 32) and got.dtype == dtype
    want = torch.tensor(reference_decode(blocks, scales), dtype=torch.float64).to(dtype)
    if dtype == torch.bfloat16:
        assert bits(got) == bits(want)  # -0.0 and subnormals included
    else:
        assert got.view(torch.int32).tolist() == want.view(torch.int32).tolist()


def test_dequantize_leading_dims_and_out_buffer() -> None:
    g = torch.Generator().manual_seed(1)
    blocks = torch.randint(0, 256, (3, 5, 2, 16), generator=g, dtype=torch.uint8)
    scales = torch.randint(110, 135, (3, 5, 2), generator=g, dtype=torch.uint8)
    full = mxfp4.dequantize(blocks, scales)
    assert full.shape == (3, 5, 64)
    out = torch.empty(5 * 64, dtype=torch.bfloat16)
    part = mxfp4.dequantize(blocks[1], scales[1], out=out)
    assert bits(part) == bits(full[1])
    assert part.data_ptr() == out.data_ptr()


def test_dequantize_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shapes"):
        mxfp4.dequantize(torch.zeros(2, 3, 16, dtype=torch.uint8), torch.zeros(2, 4, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):
        mxfp4.dequantize(torch.zeros(2, 3, 16), torch.zeros(2, 3, dtype=torch.uint8))


def test_quantize_round_trip() -> None:
    g = torch.Generator().manual_seed(2)
    w = torch.randn(6, 128, generator=g) * 0.05
    blocks, scales = mxfp4.quantize(w)
    back = mxfp4.dequantize(blocks, scales, torch.float32)
    # within half the largest grid step (one scale unit) of each block; values on the grid come back exactly
    unit = torch.exp2(scales.double() - 127).float().unsqueeze(-1)
    assert ((back.view(6, 4, 32) - w.view(6, 4, 32)).abs() <= unit).all()
    # values that MXFP4 can represent survive a round trip exactly
    grid = mxfp4.dequantize(torch.randint(0, 256, (6, 4, 16), generator=g, dtype=torch.uint8),
                            torch.randint(100, 130, (6, 4), generator=g, dtype=torch.uint8), torch.float32)
    assert torch.equal(mxfp4.dequantize(*mxfp4.quantize(grid), torch.float32), grid)
