"""The bf16 GEMV / small-M GEMM kernel (``bf16_linear``) against fp64 references and torch's ``F.linear``.

Tolerance. bf16 x bf16 products are exact in fp32; the kernel sums them in fp32 (16 lanes of K/16 sequential
additions each, then a 16-lane reduction) and adds the bias in fp32. So its fp32 sum ``s`` is within
``e = (K/16 + 8) * 2**-24 * (sum_k |x_k w_k| + |b|)`` of the exact value ``ref`` (first-order bound of
recursive summation), and the bf16 output ``bf16(s)`` within ``2**-8 * (|ref| + e) + e`` (half a bf16 step). torch's bf16 F.linear
also sums in fp32 and rounds once, in another order: the two differ by at most one bf16 step of the output
plus both summation errors. An fp32 x is split into two bf16 rows, hi and lo; ``|x - hi - lo| <= 2**-16 |x|``
adds ``2**-16 * sum_k |x_k w_k|`` to the fp32 output's bound.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ossagent.model import kernels
from ossagent.model.gpt_oss import GptOss
from ossagent.model.kernels.bf16 import GemvLinear, bf16_linear, max_rows, switch_linears, use_kernel

pytestmark = pytest.mark.skipif(not kernels.load(), reason="native kernels unavailable on this machine")


def _data(m: int, n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=gen).to(torch.bfloat16)
    w = (torch.randn(n, k, generator=gen) * 0.05).to(torch.bfloat16)
    b = torch.randn(n, generator=gen).to(torch.bfloat16)
    return x, w, b


def _sum_bound(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(exact fp64 result, fp32 summation bound e) for x [M, K], w [N, K]."""
    xd, wd = x.double(), w.double()
    bd = torch.zeros((), dtype=torch.float64) if b is None else b.double()
    ref = xd @ wd.T + bd
    k = x.shape[1]
    e = (k / 16 + 8) * 2.0**-24 * (xd.abs() @ wd.abs().T + bd.abs())
    return ref, e


def _ulp_bf16(v: torch.Tensor) -> torch.Tensor:
    """One bf16 step at |v| (the spacing of bf16 numbers there; normal range)."""
    exp = torch.floor(torch.log2(v.abs().clamp_min(2.0**-126)))
    return torch.exp2(exp - 7)


@pytest.mark.parametrize("k", [1, 7, 31, 32, 33, 64, 100, 2880])  # every tail kind: < 32, odd, multiple
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 8, 9])  # 1-4: row by row; more: 4-row groups, x rows in sets of 4
def test_bf16_linear_matches_fp64_and_torch(k: int, m: int) -> None:
    n = 13  # three groups of 4 rows and a 1-row tail
    x, w, b = _data(m, n, k, seed=k * 31 + m)
    y = bf16_linear(x, w, b)
    assert y.dtype == torch.bfloat16 and y.shape == (m, n)
    ref, e = _sum_bound(x, w, b)
    got = y.double()
    assert ((got - ref).abs() <= 2.0**-8 * (ref.abs() + e) + e).all(), float((got - ref).abs().max())
    torch_y = F.linear(x, w, b).double()
    step = _ulp_bf16(torch.maximum(got.abs(), torch_y.abs()))
    assert ((got - torch_y).abs() <= step + 2 * e).all()


@pytest.mark.parametrize("m", [1, 3])  # 2 or 6 bf16 rows: one weight row at a time, or groups of 4
@pytest.mark.parametrize("bias_dtype", [None, torch.bfloat16, torch.float32])
def test_bf16_linear_fp32_activations_and_output(bias_dtype: torch.dtype | None, m: int) -> None:
    gen = torch.Generator().manual_seed(5)
    n, k = 10, 70
    x = torch.randn(m, k, generator=gen)  # not representable in bf16: the hi/lo split matters
    w = (torch.randn(n, k, generator=gen) * 0.05).to(torch.bfloat16)
    b = None if bias_dtype is None else torch.randn(n, generator=gen).to(bias_dtype)
    y = bf16_linear(x, w, b)
    assert y.dtype == torch.float32
    ref, e = _sum_bound(x, w, b)
    split = 2.0**-16 * (x.double().abs() @ w.double().abs().T)
    assert ((y.double() - ref).abs() <= 2 * e + split).all()
    # rounding x to bf16 first would be much further off than the bound
    rounded = bf16_linear(x.to(torch.bfloat16), w, b, out_dtype=torch.float32).double()
    assert ((rounded - ref).abs() > 2 * e + split).any()


def test_bf16_linear_output_dtype_and_leading_dims() -> None:
    x, w, b = _data(6, 9, 64, seed=1)
    y32 = bf16_linear(x.view(2, 3, 64), w, b, out_dtype=torch.float32)
    assert y32.shape == (2, 3, 9) and y32.dtype == torch.float32
    # the bf16 output is the fp32 one rounded once
    assert torch.equal(bf16_linear(x, w, b), y32.reshape(6, 9).to(torch.bfloat16))


def test_bf16_linear_large_n_spans_both_threads() -> None:
    """Enough row groups that the parallel region splits them; every row is computed once, in place."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x, w, b = _data(2, 4099, 96, seed=3)
        y = bf16_linear(x, w, b, out_dtype=torch.float32).double()
    finally:
        torch.set_num_threads(before)
    ref, e = _sum_bound(x, w, b)
    assert ((y - ref).abs() <= e).all()


def test_bf16_linear_rejects_bad_input() -> None:
    ops = torch.ops.ossagent_kernels
    x, w, _ = _data(1, 4, 32, seed=0)
    with pytest.raises(RuntimeError, match="weight must be a contiguous bf16"):
        ops.bf16_linear(x, w.float(), None, torch.bfloat16)
    with pytest.raises(RuntimeError, match="x must be \\[M, K\\] with K = 32"):
        ops.bf16_linear(x[:, :16], w, None, torch.bfloat16)
    with pytest.raises(RuntimeError, match="bias must be bf16 or fp32 with 4 values"):
        ops.bf16_linear(x, w, torch.zeros(3), torch.bfloat16)
    with pytest.raises(RuntimeError, match="output dtype"):
        ops.bf16_linear(x, w, None, torch.float16)


# ----------------------------------------------------------------------------- the nn.Linear and the model

def test_gemv_linear_dispatch() -> None:
    """Few rows: the kernel's result; more rows, or autograd: exactly F.linear, gradients included."""
    lin = torch.nn.Linear(64, 24, dtype=torch.bfloat16)
    gemv = GemvLinear.from_linear(lin)
    assert gemv.weight is lin.weight and gemv.bias is lin.bias
    assert list(gemv.state_dict()) == ["weight", "bias"]
    most = max_rows()
    x, _, _ = _data(most + 1, 1, 64, seed=2)
    with torch.no_grad():
        small = gemv(x[:most].view(2, -1, 64))
        assert torch.equal(small.view(most, 24), bf16_linear(x[:most], lin.weight, lin.bias))
        assert torch.equal(gemv(x), F.linear(x, lin.weight, lin.bias))
    xg = x[:1].clone().requires_grad_(True)
    gemv(xg).float().sum().backward()  # grad enabled: F.linear, so backward works
    assert xg.grad is not None and lin.weight.grad is not None


def test_switch_linears_keeps_parameters_and_skips_other_layers() -> None:
    from ossagent.model.quant8 import Int8Linear
    from tests.model.test_fast_paths import TINY, _tiny

    model = _tiny(0)
    model.blocks[1].attn.v = Int8Linear.from_linear(model.blocks[1].attn.v)
    keys = list(model.state_dict())
    q_weight = model.blocks[0].attn.q.weight
    assert switch_linears(model) == 4 * TINY.num_hidden_layers  # + unembedding - the 8-bit v
    assert isinstance(model.unembedding, GemvLinear) and model.blocks[0].attn.q.weight is q_weight
    assert isinstance(model.blocks[1].attn.v, Int8Linear)
    assert not isinstance(model.blocks[0].mlp.gate, GemvLinear)  # the router stays as it is
    assert list(model.state_dict()) == keys
    assert switch_linears(model) == 0


def test_greedy_tokens_with_the_bf16_kernel_equal_torch() -> None:
    """accelerate() puts the bf16 projections and the unembedding on the kernel for decode-sized calls; the
    greedy tokens equal those of the plain torch model (prefill chunks of 24 rows stay on F.linear)."""
    from ossagent.model.engine import Engine, SamplingParams
    from ossagent.model.kernels.accelerate import accelerate
    from tests.model.test_fast_paths import TINY, _tiny

    prompt = [int(t) for t in torch.randint(0, TINY.vocab_size, (40,), generator=torch.Generator().manual_seed(6))]
    params = SamplingParams(max_tokens=24, temperature=0.0)
    plain_model = _tiny(1)
    plain = list(Engine(plain_model, chunk_size=24).generate(prompt, params))
    fast_model = _tiny(1)
    assert accelerate(fast_model)
    assert isinstance(fast_model.unembedding, GemvLinear) and isinstance(fast_model.blocks[0].attn.q, GemvLinear)
    took_kernel: list[bool] = []
    fast_model.blocks[0].attn.q.register_forward_hook(
        lambda mod, args, out: took_kernel.append(use_kernel(args[0], mod.weight)))
    fast = list(Engine(fast_model, chunk_size=24).generate(prompt, params))
    assert fast == plain
    assert max_rows() < 24 and any(took_kernel) and not all(took_kernel)  # decode took the kernel, not prefill


def batched_greedy(model: GptOss, lengths: tuple[int, ...], max_tokens: int, seed: int) -> list[list[int]]:
    """Greedy tokens of random prompts of these lengths, decoded together (up to 4 at once, 32-token prefill)."""
    from ossagent.model.batch import BatchEngine
    from ossagent.model.engine import Engine, SamplingParams

    gen = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(0, model.config.vocab_size, (n,), generator=gen).tolist() for n in lengths]
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    batch = BatchEngine(Engine(model, chunk_size=32), kv_memory=1 << 26, max_batch=4, prefill_tokens=32)
    return batch.run([batch.generate(p, params) for p in prompts])


def test_batched_greedy_tokens_with_the_bf16_kernel_equal_torch() -> None:
    """Batched decoding feeds up to 4 rows per step to the kernel; every sequence's greedy tokens equal those
    of the plain torch model, batched the same way."""
    from ossagent.model.kernels.accelerate import accelerate
    from tests.model.test_fast_paths import _tiny

    def run(model: GptOss) -> list[list[int]]:
        return batched_greedy(model, (5, 11, 17, 23), 12, seed=8)

    plain = run(_tiny(2))
    fast_model = _tiny(2)
    assert accelerate(fast_model)
    rows: list[int] = []
    fast_model.unembedding.register_forward_hook(
        lambda mod, args, out: rows.append(args[0].reshape(-1, args[0].shape[-1]).shape[0])
        if use_kernel(args[0], mod.weight) else None)
    assert run(fast_model) == plain
    assert max(rows) == 4  # four sequences decoded in one call on the kernel
