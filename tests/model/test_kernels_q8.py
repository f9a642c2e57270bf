"""Int8-activation (VNNI) kernels against float references.

The kernels quantise each 32-value block of the activation to int8 (``q = round(x * 127 / amax)``, scale
``amax / 127``, computed in fp32 as the kernel does) and then compute exact integer block dot products that are
scaled by powers of two. So against the fp64 dot product of the *quantised* activation with the weights, the only
error is the fp32 summation over blocks: checked within ``2**-20 * (sum_k |w_k q_k d_k| + |bias|)`` per output (as in
test_kernels.py). Against the unquantised activation the error is the quantisation's: at most half a step
(``amax / 254``) per element, checked as ``sum_k |w_k| * amax_block(k) / 254``.
"""

from __future__ import annotations

import pytest
import torch

from ossagent.model import kernels, mxfp4
from ossagent.model.gpt_oss import swiglu

pytestmark = pytest.mark.skipif(not kernels.load(), reason="native kernels unavailable on this machine")


def _ops():  # type: ignore[no-untyped-def]
    return torch.ops.ossagent_kernels


def q8_blocks(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernels' activation quantisation in fp32: (int values [M, K] as fp64, block scale per element)."""
    m, k = x.shape
    xb = x.float().view(m, k // 32, 32)
    amax = xb.abs().amax(-1, keepdim=True)
    inv = torch.where(amax > 0, torch.tensor(127.0) / amax, torch.zeros_like(amax))
    q = torch.round(xb * inv).clamp(-127, 127)
    d = (amax / 127.0).expand_as(xb)
    return q.reshape(m, k).double(), d.reshape(m, k).double()


def _check(y: torch.Tensor, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> None:
    """y [M, N] against the quantised fp64 reference (tight) and the unquantised one (quantisation bound)."""
    q, d = q8_blocks(x)
    wd = w.double()
    b = 0 if bias is None else bias.double()
    ref = (q * d) @ wd.T + b
    bound = ((q * d).abs() @ wd.abs().T + abs(b)) * 2.0**-20 + 1e-30  # fp32 sums and the fp32 result
    assert ((y.double() - ref).abs() <= bound).all(), float(((y.double() - ref).abs() - bound).max())
    exact = x.double() @ wd.T + b
    qbound = (d * 127 / 254) @ wd.abs().T * (1 + 2.0**-10) + bound
    assert ((y.double() - exact).abs() <= qbound).all()


def _mxfp4(e: int, n: int, g: int, gen: torch.Generator, scales: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    blocks = torch.randint(0, 256, (e, n, g, 16), generator=gen, dtype=torch.uint8)
    blocks[0, 0, 0] = torch.tensor([0x10 * i + (15 - i) for i in range(16)], dtype=torch.uint8)  # all 16 codes
    pick = torch.randint(0, len(scales), (e, n, g), generator=gen)
    return blocks, torch.tensor(scales, dtype=torch.uint8)[pick]


@pytest.mark.parametrize("g", [1, 2, 3, 4, 5, 7, 90])  # every tail length of the 4-block chunks
def test_mxfp4_gemv_q8_matches_reference(g: int) -> None:
    gen = torch.Generator().manual_seed(g)
    e, n = 3, 12
    blocks, scales = _mxfp4(e, n, g, gen, (1, 2, 60, 118, 122, 127, 150, 200))  # 2^-126 .. 2^73
    bias = torch.randn(e, n, generator=gen).to(torch.bfloat16)
    x = torch.randn(6, g * 32, generator=gen)
    x[0, :32] = 0  # an all-zero block
    x[1, 5] = 1e6  # an outlier block
    x[2] *= 1e-20
    ids = torch.tensor([2, 0, 1, 2, 2, 1])
    y = _ops().mxfp4_gemv_q8(x, blocks, scales, ids, bias)
    w = mxfp4.dequantize(blocks, scales, torch.float32)
    for m, ex in enumerate(ids.tolist()):
        _check(y[m : m + 1], x[m : m + 1], w[ex], bias[ex])


def test_mxfp4_gemv_q8_scale_edges() -> None:
    """Scale 0 (2^-127, a denormal) counts as 0; 255 (NaN in E8M0) gives inf, as in the bf16 GEMV."""
    blocks = torch.full((1, 4, 2, 16), 0x22, dtype=torch.uint8)  # every value 1.0
    scales = torch.tensor([[[127, 0], [0, 0], [127, 255], [127, 127]]], dtype=torch.uint8)
    x = torch.ones(1, 64)
    y = _ops().mxfp4_gemv_q8(x, blocks, scales, torch.tensor([0]), None)
    assert y[0, 0] == 32 and y[0, 1] == 0 and y[0, 2] == float("inf") and y[0, 3] == 64


@pytest.mark.parametrize("k", [32, 96, 160, 2880])  # chunk tails of 32, 96, 32 and 64 values
@pytest.mark.parametrize("m", [1, 3, 6])  # token batches of 4 and a remainder
def test_int8_gemv_q8_matches_reference(k: int, m: int) -> None:
    gen = torch.Generator().manual_seed(k + m)
    n = 37  # not a multiple of 4
    w = torch.randint(-127, 128, (n, k), generator=gen, dtype=torch.int8)
    scale = torch.rand(n, generator=gen) * 1e-2
    bias = torch.randn(n, generator=gen).to(torch.bfloat16)
    x = torch.randn(m, k, generator=gen).to(torch.bfloat16)
    y = _ops().int8_gemv_q8(x, w, scale, bias)
    _check(y, x, w.double() * scale.double()[:, None], bias)


def _moe_by_gemv(x, ids, wts, b1, s1, bias1, b2, s2, bias2):  # type: ignore[no-untyped-def]
    """The grouped MoE kernel's contract, one (token, expert) pair at a time through mxfp4_gemv_q8."""
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        order = torch.argsort(ids[t], stable=True)
        for j in order.tolist():
            e = ids[t, j : j + 1]
            h = _ops().mxfp4_gemv_q8(x[t : t + 1], b1, s1, e, bias1).to(torch.bfloat16)
            a = swiglu(h, 7.0, 1.702)
            y = _ops().mxfp4_gemv_q8(a, b2, s2, e, bias2).to(torch.bfloat16) * wts[t, j].to(torch.bfloat16)
            out[t] = out[t] + y[0]
    return out


@pytest.mark.parametrize("tokens", [1, 3, 9])  # one, a few, and experts with more than 4 tokens
def test_grouped_moe_equals_pairwise_gemvs(tokens: int) -> None:
    gen = torch.Generator().manual_seed(20 + tokens)
    e, h, i = 6, 96, 160  # 3 and 5 blocks per row
    b1, s1 = _mxfp4(e, 2 * i, h // 32, gen, tuple(range(118, 125)))
    b2, s2 = _mxfp4(e, h, i // 32, gen, tuple(range(118, 125)))
    bias1 = torch.randn(e, 2 * i, generator=gen).to(torch.bfloat16)
    bias2 = torch.randn(e, h, generator=gen).to(torch.bfloat16)
    x = (torch.randn(tokens, h, generator=gen) * 3).to(torch.bfloat16)
    ids = torch.stack([torch.randperm(e, generator=gen)[:4] for _ in range(tokens)])
    wts = torch.softmax(torch.randn(tokens, 4, generator=gen), -1).to(torch.bfloat16)
    got = _ops().mxfp4_moe_q8(x, b1, s1, bias1, b2, s2, bias2, ids, wts, 1.702, 7.0)
    assert torch.equal(got, _moe_by_gemv(x, ids, wts, b1, s1, bias1, b2, s2, bias2))
    with pytest.raises(RuntimeError, match="out of range"):
        _ops().mxfp4_moe_q8(x, b1, s1, bias1, b2, s2, bias2, ids + 6, wts, 1.702, 7.0)


# ----------------------------------------------------------------------------- the whole model, greedy tokens

def _q8(x: torch.Tensor) -> torch.Tensor:
    """The activation as the kernels see it, dequantised (fp64)."""
    q, d = q8_blocks(x.reshape(-1, x.shape[-1]))
    return (q * d).reshape(x.shape)


def expert_mlp_q8_reference(x, expert_ids, expert_weights, experts, limit, alpha=1.702):  # type: ignore[no-untyped-def]
    """gpt_oss.expert_mlp with the int8 activations of the native kernels, in fp64 torch ops."""
    out = torch.zeros_like(x)
    for e in range(experts.mlp1_bias.shape[0]):
        tok, slot = torch.nonzero(expert_ids == e, as_tuple=True)
        if tok.numel() == 0:
            continue
        w1, b1, w2, b2 = (t.double() for t in experts.weights(e))
        h = (_q8(x[tok]) @ w1.T + b1).to(x.dtype)
        a = swiglu(h, limit, alpha)
        y = (_q8(a) @ w2.T + b2).to(x.dtype) * expert_weights[tok, slot, None].to(x.dtype)
        out.index_add_(0, tok, y)
    return out


class Int8LinearQ8Reference(torch.nn.Module):
    """An Int8Linear at decode sizes computed from its dequantised weights and the kernels' int8 activations."""

    def __init__(self, lin: torch.nn.Module) -> None:
        super().__init__()
        self.lin = lin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from ossagent.model.quant8 import GEMV_MAX_ROWS

        if x.reshape(-1, x.shape[-1]).shape[0] > GEMV_MAX_ROWS:  # prefill rows: bf16 activations
            return self.lin(x)  # type: ignore[no-any-return]
        w = self.lin.weight.double() * self.lin.scale.double()[:, None]
        b = 0 if self.lin.bias is None else self.lin.bias.double()
        return (_q8(x) @ w.T + b).to(x.dtype)


@pytest.mark.parametrize("int8_weights", [False, True])
def test_greedy_tokens_of_int8_activations_equal_the_reference(int8_weights: bool) -> None:
    """Decode and short prefill chunks through the grouped MoE kernel (and the int8 GEMV with 8-bit weights)
    give the greedy tokens of a plain torch model that quantises its activations the same way."""
    from ossagent.model.engine import Engine, SamplingParams
    from ossagent.model.kernels import moe
    from ossagent.model.kernels.accelerate import accelerate
    from ossagent.model.quant8 import Int8Linear, quantize_model
    from tests.model.test_fast_paths import TINY, _tiny

    prompt = [int(t) for t in torch.randint(0, TINY.vocab_size, (40,), generator=torch.Generator().manual_seed(6))]
    params = SamplingParams(max_tokens=24, temperature=0.0)
    ref_model = _tiny(1)
    ref_model.set_expert_kernel(expert_mlp_q8_reference)
    if int8_weights:
        quantize_model(ref_model)
        for parent in [*(b.attn for b in ref_model.blocks), ref_model]:
            for name, child in list(parent.named_children()):
                if isinstance(child, Int8Linear):
                    setattr(parent, name, Int8LinearQ8Reference(child))
    assert moe.GROUPED_MAX_TOKENS >= 16  # the 16-token prefill chunks take the grouped kernel too
    plain = list(Engine(ref_model, chunk_size=16).generate(prompt, params))
    fast_model = _tiny(1)
    assert accelerate(fast_model, int8=int8_weights, int8_activations=True)
    assert fast_model.blocks[0].mlp.experts.int8_activations
    fast = list(Engine(fast_model, chunk_size=16).generate(prompt, params))
    assert fast == plain


def test_which_configurations_use_int8_activations() -> None:
    """bf16: the reference's activations (greedy tokens equal, test_fast_paths); 8-bit rest: int8 activations."""
    from ossagent.model.kernels.accelerate import accelerate
    from ossagent.model.quant8 import Int8Linear, quantize_model
    from tests.model.test_fast_paths import _tiny

    def flags(model: torch.nn.Module) -> set[bool]:
        return {m.int8_activations for m in model.modules() if hasattr(m, "int8_activations")}

    plain = _tiny()
    assert accelerate(plain) and flags(plain) == {False}
    assert accelerate(plain, int8_activations=True) and flags(plain) == {True}
    int8 = _tiny()
    assert accelerate(int8, int8=True) and flags(int8) == {True}
    assert any(isinstance(m, Int8Linear) for m in int8.modules())
    later = _tiny()
    accelerate(later)
    quantize_model(later)  # the 8-bit configuration, as benchmarks/speed.py makes it
    assert flags(later) == {True}
    assert accelerate(_tiny(), int8=True, int8_activations=False)


def test_accelerate_puts_decode_rows_on_the_bf16_gemv() -> None:
    from ossagent.model.kernels.accelerate import accelerate
    from ossagent.model.kernels.bf16 import GemvLinear, bf16_linear
    from ossagent.model.quant8 import Int8Linear
    from tests.model.test_fast_paths import _tiny

    model = _tiny()
    assert accelerate(model)
    assert type(model.unembedding) is GemvLinear and type(model.blocks[1].attn.out) is GemvLinear
    x = torch.randn(2, model.config.hidden_size).to(torch.bfloat16)
    with torch.no_grad():
        fast = model.unembedding(x)
        assert torch.equal(fast, bf16_linear(x, model.unembedding.weight))
        torch.testing.assert_close(fast, torch.nn.functional.linear(x, model.unembedding.weight),
                                   rtol=2**-7, atol=1e-6)
    int8 = _tiny()
    assert accelerate(int8, int8=True)
    assert type(int8.unembedding) is Int8Linear  # the 8-bit rest replaces them
