"""The fused attention path (torch's CPU flash kernel + the sink as a logsumexp correction) equals the plain one.

Both paths are compared on one ``Attention`` layer fed through the real cache classes (fresh prefill, a chunk
after a cached prefix, the sliding window's ring), on rows with empty slots and on rows that see no key at all,
in fp32 (to fp32 rounding) and bf16 (to about one bf16 step), and end to end: a tiny model's greedy tokens.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from ossagent.model import gpt_oss
from ossagent.model.cache import FullLayer, KVCache, RingLayer
from ossagent.model.gpt_oss import FLASH_MIN_QUERIES, Attention, GptOss, flash_attention_op
from tests.model.conftest import tiny_config

pytestmark = pytest.mark.skipif(flash_attention_op() is None, reason="this torch has no fused CPU attention")

CONFIG = tiny_config()  # 8 query heads on 2 KV heads, head_dim 16, window 8
SLIDING, FULL = 0, 1


def assert_same(fused: torch.Tensor, plain: torch.Tensor) -> None:
    """fp32: equal up to summation order. bf16: the plain path rounds logits and weights to bf16 before the
    value matmul, the fused one keeps fp32 inside: apart by about one bf16 step of the largest output."""
    assert not fused.isnan().any()
    if fused.dtype == torch.float32:
        torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-5)
    else:
        step = 2**-7 * float(plain.abs().max())
        torch.testing.assert_close(fused.float(), plain.float(), atol=1.5 * step, rtol=2**-7)


@pytest.fixture
def flash_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the fused kernel's calls (queries per call), so a test knows which path ran."""
    op = flash_attention_op()
    assert op is not None
    calls: list[int] = []

    def counting(q: torch.Tensor, *args: Any, **kw: Any) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(q.shape[2])
        return op(q, *args, **kw)

    monkeypatch.setattr(gpt_oss, "flash_attention_op", lambda: counting)
    yield calls


def rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def layer(kind: int, dtype: torch.dtype, seed: int = 0) -> Attention:
    """Layer ``kind`` (0 slides, 1 attends fully) with random weights and sinks of either sign."""
    attn = Attention(CONFIG, kind, "cpu", dtype)
    with torch.no_grad():
        for i, p in enumerate(attn.parameters()):
            p.copy_(rand(*p.shape, seed=100 * seed + i) * (2.0 if p is attn.sinks else 0.3))
    return attn


def both_paths(attn: Attention, run: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(plain, fused) results of ``run`` on the same layer; the layer is left as it was built (plain)."""
    assert not attn.fused  # the default
    plain = run()
    attn.fused = True
    try:
        return plain, run()
    finally:
        attn.fused = False


def new_cache(kind: int, dtype: torch.dtype) -> FullLayer | RingLayer:
    nkv, d = CONFIG.num_key_value_heads, CONFIG.head_dim
    if kind == SLIDING:
        return RingLayer(nkv, d, CONFIG.sliding_window, 64, 0, 1 << 20, "cpu", dtype)
    return FullLayer(nkv, d, 1024, "cpu", dtype)


def cos_sin(positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    return gpt_oss.Rotary(CONFIG).cos_sin(positions, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", [SLIDING, FULL])
def test_fresh_prefill_equals_plain_path(kind: int, dtype: torch.dtype, flash_calls: list[int]) -> None:
    attn = layer(kind, dtype)
    x = rand(2, 150, CONFIG.hidden_size, seed=7).to(dtype)  # batch 2, no cache: 3 fused calls of <= 64 queries
    pos = torch.arange(150)
    with torch.no_grad():
        plain, fused = both_paths(attn, lambda: attn(x, pos, cos_sin(pos, dtype), None))
    assert flash_calls == [64, 64, 22]
    assert_same(fused, plain)
    if dtype == torch.bfloat16:  # and no less accurate: both against fp32 math on the same bf16 numbers
        exact = copy.deepcopy(attn).float()
        with torch.no_grad():
            ref = exact(x.float(), pos, cos_sin(pos, torch.float32), None)
        err_fused, err_plain = (fused.float() - ref).abs().mean(), (plain.float() - ref).abs().mean()
        assert err_fused < 1.1 * err_plain


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", [SLIDING, FULL])
def test_chunk_after_cached_prefix_equals_plain_path(kind: int, dtype: torch.dtype, flash_calls: list[int]) -> None:
    """A 40-token chunk at position 100 of a cache (the ring holds only the window before it), both paths on
    copies of the same cache."""
    attn = layer(kind, dtype, seed=1)
    x = rand(1, 140, CONFIG.hidden_size, seed=8).to(dtype)
    cache = new_cache(kind, dtype)
    with torch.no_grad():
        for a in range(0, 100, 20):
            pos = torch.arange(a, a + 20)
            attn(x[:, a : a + 20], pos, cos_sin(pos, dtype), cache)
        pos = torch.arange(100, 140)
        copies = iter([cache.copy_prefix(100), cache.copy_prefix(100)])
        plain, fused = both_paths(attn, lambda: attn(x[:, 100:], pos, cos_sin(pos, dtype), next(copies)))
    assert flash_calls[-1] == 40  # the chunk went through the kernel
    assert_same(fused, plain)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", [SLIDING, FULL])
def test_empty_slots_and_queries_without_keys(kind: int, dtype: torch.dtype, flash_calls: list[int]) -> None:
    """Slots marked -1 are skipped; a query that sees no key at all gets 0 (all its weight on the sink)."""
    attn = layer(kind, dtype, seed=2)
    g = torch.Generator().manual_seed(3)
    q = torch.randn(1, 24, CONFIG.num_attention_heads, CONFIG.head_dim, generator=g).to(dtype)
    k, v = (torch.randn(1, 30, CONFIG.num_key_value_heads, CONFIG.head_dim, generator=g).to(dtype) for _ in "kv")
    q_pos = torch.arange(4, 28)
    k_pos = torch.arange(30) + 5  # keys 5..34
    k_pos[[0, 7, 8, 20, 29]] = -1  # empty slots, one of them where the causal edge is
    k_pos[:3] = torch.tensor([-1, 40, 41])  # slots ahead of every query: seen by none
    no_key = torch.full((30,), -1)
    no_key[25:] = torch.arange(50, 55)  # only keys in every query's future
    with torch.no_grad():
        plain, fused = both_paths(attn, lambda: attn.attend(q, k, v, q_pos, k_pos))
        assert_same(fused, plain)
        assert torch.equal(fused[:, :4], torch.zeros_like(fused[:, :4]))  # queries 4..7: the first key is at 8
        assert fused[:, 4:].abs().amin(-1).gt(0).all()
        plain, fused = both_paths(attn, lambda: attn.attend(q, k, v, q_pos, no_key))
    assert torch.equal(fused, plain) and torch.equal(fused, torch.zeros_like(fused))
    assert flash_calls == [24]  # the second call needed no kernel: no query sees any key


def test_queries_without_keys_give_zero_even_if_the_kernel_gives_nan(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch 2.13's kernel returns 0 for a fully masked row; the fused path does not rely on it."""
    op = flash_attention_op()
    assert op is not None

    def nan_rows(*args: Any, attn_mask: torch.Tensor | None = None, **kw: Any) -> tuple[torch.Tensor, torch.Tensor]:
        out, lse = op(*args, attn_mask=attn_mask, **kw)
        assert attn_mask is not None
        empty = attn_mask.isinf().all(-1)  # [T]
        return out.masked_fill(empty[:, None], float("nan")), lse.masked_fill(empty, float("nan"))

    monkeypatch.setattr(gpt_oss, "flash_attention_op", lambda: nan_rows)
    attn = layer(FULL, torch.float32, seed=5)
    q = rand(1, 20, CONFIG.num_attention_heads, CONFIG.head_dim, seed=10)
    k, v = (rand(1, 12, CONFIG.num_key_value_heads, CONFIG.head_dim, seed=s) for s in (11, 12))
    q_pos, k_pos = torch.arange(20), torch.arange(12) + 5  # queries 0..4 see no key
    with torch.no_grad():
        plain, fused = both_paths(attn, lambda: attn.attend(q, k, v, q_pos, k_pos))
    assert_same(fused, plain)
    assert torch.equal(fused[:, :5], torch.zeros_like(fused[:, :5]))


def test_decode_and_autograd_keep_the_plain_path(flash_calls: list[int]) -> None:
    attn = layer(FULL, torch.float32, seed=4)
    attn.fused = True
    x = rand(1, 40, CONFIG.hidden_size, seed=9)
    pos = torch.arange(40)
    cache = new_cache(FULL, torch.float32)
    with torch.no_grad():
        for a in range(0, 40, FLASH_MIN_QUERIES - 1):  # chunks below the threshold
            p = pos[a : a + FLASH_MIN_QUERIES - 1]
            attn(x[:, p], p, cos_sin(p, torch.float32), cache)
    y = attn(x, pos, cos_sin(pos, torch.float32), None)  # with grad: the training path
    y.sum().backward()
    assert flash_calls == [] and attn.sinks.grad is not None


def greedy(model: GptOss, prompt: torch.Tensor, steps: int, fused: bool) -> tuple[list[int], torch.Tensor]:
    """The prompt in chunks of 48 through a cache, then greedy steps: (tokens, prompt logits in fp32). The
    model is left plain (the default)."""
    for block in model.blocks:
        block.attn.fused = fused  # type: ignore[union-attr]
    cache = KVCache(model.config, max_chunk=48, rollback=0, dtype=model.dtype)
    try:
        with torch.no_grad():
            logits = torch.cat([model(prompt[a : a + 48], cache) for a in range(0, len(prompt), 48)])
            tokens = [int(logits[-1].argmax())]
            for _ in range(steps - 1):
                tokens.append(int(model(torch.tensor(tokens[-1:]), cache)[-1].argmax()))
    finally:
        for block in model.blocks:
            block.attn.fused = False  # type: ignore[union-attr]
    return tokens, logits.float()


def test_greedy_tokens_equal_with_and_without_the_fused_path(flash_calls: list[int]) -> None:
    """A tiny fp32 model: a 200-token prompt in chunks of 48 (beyond the window of 8), then 24 greedy steps."""
    config = tiny_config()
    model = GptOss(config, quantized_experts=True, dtype=torch.float32).eval()
    model.init_random(seed=5, std=0.08)
    prompt = torch.randint(0, config.vocab_size, (200,), generator=torch.Generator().manual_seed(6))
    plain_tokens, plain_logits = greedy(model, prompt, 24, fused=False)
    assert flash_calls == []
    tokens, logits = greedy(model, prompt, 24, fused=True)
    assert len(flash_calls) == 4 * config.num_hidden_layers  # 4 chunks of 48; the tail of 8 and decode: plain
    assert len(set(tokens)) > 5 and tokens == plain_tokens
    torch.testing.assert_close(logits, plain_logits, atol=1e-5, rtol=1e-5)


def test_bf16_model_is_no_less_accurate_with_the_fused_path() -> None:
    """bf16: the paths round differently, so a random model's near-ties may flip between them. Against the same
    weights in fp32, the fused path's logits are at least as close as the plain path's (it keeps fp32 inside)."""
    config = tiny_config()
    model = GptOss(config, quantized_experts=True).eval()
    model.init_random(seed=5, std=0.08)
    prompt = torch.randint(0, config.vocab_size, (200,), generator=torch.Generator().manual_seed(6))
    _, exact = greedy(copy.deepcopy(model).float(), prompt, 24, fused=False)
    _, plain = greedy(model, prompt, 24, fused=False)
    _, fused = greedy(model, prompt, 24, fused=True)
    err_plain, err_fused = ((x - exact).norm() / exact.norm() for x in (plain, fused))
    assert err_fused < 1.1 * err_plain < 0.1
    assert (fused.argmax(-1) == plain.argmax(-1)).float().mean() >= 0.95


def test_engine_and_backend_switch_every_layer(ckpt_mxfp4: Path, flash_calls: list[int]) -> None:
    """``attention="fused"`` (the CLI's ``--attention fused``) reaches every layer through the loader; the default
    stays plain; a bad value is refused before any weight is read."""
    from ossagent.agent.backends.local import LocalBackend
    from ossagent.model.engine import Engine, SamplingParams, set_attention
    from ossagent.tools.base import UserError

    plain = Engine.from_pretrained(ckpt_mxfp4, device="cpu", dtype=torch.float32)
    fused = Engine.from_pretrained(ckpt_mxfp4, device="cpu", dtype=torch.float32, attention="fused")
    assert not any(b.attn.fused for b in plain.model.blocks)  # type: ignore[union-attr]
    assert all(b.attn.fused for b in fused.model.blocks)  # type: ignore[union-attr]
    prompt = [int(t) for t in torch.randint(0, CONFIG.vocab_size, (40,), generator=torch.Generator().manual_seed(3))]
    params = SamplingParams(max_tokens=6, temperature=0.0)
    assert list(fused.generate(prompt, params)) == list(plain.generate(prompt, params))  # fp32: same tokens
    assert flash_calls  # the 40-token prompt went through the fused kernel
    with pytest.raises(ValueError, match="attention must be one of plain, fused"):
        Engine.from_pretrained(ckpt_mxfp4, attention="flash")
    with pytest.raises(ValueError, match="attention must be"):
        set_attention(plain.model, "")
    with pytest.raises(UserError, match="attention must be plain or fused"):
        LocalBackend.from_pretrained(ckpt_mxfp4, attention="flash")
