"""The native decode attention (csrc/attention_kernels.cpp) against Attention._attend, and the caches' one-token
writes (``update_one``) against ``update``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from ossagent.model import kernels
from ossagent.model.batch import BatchEngine
from ossagent.model.cache import FullLayer, RingLayer
from ossagent.model.config import GptOssConfig
from ossagent.model.engine import Engine, SamplingParams
from ossagent.model.gpt_oss import Attention
from ossagent.model.kernels import attention as native_attention
from ossagent.model.kernels.attention import decode_attention

needs_kernels = pytest.mark.skipif(not kernels.load(), reason="native kernels unavailable on this machine")

Layer = FullLayer | RingLayer


def _config(nh: int, nkv: int, d: int) -> GptOssConfig:
    return GptOssConfig(num_hidden_layers=2, num_experts=4, experts_per_token=2, vocab_size=100, hidden_size=64,
                        intermediate_size=64, head_dim=d, num_attention_heads=nh, num_key_value_heads=nkv,
                        sliding_window=8)


def _attention(config: GptOssConfig, sliding: bool, seed: int) -> Attention:
    attn = Attention(config, 0 if sliding else 1, "cpu", torch.bfloat16)  # layer 0 slides, layer 1 is full
    assert bool(attn.window) == sliding
    with torch.no_grad():
        attn.sinks.copy_(torch.randn(attn.nh, generator=torch.Generator().manual_seed(seed)) * 2)
    return attn


def _layer(config: GptOssConfig, sliding: bool, snapshot_every: int = 1024) -> Layer:
    nkv, d = config.num_key_value_heads, config.head_dim
    if sliding:
        return RingLayer(nkv, d, config.sliding_window, 4, 3, snapshot_every, "cpu", torch.bfloat16)
    return FullLayer(nkv, d, 4096, "cpu", torch.bfloat16)


def _filled(config: GptOssConfig, sliding: bool, length: int, g: torch.Generator, chunk: int = 4) -> Layer:
    """A layer holding ``length`` random positions, written in chunks (a ring wraps around several times)."""
    layer = _layer(config, sliding)
    kv = torch.randn(2, length, config.num_key_value_heads, config.head_dim, generator=g).to(torch.bfloat16)
    for a in range(0, length, chunk):
        layer.update(kv[0, a : a + chunk], kv[1, a : a + chunk], a)
    return layer


def _copy(layer: Layer) -> Layer:
    return layer.copy_prefix(layer.length)


def _reference(attn: Attention, layer: Layer, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """_attend for one query q [nh, d] after storing k/v [nkv, d] the way prefill chunks do."""
    start = layer.length
    k_all, v_all, key_pos = layer.update(k[None], v[None], start)
    with torch.no_grad():
        return attn._attend(q[None, None], k_all[None], v_all[None], torch.tensor([start]), key_pos)[0, 0]


@needs_kernels
@pytest.mark.parametrize("sliding", [False, True])
@pytest.mark.parametrize(("nh", "nkv", "d"), [(8, 2, 16), (16, 2, 64), (6, 3, 40)])
def test_decode_attention_matches_attend(sliding: bool, nh: int, nkv: int, d: int) -> None:
    config = _config(nh, nkv, d)
    attn = _attention(config, sliding, seed=nh + d)
    g = torch.Generator().manual_seed(d)
    lengths = [0, 1, 5, 8, 13, 40, 301]  # empty, shorter than the window, one window, wrapped rings, long
    layers = [_filled(config, sliding, n, g) for n in lengths]
    q = (torch.randn(len(lengths), nh, d, generator=g) * 2).to(torch.bfloat16)  # large logits: peaked softmax
    k, v = torch.randn(2, len(lengths), nkv, d, generator=g).to(torch.bfloat16)
    want = torch.stack([_reference(attn, _copy(la), q[i], k[i], v[i]) for i, la in enumerate(layers)])
    views = [la.update_one(k[i], v[i], la.length) for i, la in enumerate(layers)]
    got = decode_attention(q, views, lengths, attn.sinks, attn.sm_scale, attn.window)
    assert got.shape == (len(lengths), nh * d) and got.dtype == torch.bfloat16
    # the same roundings, the fp32 sums in another order: nearly every value equal, the rest a rounding apart
    torch.testing.assert_close(got.float(), want.float(), rtol=2**-6, atol=2e-3)
    assert (got == want).float().mean() > 0.9


@needs_kernels
def test_decode_attention_follows_the_ring_mask() -> None:
    """A ring slot holding an empty (-1) or stale position is not attended to, as _attend's mask has it."""
    config = _config(8, 2, 16)
    attn = _attention(config, True, seed=3)
    g = torch.Generator().manual_seed(4)
    layer = _filled(config, True, 20, g)
    q = torch.randn(1, 8, 16, generator=g).to(torch.bfloat16)
    k, v = torch.randn(2, 2, 16, generator=g).to(torch.bfloat16)
    view = layer.update_one(k, v, 20)
    pos = view.pos.clone()
    idx = torch.arange(view.first, view.first + view.length) % pos.shape[0]
    pos[idx[2]], pos[idx[5]] = -1, int(pos[idx[5]]) - 12  # empty; an older position, outside the window
    with torch.no_grad():
        want = attn._attend(q[None], view.k[:, idx].transpose(0, 1)[None], view.v[:, idx].transpose(0, 1)[None],
                            torch.tensor([20]), pos[idx])[0, 0]
    got = decode_attention(q, [view._replace(pos=pos)], [20], attn.sinks, attn.sm_scale, attn.window)[0]
    torch.testing.assert_close(got.float(), want.float(), rtol=2**-6, atol=2e-3)
    # every key hidden: all weight on the sink, output 0
    hidden = view._replace(pos=torch.full_like(view.pos, -1))
    assert not decode_attention(q, [hidden], [20], attn.sinks, attn.sm_scale, attn.window).any()


@pytest.mark.parametrize("sliding", [False, True])
def test_update_one_stores_what_update_stores(sliding: bool) -> None:
    config = _config(8, 2, 16)
    g = torch.Generator().manual_seed(5)
    a, b = _layer(config, sliding, snapshot_every=5), _layer(config, sliding, snapshot_every=5)
    kv = torch.randn(2, 30, 2, 16, generator=g).to(torch.bfloat16)
    for p in range(30):
        a.update(kv[0, p : p + 1], kv[1, p : p + 1], p)
        view = b.update_one(kv[0, p], kv[1, p], p)
        assert b.length == a.length == p + 1
        assert view.first + view.length == p + 1
        assert view.length == (min(p + 1, config.sliding_window) if sliding else p + 1)
    assert torch.equal(a.k[:, : a.length], b.k[:, : b.length]) and torch.equal(a.v[:, : a.length], b.v[:, : b.length])
    if isinstance(a, RingLayer) and isinstance(b, RingLayer):
        assert torch.equal(a.pos, b.pos)
        assert a.snapshots.keys() == b.snapshots.keys() == {5, 10, 15, 20, 25, 30}
        for m, snap in a.snapshots.items():
            assert all(torch.equal(x, y) for x, y in zip(snap, b.snapshots[m], strict=True))
        b.truncate(27)  # rollback still exact after one-token writes
        assert b.length == 27 and int(b.pos.max()) == 26
    with pytest.raises(ValueError, match="got new keys at"):
        b.update_one(kv[0, 0], kv[1, 0], 3)


@needs_kernels
@pytest.mark.parametrize(("max_batch", "prefill_tokens"), [(8, 64), (3, 5)])
def test_bf16_batched_decode_equals_each_alone(
    ckpt_mxfp4: Path, max_batch: int, prefill_tokens: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bf16 model on the native path: the batch engine's decode steps (one kernel call per layer for all
    sequences) give each sequence the greedy tokens Engine.generate gives it alone (one call per token)."""
    engine = Engine.from_pretrained(ckpt_mxfp4, device="cpu", chunk_size=8, snapshot_every=8)
    assert all(block.attn.native_decode for block in engine.model.blocks)  # type: ignore[union-attr]
    calls: list[int] = []
    real = native_attention.decode_attention

    def spy(q: torch.Tensor, *args: Any) -> torch.Tensor:
        calls.append(q.shape[0])
        return real(q, *args)

    monkeypatch.setattr(native_attention, "decode_attention", spy)
    g = torch.Generator().manual_seed(9)
    prompts = [torch.randint(0, 300, (n,), generator=g).tolist() for n in (5, 13, 21, 30, 9)]
    params = SamplingParams(max_tokens=20, temperature=0)
    want = [list(engine.generate(p, params)) for p in prompts]
    assert calls and max(calls) == 1
    calls.clear()
    batch = BatchEngine(engine, kv_memory=1 << 30, max_batch=max_batch, prefill_tokens=prefill_tokens)
    assert batch.run([batch.generate(p, params) for p in prompts]) == want
    assert max(calls) == min(max_batch, len(prompts))  # several sequences' decode steps in one call


@needs_kernels
def test_decode_attention_same_bits_on_any_thread_count() -> None:
    """Each (sequence, KV head) is one task computed alone: the thread count cannot change a bit."""
    config = _config(16, 4, 64)
    attn = _attention(config, False, seed=6)
    g = torch.Generator().manual_seed(6)
    lengths = [3, 50, 200]
    layers = [_filled(config, False, n, g) for n in lengths]
    q = torch.randn(3, 16, 64, generator=g).to(torch.bfloat16)
    k, v = torch.randn(2, 3, 4, 64, generator=g).to(torch.bfloat16)
    views = [la.update_one(k[i], v[i], la.length) for i, la in enumerate(layers)]
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outs.append(decode_attention(q, views, lengths, attn.sinks, attn.sm_scale, attn.window))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(o, outs[0]) for o in outs)
