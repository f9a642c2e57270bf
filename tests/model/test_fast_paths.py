"""The fast CPU paths (native MXFP4 experts, 8-bit attention/unembedding) against the plain model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ossagent.model import kernels
from ossagent.model.config import GptOssConfig
from ossagent.model.engine import Engine, SamplingParams
from ossagent.model.gpt_oss import GptOss, expert_mlp
from ossagent.model.kernels.accelerate import accelerate
from ossagent.model.kernels.moe import GROUPED_BF16_MAX_TOKENS, native_expert_mlp
from ossagent.model.quant8 import Int8Linear, quantize_model, quantize_rows

needs_kernels = pytest.mark.skipif(not kernels.load(), reason="native kernels unavailable on this machine")

TINY = GptOssConfig(
    num_hidden_layers=2,
    num_experts=8,
    experts_per_token=2,
    vocab_size=512,
    hidden_size=64,
    intermediate_size=96,
    head_dim=16,
    num_attention_heads=4,
    num_key_value_heads=2,
    sliding_window=8,
)


def _tiny(seed: int = 0) -> GptOss:
    model = GptOss(TINY, quantized_experts=True)
    model.init_random(seed=seed, std=0.05)
    return model.eval()


@needs_kernels
def test_native_experts_prefill_is_bit_identical_and_decode_close() -> None:
    model = _tiny()
    experts = model.blocks[0].mlp.experts
    g = torch.Generator().manual_seed(5)
    big = GROUPED_BF16_MAX_TOKENS + 12
    for n in (1, 3, 40, big):  # decode (GEMV), mixed, grouped bf16 kernel, prefill (dequant + matmul)
        x = torch.randn(n, TINY.hidden_size, generator=g).to(torch.bfloat16)
        ids = torch.stack([torch.randperm(TINY.num_experts, generator=g)[:2] for _ in range(n)])
        w = torch.softmax(torch.randn(n, 2, generator=g), -1).to(torch.bfloat16)
        with torch.no_grad():
            ref = expert_mlp(x, ids, w, experts, 7.0)
            got = native_expert_mlp(x, ids, w, experts, 7.0)
        if n == big:
            assert torch.equal(got, ref)  # every expert has > 2 tokens: dequant path, bit-identical
        # GEMV sums in another order: at most a bf16 rounding step apart
        torch.testing.assert_close(got.float(), ref.float(), rtol=2**-7, atol=1e-3)


@needs_kernels
def test_greedy_tokens_identical_to_unoptimised_path() -> None:
    prompt = [
        int(t) for t in torch.randint(0, TINY.vocab_size, (40,), generator=torch.Generator().manual_seed(6))
    ]
    params = SamplingParams(max_tokens=24, temperature=0.0)
    plain = list(Engine(_tiny(1), chunk_size=16).generate(prompt, params))
    fast_model = _tiny(1)
    assert accelerate(fast_model)
    assert fast_model.blocks[0].mlp.kernel is native_expert_mlp
    fast = list(Engine(fast_model, chunk_size=16).generate(prompt, params))
    assert fast == plain


def test_quantize_rows_round_trip() -> None:
    w = torch.randn(50, 64, generator=torch.Generator().manual_seed(7)).to(torch.bfloat16)
    q, s = quantize_rows(w)
    assert q.dtype == torch.int8 and s.shape == (50,)
    back = q.float() * s[:, None]
    assert ((back - w.float()).abs() <= s[:, None] / 2 + 1e-7).all()  # half a step at most
    assert (q.abs().amax(dim=1) == 127).all()


@pytest.mark.parametrize("rows", [1, 9])  # GEMV kernel (when built) and the dequantise + matmul path
def test_int8_linear_matches_dequantized_weights(rows: int) -> None:
    with torch.random.fork_rng():  # its own seed: the layer no longer depends on what ran before
        torch.manual_seed(82)
        lin = torch.nn.Linear(64, 40, bias=True).to(torch.bfloat16)
    q8 = Int8Linear.from_linear(lin)
    x = torch.randn(rows, 64, generator=torch.Generator().manual_seed(8)).to(torch.bfloat16)
    ref = torch.nn.functional.linear(x.float(), q8.dequantized(torch.float32), lin.bias.float())
    torch.testing.assert_close(q8(x).float(), ref, rtol=2**-7, atol=2e-3)


def test_int8_logits_close_to_bf16() -> None:
    """8-bit attention + unembedding against bf16: same top-1 at (almost) every position, logits close."""
    tokens = torch.randint(0, TINY.vocab_size, (64,), generator=torch.Generator().manual_seed(9))
    model = _tiny(2)
    with torch.no_grad():
        ref = model(tokens).float()
        assert quantize_model(model) == 4 * TINY.num_hidden_layers + 1
        got = model(tokens).float()
    cos = torch.nn.functional.cosine_similarity(got, ref, dim=-1)
    assert cos.min() > 0.999
    agree = (got.argmax(-1) == ref.argmax(-1)).float().mean()
    assert agree >= 0.95
    rel = (got - ref).norm() / ref.norm()
    assert rel < 0.03


@needs_kernels
def test_fp32_models_take_the_exact_dequant_path() -> None:
    model = GptOss(TINY, quantized_experts=True, dtype=torch.float32)
    model.init_random(seed=3, std=0.05)
    experts = model.blocks[1].mlp.experts
    g = torch.Generator().manual_seed(10)
    for n in (1, 5):
        x = torch.randn(n, TINY.hidden_size, generator=g)
        ids = torch.stack([torch.randperm(TINY.num_experts, generator=g)[:2] for _ in range(n)])
        w = torch.softmax(torch.randn(n, 2, generator=g), -1)
        with torch.no_grad():
            assert torch.equal(
                native_expert_mlp(x, ids, w, experts, 7.0), expert_mlp(x, ids, w, experts, 7.0)
            )


def test_from_pretrained_options(tmp_path: Path) -> None:
    from ossagent.model.checkpoint_writer import write_checkpoint

    write_checkpoint(tmp_path, TINY, seed=4)
    plain = Engine.from_pretrained(tmp_path, device="cpu", native_kernels=False)
    assert plain.model.blocks[0].mlp.kernel is expert_mlp
    assert isinstance(plain.model.unembedding, torch.nn.Linear)
    fast = Engine.from_pretrained(tmp_path, device="cpu", int8=True)
    assert isinstance(fast.model.unembedding, Int8Linear)
    assert isinstance(fast.model.blocks[1].attn.q, Int8Linear)
    if kernels.available():
        assert fast.model.blocks[0].mlp.kernel is native_expert_mlp
    params = SamplingParams(max_tokens=4, temperature=0.0)
    assert len(list(fast.generate([1, 2, 3], params))) == 4
