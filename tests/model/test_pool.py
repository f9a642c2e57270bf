"""The cache pool: conversations keep their caches when interleaved, a shared prefix is computed once, eviction
under a memory budget recomputes and still gives the same tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ossagent.model.batch import BatchEngine
from ossagent.model.engine import Engine, SamplingParams

GREEDY = SamplingParams(max_tokens=6, temperature=0)


@pytest.fixture(scope="module")
def engine(ckpt_mxfp4: Path) -> Engine:
    return Engine.from_pretrained(ckpt_mxfp4, device="cpu", dtype=torch.float32, chunk_size=8, snapshot_every=8)


def seq(n: int, seed: int) -> list[int]:
    return torch.randint(0, 300, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def one(batch: BatchEngine, prompt: list[int]) -> list[int]:
    stream = batch.generate(prompt, GREEDY)
    return batch.run([stream])[0]


def ref(engine: Engine, prompt: list[int]) -> list[int]:
    return list(engine.generate(prompt, GREEDY))  # the single-sequence engine


def test_interleaved_conversations_keep_their_caches(engine: Engine) -> None:
    system = seq(12, 0)  # shared by both conversations
    batch = BatchEngine(engine, kv_memory=1 << 30)
    a1, b1 = [*system, *seq(7, 1)], [*system, *seq(9, 2)]
    out_a1 = one(batch, a1)
    out_b1 = one(batch, b1)
    assert batch.cache_stats.history == [(0, 19), (12, 9)]  # B found the system prompt in A's cache
    assert batch.cache_stats.forks == 1  # copied it: A keeps its own cache
    a2, b2 = [*a1, *out_a1, *seq(4, 3)], [*b1, *out_b1, *seq(5, 4)]
    out_a2 = one(batch, a2)
    out_b2 = one(batch, b2)
    # each next turn computes only its new tokens (and the last sampled token, never fed)
    assert batch.cache_stats.history[2:] == [(len(a2) - 5, 5), (len(b2) - 6, 6)]
    assert batch.cache_stats.total_computed == 19 + 9 + 5 + 6
    assert batch.cache_stats.hits == 3 and batch.cache_stats.hit_rate == 0.75
    assert len(batch.pool.entries) == 2
    engine.reset()
    assert [out_a1, out_b1, out_a2, out_b2] == [ref(engine, p) for p in (a1, b1, a2, b2)]
    # the single-sequence engine, by contrast, recomputes each turn but the system prompt when they alternate
    assert engine.cache_stats.history[-4:] == [(0, 19), (12, 9), (12, len(a2) - 12), (12, len(b2) - 12)]


def test_pool_under_memory_pressure_evicts_and_recomputes(engine: Engine) -> None:
    entry_bytes = engine.new_cache().nbytes()  # the rings dominate at this size
    batch = BatchEngine(engine, kv_memory=int(2.5 * entry_bytes), max_batch=2)
    convs = [seq(10 + i, 10 + i) for i in range(3)]
    outs = [one(batch, p) for p in convs]  # the third evicts the first (least recently used)
    assert batch.cache_stats.evictions == 1 and len(batch.pool.entries) == 2
    assert batch.pool.nbytes() <= batch.pool.budget
    turn2 = [[*p, *o, *seq(3, 20 + i)] for i, (p, o) in enumerate(zip(convs, outs, strict=True))]
    got = [one(batch, turn2[0]), one(batch, turn2[2])]
    # conversation 0 was evicted: computed from scratch; conversation 2 was kept: only its new tail
    assert batch.cache_stats.history[-2:] == [(0, len(turn2[0])), (len(turn2[2]) - 4, 4)]
    assert got == [ref(engine, turn2[0]), ref(engine, turn2[2])]
    assert batch.cache_stats.evictions == 2  # conversation 1 (now the least recent) made room
    # busy entries are never evicted, even when they alone exceed the budget
    tight = BatchEngine(engine, kv_memory=0, max_batch=3)
    streams = [tight.generate(p, GREEDY) for p in convs]
    assert tight.run(streams) == outs
    assert tight.pool.entries == [] and tight.cache_stats.evictions == 3


def test_edited_history_forks_with_exact_sliding_window_rollback(ckpt_mxfp4: Path) -> None:
    """A prompt that drops the end of a cached conversation copies its prefix: exactly when the rings still
    hold the window before the cut, from the latest snapshot when the cut is deeper."""
    for rollback, want_reused in ((2048, 20), (0, 16)):
        engine = Engine.from_pretrained(ckpt_mxfp4, device="cpu", dtype=torch.float32, chunk_size=8,
                                        snapshot_every=8, rollback=rollback)
        batch = BatchEngine(engine, kv_memory=1 << 30)
        first = seq(30, 5)
        one(batch, first)
        edited = [*first[:20], *[(t + 1) % 300 for t in first[20:26]]]  # the entry holds 35 tokens: 15 dropped
        assert one(batch, edited) == ref(engine, edited)
        assert batch.cache_stats.history[-1] == (want_reused, len(edited) - want_reused)
        assert batch.cache_stats.forks == 1
        # the original conversation is intact and continues from its own cache
        again = [*first, *seq(2, 7)]
        assert one(batch, again) == ref(engine, again)
        assert batch.cache_stats.history[-1][0] >= 30


def test_requests_arriving_together_compute_their_shared_prefix_once(engine: Engine) -> None:
    system = seq(21, 30)  # longer than one prefill step (8), so the others arrive while it is computed
    prompts = [[*system, *seq(3 + i, 31 + i)] for i in range(4)]
    batch = BatchEngine(engine, kv_memory=1 << 30, prefill_tokens=8)
    streams = [batch.generate(p, GREEDY) for p in prompts]
    got = batch.run(streams)
    assert [s.reused for s in streams] == [0, 21, 21, 21]
    assert batch.cache_stats.total_computed == 21 + sum(3 + i for i in range(4))
    assert batch.cache_stats.forks == 3
    engine.reset()
    assert got == [ref(engine, p) for p in prompts]


def test_admission_holds_every_active_sequence_at_its_full_length_within_the_budget(engine: Engine) -> None:
    """Requests wait for memory rather than overrun it: admitted only while the active ones, each counted at its
    prompt plus max_tokens, fit the KV budget (one always runs); the tokens are those of each run alone."""
    prompts = [seq(10 + i, 40 + i) for i in range(3)]
    need = [engine.kv_bytes(len(p) + GREEDY.max_tokens) for p in prompts]
    assert need[2] - need[0] == 2 * 2 * engine.model.config.num_key_value_heads * engine.model.config.head_dim * 4 * sum(
        not engine.model.config.is_sliding(i) for i in range(engine.model.config.num_hidden_layers))
    for budget, most in ((sum(need), 3), (need[0] + need[1], 2), (max(need) - 1, 1)):
        batch = BatchEngine(engine, kv_memory=budget, max_batch=3)
        streams = [batch.generate(p, GREEDY) for p in prompts]
        seen = 0
        while batch.step():
            seen = max(seen, len(batch._active))
            assert batch.pool.reserved <= budget or len(batch._active) == 1
        assert seen == most
        assert [s._seq.generated for s in streams] == [ref(engine, p) for p in prompts]
        assert batch.pool.reserved == 0


def test_planned_bytes_equal_a_filled_cache(engine: Engine) -> None:
    """The admission estimate is what a cache of that length really takes (rings, snapshots, full layers)."""
    cache = engine.new_cache()
    prompt = seq(37, 3)  # past several snapshots (every 8)
    for i in range(0, len(prompt), 8):
        engine.model(torch.tensor([prompt[i : i + 8]]), cache)
    full = [layer for layer in cache.layers if not engine.model.config.is_sliding(cache.layers.index(layer))]
    headroom = sum(layer.nbytes() - 2 * layer.length * layer.k[:, 0].numel() * layer.k.element_size() for layer in full)
    assert cache.nbytes() - headroom == engine.kv_bytes(len(prompt))
