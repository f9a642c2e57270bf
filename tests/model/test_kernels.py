"""Native CPU kernels against the torch / transformers references.

Tolerances: the MXFP4 dequant is compared bit for bit. GEMVs sum exact products (bf16 x bf16, or int8 x fp32)
in fp32 in another order than the reference, so they are checked against an fp64 reference within
``2**-20 * sum_k |w_k x_k|`` per output (K * 2**-24 with K <= 256 plus margin).
"""

from __future__ import annotations

import pytest
import torch

from ossagent.model import kernels, mxfp4

pytestmark = pytest.mark.skipif(not kernels.load(), reason="native kernels unavailable on this machine")


def _ops():  # type: ignore[no-untyped-def]
    return torch.ops.ossagent_kernels


def _random_mxfp4(shape: tuple[int, ...], g: torch.Generator, lo: int = 0, hi: int = 255):  # type: ignore[no-untyped-def]
    blocks = torch.randint(0, 256, (*shape, 16), generator=g, dtype=torch.uint8)
    scales = torch.randint(lo, hi, shape, generator=g, dtype=torch.uint8)
    return blocks, scales


def test_dequant_is_bit_exact_for_every_byte_and_scale() -> None:
    g = torch.Generator().manual_seed(0)
    blocks = torch.randint(0, 256, (256, 3, 16), generator=g, dtype=torch.uint8)
    blocks[:, 0, :] = torch.arange(256, dtype=torch.uint8).view(16, 16).repeat(16, 1)  # every byte value
    scales = torch.arange(256, dtype=torch.uint8)[:, None].repeat(1, 3)  # every scale, incl. 0 and 255
    out = torch.empty(256, 96, dtype=torch.bfloat16)
    _ops().mxfp4_dequant(blocks, scales, out)
    ref = mxfp4.dequantize(blocks, scales, torch.bfloat16)
    assert torch.equal(out.view(torch.int16)[:255], ref.view(torch.int16)[:255])  # -0.0 and denormals too
    # scale 255 (NaN in E8M0): the kernel computes 2**128 * v exactly in bf16 (inf, or 2**127 for 0.5)
    assert torch.equal(out[255].float().abs().max(), torch.tensor(float("inf")))


def test_dequant_matches_transformers() -> None:
    convert = pytest.importorskip("transformers.integrations.mxfp4").convert_moe_packed_tensors
    g = torch.Generator().manual_seed(1)
    blocks, scales = _random_mxfp4((2, 64, 4), g, 0, 255)  # [E, N, G] scales 0..254
    out = torch.empty(2, 64, 128, dtype=torch.bfloat16)
    _ops().mxfp4_dequant(blocks, scales, out)
    ref = convert(blocks, scales, dtype=torch.bfloat16).transpose(1, 2)  # HF returns [E, K, N]
    assert torch.equal(out.view(torch.int16), ref.contiguous().view(torch.int16))


def _gemv_reference(
    x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    xd, wd = x.to(torch.bfloat16).double(), w.double()
    y = wd @ xd + (0 if bias is None else bias.double())
    bound = wd.abs() @ xd.abs() * 2.0**-20 + 1e-30
    return y, bound


@pytest.mark.parametrize("k", [96, 256])  # odd and even number of blocks per row
@pytest.mark.parametrize("xdtype", [torch.bfloat16, torch.float32])
def test_mxfp4_gemv_matches_dequantized_matmul(k: int, xdtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(2)
    e, n = 3, 64
    blocks, scales = _random_mxfp4((e, n, k // 32), g, 100, 140)
    bias = torch.randn(e, n, generator=g).to(torch.bfloat16)
    x = torch.randn(5, k, generator=g).to(xdtype)
    ids = torch.tensor([2, 0, 1, 2, 2])
    y = _ops().mxfp4_gemv(x, blocks, scales, ids, bias, 0, 1.702, 7.0)
    w = mxfp4.dequantize(blocks, scales, torch.float32)
    for m, ex in enumerate(ids.tolist()):
        ref, bound = _gemv_reference(x[m], w[ex], bias[ex])
        assert ((y[m].double() - ref).abs() <= bound + 1e-6).all()


def test_mxfp4_gemv_swiglu_epilogue() -> None:
    from ossagent.model.gpt_oss import swiglu

    g = torch.Generator().manual_seed(3)
    blocks, scales = _random_mxfp4((2, 32, 2), g, 124, 130)
    x = torch.randn(2, 64, generator=g)
    ids = torch.tensor([1, 0])
    plain = _ops().mxfp4_gemv(x, blocks, scales, ids, None, 0, 1.702, 7.0)
    fused = _ops().mxfp4_gemv(x, blocks, scales, ids, None, 1, 1.702, 7.0)
    assert fused.shape == (2, 16)
    torch.testing.assert_close(fused, swiglu(plain, 7.0, 1.702), rtol=1e-5, atol=1e-5)
    assert plain.abs().max() > 7  # the clamp is exercised


def test_gemv_rejects_bad_input() -> None:
    blocks = torch.zeros(2, 8, 2, 16, dtype=torch.uint8)
    scales = torch.zeros(2, 8, 2, dtype=torch.uint8)
    with pytest.raises(RuntimeError, match="out of range"):
        _ops().mxfp4_gemv(torch.zeros(1, 64), blocks, scales, torch.tensor([2]), None, 0, 1.702, 7.0)
    with pytest.raises(RuntimeError, match="K = 64"):
        _ops().mxfp4_gemv(torch.zeros(1, 32), blocks, scales, torch.tensor([0]), None, 0, 1.702, 7.0)


def test_int8_gemv_matches_reference() -> None:
    g = torch.Generator().manual_seed(4)
    n, k = 37, 160  # n not a multiple of 4
    w = torch.randint(-127, 128, (n, k), generator=g, dtype=torch.int8)
    scale = torch.rand(n, generator=g)
    bias = torch.randn(n, generator=g).to(torch.bfloat16)
    x = torch.randn(3, k, generator=g).to(torch.bfloat16)
    y = _ops().int8_gemv(x, w, scale, bias)
    wd = w.double() * scale.double()[:, None]
    ref = x.double() @ wd.T + bias.double()
    bound = x.double().abs() @ wd.abs().T * 2.0**-20 + 1e-6
    assert ((y.double() - ref).abs() <= bound).all()


def test_missing_compiler_falls_back_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    saved = dict(kernels._state)
    monkeypatch.setattr(kernels, "_compiler", lambda: None)
    kernels._state.clear()
    try:
        with pytest.warns(UserWarning, match="no C\\+\\+ compiler") as record:
            assert kernels.load() is False
            assert kernels.load() is False  # remembered: no second warning
        assert len(record) == 1
        assert not kernels.available()
    finally:
        kernels._state.clear()
        kernels._state.update(saved)


def test_moe_decode_equals_the_two_gemv_path() -> None:
    """The fused one-token MoE (one call) rounds exactly as GEMV -> bf16 -> torch SwiGLU -> GEMV -> weights."""
    from ossagent.model.gpt_oss import swiglu

    g = torch.Generator().manual_seed(11)
    e, h, i = 6, 128, 96
    b1, s1 = _random_mxfp4((e, 2 * i, h // 32), g, 118, 124)
    b2, s2 = _random_mxfp4((e, h, i // 32), g, 118, 124)
    bias1 = torch.randn(e, 2 * i, generator=g).to(torch.bfloat16)
    bias2 = torch.randn(e, h, generator=g).to(torch.bfloat16)
    for _ in range(10):
        x = (torch.randn(1, h, generator=g) * 2).to(torch.bfloat16)
        ids = torch.randperm(e, generator=g)[:4]
        w = torch.softmax(torch.randn(4, generator=g), -1).to(torch.bfloat16)
        fused = _ops().mxfp4_moe_decode(x, b1, s1, bias1, b2, s2, bias2, ids, w, 1.702, 7.0)
        sid, order = torch.sort(ids)
        hh = _ops().mxfp4_gemv(x.expand(4, h), b1, s1, sid, bias1, 0, 1.702, 7.0)
        a = swiglu(hh.to(torch.bfloat16), 7.0, 1.702)
        y = _ops().mxfp4_gemv(a, b2, s2, sid, bias2, 0, 1.702, 7.0).to(torch.bfloat16) * w[order][:, None]
        out = y[0:1]
        for j in range(1, 4):
            out = out + y[j : j + 1]
        assert torch.equal(fused, out)
    with pytest.raises(RuntimeError, match="out of range"):
        _ops().mxfp4_moe_decode(x, b1, s1, bias1, b2, s2, bias2, torch.tensor([0, 6]), w[:2], 1.702, 7.0)
