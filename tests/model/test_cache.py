"""Cached decoding equals full recomputation: across the sliding window, in chunks, after cuts and re-extension.

Float32 throughout, so "equal" means within 1e-4 (different matmul shapes round differently) and the same
greedy token at every position.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ossagent.model.cache import CacheStats, KVCache
from ossagent.model.config import GptOssConfig
from ossagent.model.engine import Engine, SamplingParams
from ossagent.model.gpt_oss import GptOss
from ossagent.model.loader import load_model

ATOL = 1e-4


@pytest.fixture(scope="module")
def model(ckpt_mxfp4: Path) -> GptOss:
    return load_model(ckpt_mxfp4, dtype=torch.float32)


def seq(n: int, seed: int = 0, vocab: int = 300) -> list[int]:
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def full_logits(model: GptOss, tokens: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor(tokens))


def feed(model: GptOss, cache: KVCache, tokens: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor(tokens), cache)


@pytest.mark.parametrize("chunks", [[1] * 40, [8, 8, 8, 8, 8], [3, 5, 1, 7, 8, 2, 6, 8]])
def test_chunked_cache_equals_full(model: GptOss, config: GptOssConfig, chunks: list[int]) -> None:
    tokens = seq(sum(chunks))
    ref = full_logits(model, tokens)
    cache = KVCache(config, max_chunk=8, rollback=0, snapshot_every=16, dtype=torch.float32)
    got, at = [], 0
    for c in chunks:
        got.append(feed(model, cache, tokens[at : at + c]))
        at += c
    logits = torch.cat(got)
    assert cache.length == 40 > 4 * config.sliding_window
    assert (logits - ref).abs().max() < ATOL
    assert torch.equal(logits.argmax(-1), ref.argmax(-1))
    ring = cache.layers[0]
    assert ring.k.shape[1] == config.sliding_window + 8  # a ring, not every position
    assert cache.layers[1].length == 40


def test_chunk_larger_than_ring_is_refused(model: GptOss, config: GptOssConfig) -> None:
    cache = KVCache(config, max_chunk=4, dtype=torch.float32)
    with pytest.raises(ValueError, match="max_chunk"):
        feed(model, cache, seq(5))


@pytest.mark.parametrize(
    ("cut", "rollback", "snapshot_every", "kept"),
    [
        (35, 0, 1000, 35),  # within max_chunk of the end: the ring still holds the window before 35
        (33, 0, 1000, 33),
        (20, 0, 8, 16),  # deeper: back to the snapshot at 16, the caller re-feeds 16..19
        (20, 0, 1000, 0),  # no snapshot: start over
        (16, 0, 8, 16),
        (17, 24, 1000, 17),  # a ring with rollback room cuts deep exactly (40 - 24 <= 17)
        (15, 24, 8, 8),  # one past its reach: snapshot
        (3, 32, 1000, 3),
    ],
)
@pytest.mark.parametrize("fork", [False, True])
def test_truncate_and_extend_equals_full(
    model: GptOss, config: GptOssConfig, cut: int, rollback: int, snapshot_every: int, kept: int, fork: bool
) -> None:
    """Cutting back in place, or forking a copy of the prefix (the pool's way to share it): same positions kept."""
    first = seq(40, seed=1)
    original = KVCache(config, max_chunk=8, rollback=rollback, snapshot_every=snapshot_every, dtype=torch.float32)
    for a in range(0, 40, 8):
        feed(model, original, first[a : a + 8])
    cache = original.fork(cut) if fork else original
    if not fork:
        assert cache.truncate(cut) == kept
    assert cache.length == kept
    second = first[:cut] + seq(17, seed=2)  # diverges at `cut`, crosses the window again
    got = [feed(model, cache, second[a : min(a + 8, len(second))]) for a in range(kept, len(second), 8)]
    ref = full_logits(model, second)[kept:]
    logits = torch.cat(got)
    assert (logits - ref).abs().max() < ATOL
    assert torch.equal(logits.argmax(-1), ref.argmax(-1))
    if fork:  # the original goes on as if never forked
        assert original.length == 40
        more = first + seq(9, seed=3)
        got = [feed(model, original, more[40:48]), feed(model, original, more[48:])]
        assert (torch.cat(got) - full_logits(model, more)[40:]).abs().max() < ATOL


def test_packed_forward_equals_one_sequence_at_a_time(model: GptOss, config: GptOssConfig) -> None:
    """Several sequences at different lengths (across the window), prompt chunks and single tokens mixed."""
    seqs = [seq(n, seed=10 + n) for n in (3, 11, 19, 30)]
    caches = [KVCache(config, max_chunk=8, dtype=torch.float32) for _ in seqs]
    at = [0] * len(seqs)
    for step in range(12):
        rows = [i for i, s in enumerate(seqs) if at[i] < len(s)]
        if not rows:
            break
        chunks = [seqs[i][at[i] : at[i] + (1 if (step + i) % 3 else 8)] for i in rows]
        logits = model.forward_packed(chunks, [caches[i] for i in rows])
        for i, chunk, row in zip(rows, chunks, logits, strict=True):
            at[i] += len(chunk)
            want = full_logits(model, seqs[i][: at[i]])[-1]
            assert (row - want).abs().max() < ATOL
    assert at == [3, 11, 19, 30] and [c.length for c in caches] == at
    with pytest.raises(ValueError, match="same cache twice"):
        model.forward_packed([[1], [2]], [caches[0], caches[0]])


def test_engine_greedy_decode_equals_recomputation(ckpt_mxfp4: Path) -> None:
    engine = Engine.from_pretrained(ckpt_mxfp4, device="cpu", dtype=torch.float32, chunk_size=8, snapshot_every=8)
    prompt = seq(13, seed=3)
    out = list(engine.generate(prompt, SamplingParams(max_tokens=30, temperature=0)))
    assert len(out) == 30
    ref = engine.logits(prompt + out)[len(prompt) - 1 : -1].argmax(-1).tolist()
    assert out == ref  # token for token, crossing the window (8) several times


def test_engine_reuses_longest_common_prefix(ckpt_mxfp4: Path) -> None:
    engine = Engine.from_pretrained(ckpt_mxfp4, device="cpu", dtype=torch.float32, chunk_size=8, rollback=0,
                                    snapshot_every=8)
    greedy = SamplingParams(max_tokens=6, temperature=0)
    prompt = seq(20, seed=4)
    out = list(engine.generate(prompt, greedy))
    assert engine.cache_stats.reused_tokens == 0 and engine.cache_stats.computed_tokens == 20
    # the next turn sends the whole conversation again: only the new tail is computed
    turn2 = [*prompt, *out, *seq(5, seed=5)]
    out2 = list(engine.generate(turn2, greedy))
    assert engine.cache_stats.reused_tokens == 20 + 6 - 1  # the last sampled token was never fed
    assert engine.cache_stats.computed_tokens == 6
    assert out2 == engine.logits(turn2 + out2)[len(turn2) - 1 : -1].argmax(-1).tolist()
    # a conversation that drops the end of the previous one (edited history): cut back, then extend
    turn3 = [*prompt[:18], *seq(4, seed=6)]
    out3 = list(engine.generate(turn3, greedy))
    assert engine.cache_stats.reused_tokens == 16  # the snapshot at 16 (cut was deeper than the ring reaches)
    assert out3 == engine.logits(turn3 + out3)[len(turn3) - 1 : -1].argmax(-1).tolist()
    # the same prompt twice: everything but the last token is reused
    list(engine.generate(turn3, greedy))
    assert engine.cache_stats.reused_tokens == len(turn3) - 1
    assert engine.cache_stats.total_computed == 20 + 6 + (len(turn3) - 16) + 1
    # with the default rollback room the same edit reuses the whole common prefix
    roomy = Engine.from_pretrained(ckpt_mxfp4, device="cpu", dtype=torch.float32, chunk_size=8)
    list(roomy.generate(turn2, greedy))
    assert list(roomy.generate(turn3, greedy)) == out3
    assert roomy.cache_stats.reused_tokens == 18


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_same_code_path(ckpt_mxfp4: Path) -> None:
    cpu = Engine.from_pretrained(ckpt_mxfp4, device="cpu", dtype=torch.float32, chunk_size=8)
    gpu = Engine.from_pretrained(ckpt_mxfp4, device="cuda", dtype=torch.float32, chunk_size=8)
    prompt = seq(13, seed=9)
    assert (gpu.logits(prompt).cpu() - cpu.logits(prompt)).abs().max() < 1e-3
    greedy = SamplingParams(max_tokens=20, temperature=0)
    out = list(gpu.generate(prompt, greedy))
    assert out == gpu.logits(prompt + out)[len(prompt) - 1 : -1].argmax(-1).tolist()


def test_query_blocks_equal_one_block(model: GptOss, config: GptOssConfig) -> None:
    """Long contexts attend in query blocks (bounded memory); the result does not depend on the block size."""
    tokens = seq(40, seed=11)
    ref = full_logits(model, tokens)
    try:
        for block in model.blocks:
            block.attn.block_elements = 3 * config.num_attention_heads * 40  # 3 queries per block
        got = full_logits(model, tokens)
    finally:
        for block in model.blocks:
            block.attn.block_elements = 1 << 24
    assert (got - ref).abs().max() < ATOL


def test_cache_stats_remember_only_the_latest_requests() -> None:
    stats = CacheStats()
    for i in range(CacheStats.HISTORY + 10):
        stats.count(i, 1)
    assert len(stats.history) == CacheStats.HISTORY and stats.history[0] == (10, 1)
    assert stats.total_computed == CacheStats.HISTORY + 10 and stats.reused_tokens == CacheStats.HISTORY + 9
