"""The grouped bf16-activation MoE kernel (``mxfp4_moe_bf16``) and where ``native_expert_mlp`` uses it.

The kernel runs the fp32 operations of ``mxfp4_moe_decode`` in the same order for every (token, expert) pair, so
each token's row is compared bit for bit with that kernel on the token alone (which test_kernels.py ties to the
GEMV path and test_fast_paths.py to the reference); against the torch reference it is checked within the
bounds test_fast_paths.py uses, and batched greedy decoding of a tiny model gives the reference's tokens.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from ossagent.model import kernels

pytestmark = pytest.mark.skipif(not kernels.load(), reason="native kernels unavailable on this machine")


def _ops():  # type: ignore[no-untyped-def]
    return torch.ops.ossagent_kernels


def _layer(e: int, h: int, i: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Random MXFP4 experts: mlp1 [e, 2i, h/32, 16] (+ scales, bf16 bias), mlp2 [e, h, i/32, 16] (+ ...)."""
    g = torch.Generator().manual_seed(seed)
    b1 = torch.randint(0, 256, (e, 2 * i, h // 32, 16), generator=g, dtype=torch.uint8)
    b1[0, 0, 0] = torch.tensor([0x10 * c + (15 - c) for c in range(16)], dtype=torch.uint8)  # all 16 codes
    s1 = torch.randint(118, 125, (e, 2 * i, h // 32), generator=g, dtype=torch.uint8)
    b2 = torch.randint(0, 256, (e, h, i // 32, 16), generator=g, dtype=torch.uint8)
    s2 = torch.randint(118, 125, (e, h, i // 32), generator=g, dtype=torch.uint8)
    bias1 = torch.randn(e, 2 * i, generator=g).to(torch.bfloat16)
    bias2 = torch.randn(e, h, generator=g).to(torch.bfloat16)
    return b1, s1, bias1, b2, s2, bias2


def _routing(tokens: int, e: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of e distinct experts per token and bf16 routing weights."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randperm(e, generator=g)[:k] for _ in range(tokens)])
    w = torch.softmax(torch.randn(tokens, k, generator=g), -1).to(torch.bfloat16)
    return ids, w


@pytest.mark.parametrize(
    ("e", "h", "i", "tokens", "k"),
    [
        (6, 96, 160, 2, 4),  # 3 blocks a row (odd: the tail block), mlp2 5 blocks
        (6, 96, 160, 9, 4),  # experts with more than 4 tokens: a second pass over the same rows
        (8, 64, 96, 5, 2),  # the tiny model's shapes
        (5, 128, 64, 13, 3),  # even block counts; 3 and 4 tokens per pass
        (32, 64, 64, 3, 4),  # most experts untouched
    ],
)
def test_each_token_equals_the_one_token_kernel_bit_for_bit(e: int, h: int, i: int, tokens: int, k: int) -> None:
    layer = _layer(e, h, i, seed=e + h + tokens)
    ids, w = _routing(tokens, e, k, seed=tokens)
    x = (torch.randn(tokens, h, generator=torch.Generator().manual_seed(k)) * 3).to(torch.bfloat16)
    got = _ops().mxfp4_moe_bf16(x, *layer, ids, w, 1.702, 7.0)
    assert got.dtype == torch.bfloat16 and got.shape == (tokens, h)
    for t in range(tokens):
        alone = _ops().mxfp4_moe_decode(x[t : t + 1], *layer, ids[t], w[t], 1.702, 7.0)
        assert torch.equal(got[t : t + 1].view(torch.int16), alone.view(torch.int16)), t  # -0.0 too


def test_thread_count_and_empty_batches_do_not_change_results() -> None:
    """Any split of the (expert, row group) tasks over threads gives the same bits; no tokens give no rows."""
    layer = _layer(6, 96, 160, seed=5)
    ids, w = _routing(7, 6, 4, seed=5)
    x = torch.randn(7, 96, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16)
    one = _ops().mxfp4_moe_bf16(x, *layer, ids, w, 1.702, 7.0)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert torch.equal(_ops().mxfp4_moe_bf16(x, *layer, ids, w, 1.702, 7.0), one)
    finally:
        torch.set_num_threads(before)
    empty = _ops().mxfp4_moe_bf16(x[:0], *layer, ids[:0], w[:0], 1.702, 7.0)
    assert empty.shape == (0, 96)


def test_repeated_tokens_and_fp32_weights() -> None:
    """The same token twice gives the same row twice; fp32 routing weights are rounded to bf16 first."""
    layer = _layer(4, 64, 64, seed=3)
    x = torch.randn(1, 64, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16).expand(3, 64)
    ids = torch.tensor([[1, 3], [1, 3], [3, 1]])
    w = torch.tensor([[0.3, 0.7], [0.3, 0.7], [0.7, 0.3]])
    got = _ops().mxfp4_moe_bf16(x, *layer, ids, w, 1.702, 7.0)
    assert torch.equal(got[0], got[1]) and torch.equal(got[0], got[2])  # ascending expert id either way
    assert torch.equal(got, _ops().mxfp4_moe_bf16(x, *layer, ids, w.to(torch.bfloat16), 1.702, 7.0))


def test_bad_input_is_rejected() -> None:
    layer = _layer(4, 64, 64, seed=4)
    x = torch.zeros(2, 64, dtype=torch.bfloat16)
    w = torch.full((2, 2), 0.5)
    with pytest.raises(RuntimeError, match="mxfp4_moe_bf16: expert id 4 out of range"):
        _ops().mxfp4_moe_bf16(x, *layer, torch.tensor([[0, 1], [2, 4]]), w, 1.702, 7.0)
    with pytest.raises(RuntimeError, match="x must be bf16"):
        _ops().mxfp4_moe_bf16(x.float(), *layer, torch.tensor([[0, 1], [2, 3]]), w, 1.702, 7.0)
    with pytest.raises(RuntimeError, match=r"expert_ids and weights must be \[T, k\]"):
        _ops().mxfp4_moe_bf16(x, *layer, torch.tensor([[0, 1]]), w[:1], 1.702, 7.0)


def _record_layer_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(op name, tokens) of every native whole-layer call ``native_expert_mlp`` makes from now on."""
    from ossagent.model.kernels import moe

    calls: list[tuple[str, int]] = []
    real: Callable[..., torch.Tensor] = moe._layer_call

    def spy(op, x, *args):  # type: ignore[no-untyped-def]
        calls.append((str(op).rsplit(".", 1)[-1], x.shape[0]))
        return real(op, x, *args)

    monkeypatch.setattr(moe, "_layer_call", spy)
    return calls


def test_native_expert_mlp_takes_the_grouped_kernel_for_bf16_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    from ossagent.model.gpt_oss import expert_mlp
    from ossagent.model.kernels import moe
    from tests.model.test_fast_paths import TINY, _tiny

    experts = _tiny().blocks[0].mlp.experts
    assert not getattr(experts, "int8_activations", False)
    calls = _record_layer_calls(monkeypatch)
    monkeypatch.setattr(moe, "GROUPED_BF16_MAX_TOKENS", 6)
    g = torch.Generator().manual_seed(9)
    for n in (1, 2, 6, 7):
        x = torch.randn(n, TINY.hidden_size, generator=g).to(torch.bfloat16)
        ids = torch.stack([torch.randperm(TINY.num_experts, generator=g)[:2] for _ in range(n)])
        w = torch.softmax(torch.randn(n, 2, generator=g), -1).to(torch.bfloat16)
        with torch.no_grad():
            got = moe.native_expert_mlp(x, ids, w, experts, 7.0)
            ref = expert_mlp(x, ids, w, experts, 7.0)
            torch.testing.assert_close(got.float(), ref.float(), rtol=2**-7, atol=1e-3)
            if n > 1:
                assert torch.equal(got, torch.cat([moe.native_expert_mlp(x[t : t + 1], ids[t : t + 1], w[t : t + 1],
                                                                         experts, 7.0) for t in range(n)]))
    grouped = [t for op, t in calls if op == "mxfp4_moe_bf16"]
    assert grouped == [2, 6]  # 1 token: mxfp4_moe_decode; 7 > the threshold: the per-expert paths
    assert ("mxfp4_moe_decode", 1) in calls


def test_batched_greedy_tokens_equal_the_torch_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four sequences decoded together (bf16, the default configuration) give every sequence the greedy tokens
    of the plain torch model batched the same way, with each layer's experts in one grouped call per step."""
    from ossagent.model.kernels import moe
    from ossagent.model.kernels.accelerate import accelerate
    from tests.model.test_fast_paths import _tiny
    from tests.model.test_kernels_bf16 import batched_greedy

    plain = batched_greedy(_tiny(3), (4, 9, 15, 26), 16, seed=12)
    fast_model = _tiny(3)
    assert accelerate(fast_model)
    calls = _record_layer_calls(monkeypatch)
    assert batched_greedy(fast_model, (4, 9, 15, 26), 16, seed=12) == plain
    grouped = {t for op, t in calls if op == "mxfp4_moe_bf16"}
    assert 4 in grouped  # four sequences' decode steps in one call per layer
    if moe.GROUPED_BF16_MAX_TOKENS >= 32:
        assert {32, 25} <= grouped  # the 32-token prefill chunks too (and the last one, of 25)


def test_per_expert_path_for_large_batches_stays_bit_identical() -> None:
    """Above GROUPED_BF16_MAX_TOKENS (prefill) every expert with more than 2 tokens is dequantised and multiplied
    with F.linear: bit-identical to the reference (test_fast_paths.py's 40-token case now takes the grouped
    kernel, so this keeps that path covered)."""
    from ossagent.model.gpt_oss import expert_mlp
    from ossagent.model.kernels import moe
    from tests.model.test_fast_paths import TINY, _tiny

    experts = _tiny().blocks[1].mlp.experts
    n = moe.GROUPED_BF16_MAX_TOKENS + 1
    g = torch.Generator().manual_seed(13)
    x = torch.randn(n, TINY.hidden_size, generator=g).to(torch.bfloat16)
    ids = torch.stack([torch.randperm(TINY.num_experts, generator=g)[:2] for _ in range(n)])
    w = torch.softmax(torch.randn(n, 2, generator=g), -1).to(torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(moe.native_expert_mlp(x, ids, w, experts, 7.0), expert_mlp(x, ids, w, experts, 7.0))
