"""Batched decoding gives each sequence exactly the tokens it gets alone; streams from threads; errors and close.

Float32 tiny model: packed and single forwards differ only in the order of fp32 additions (1e-6), far below
any gap between the best two logits here, so tokens must match exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from ossagent.model.batch import BatchEngine
from ossagent.model.cache import KVCache
from ossagent.model.engine import Engine, SamplingParams
from ossagent.model.hooks import StepAction


@pytest.fixture(scope="module")
def engine(ckpt_mxfp4: Path) -> Engine:
    return Engine.from_pretrained(ckpt_mxfp4, device="cpu", dtype=torch.float32, chunk_size=8, snapshot_every=8)


def seq(n: int, seed: int) -> list[int]:
    return torch.randint(0, 300, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


class EvenHook:
    """Only even ids; after the third token forces [200, 201], then stops after nine."""

    def __init__(self) -> None:
        self.mask = torch.zeros(300, dtype=torch.bool)
        self.mask[0::2] = True

    def step(self, generated: Sequence[int]) -> StepAction:
        if len(generated) >= 9:
            return StepAction(stop=True)
        if len(generated) == 3:
            return StepAction(forced=[200, 201])
        return StepAction(mask=self.mask)


CASES = [  # prompt length, sampling, constrained
    (5, SamplingParams(max_tokens=20, temperature=0), False),
    (13, SamplingParams(max_tokens=15, temperature=1.0, seed=3), False),
    (21, SamplingParams(max_tokens=25, temperature=0.7, top_k=20, top_p=0.9, seed=4), False),
    (30, SamplingParams(max_tokens=30, temperature=0), True),
    (9, SamplingParams(max_tokens=40, temperature=0, stop_tokens=[7, 8, 9, 10, 11, 12]), False),
]


def alone(engine: Engine) -> list[list[int]]:
    return [list(engine.generate(seq(n, i), p, EvenHook() if c else None)) for i, (n, p, c) in enumerate(CASES)]


@pytest.mark.parametrize(("max_batch", "prefill_tokens"), [(8, 64), (3, 8), (2, 5)])
def test_batched_equals_each_alone(engine: Engine, max_batch: int, prefill_tokens: int) -> None:
    want = alone(engine)
    batch = BatchEngine(engine, kv_memory=1 << 30, max_batch=max_batch, prefill_tokens=prefill_tokens)
    sizes: list[tuple[int, int]] = []  # (sequences, tokens) per forward
    real = engine.model.forward_packed

    def spy(chunks: Sequence[Sequence[int]], caches: Sequence[KVCache]) -> torch.Tensor:
        sizes.append((len(chunks), sum(map(len, chunks))))
        return real(chunks, caches)

    engine.model.forward_packed = spy  # type: ignore[method-assign]
    try:
        streams = [batch.generate(seq(n, i), p, EvenHook() if c else None) for i, (n, p, c) in enumerate(CASES)]
        got = batch.run(streams)
    finally:
        del engine.model.forward_packed
    assert got == want
    assert got[3][3:5] == [200, 201] and all(t % 2 == 0 for t in got[3][:3] + got[3][5:])
    assert len(got[3]) == 9 and got[4][-1] in range(7, 13)  # the hook's stop and a stop token ended them
    assert max(b for b, _ in sizes) == min(max_batch, len(CASES))  # sequences really shared forwards
    assert len(sizes) < sum(map(len, got)) + 8  # about one forward per token of the longest, not of all
    assert all(t <= prefill_tokens + max_batch * 8 for _, t in sizes)  # prompt chunks stay within the budget
    assert [s.reused for s in streams] == [0] * len(CASES)


def test_streams_from_threads_and_close(engine: Engine) -> None:
    want = alone(engine)
    batch = BatchEngine(engine, kv_memory=1 << 30, max_batch=4, max_ahead=2)
    got: dict[int, list[int]] = {}

    def consume(i: int) -> None:
        n, p, c = CASES[i]
        got[i] = list(batch.generate(seq(n, i), p, EvenHook() if c else None))

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(len(CASES))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [got[i] for i in range(len(CASES))] == want
    # a reader that stops early and closes frees its sequence at once; the pool keeps its cache
    stream = batch.generate(seq(5, 0), CASES[0][1])
    first = [next(stream), next(stream)]
    stream.close()
    assert first == want[0][:2] and list(stream) == []
    assert batch.active == 0 and not any(e.busy for e in batch.pool.entries)
    # one dropped without close() leaves at the next step too
    dropped = batch.generate(seq(5, 0), CASES[0][1])
    next(dropped)
    del dropped
    batch.step()
    assert batch.active == 0 and not any(e.busy for e in batch.pool.entries)


def test_failing_hook_fails_its_stream_only(engine: Engine) -> None:
    class Broken:
        def step(self, generated: Sequence[int]) -> StepAction:
            if len(generated) == 2:
                raise RuntimeError("grammar broke")
            return StepAction()

    batch = BatchEngine(engine, kv_memory=1 << 30)
    good = batch.generate(seq(5, 0), CASES[0][1])
    bad = batch.generate(seq(13, 1), SamplingParams(max_tokens=10, temperature=0), Broken())
    assert next(bad) is not None and next(bad) is not None
    with pytest.raises(RuntimeError, match="grammar broke"):
        next(bad)
    assert list(good) == alone(engine)[0]
    with pytest.raises(ValueError, match="empty"):
        batch.generate([], CASES[0][1])
    with pytest.raises(ValueError, match="max_tokens"):
        batch.generate([1], SamplingParams(max_tokens=0))


def test_context_limit_fails_that_stream(ckpt_mxfp4: Path) -> None:
    small = Engine.from_pretrained(ckpt_mxfp4, device="cpu", dtype=torch.float32, chunk_size=8, max_len=24)
    batch = BatchEngine(small, kv_memory=1 << 30)
    long = batch.generate(seq(20, 0), SamplingParams(max_tokens=10, temperature=0))
    short = batch.generate(seq(4, 1), SamplingParams(max_tokens=10, temperature=0))
    with pytest.raises(ValueError, match="max_len 24"):
        list(long)
    assert len(list(short)) == 10


def test_waiting_reader_sleeps_until_a_slot_frees(engine: Engine) -> None:
    """One slot, held by a stream whose reader stopped reading: the next reader waits without spinning and
    starts as soon as the first is closed."""
    batch = BatchEngine(engine, kv_memory=1 << 30, max_batch=1, max_ahead=2)
    first = batch.generate(seq(5, 0), CASES[0][1])
    next(first)
    second = batch.generate(seq(13, 1), CASES[0][1])
    got: list[int] = []
    reader = threading.Thread(target=lambda: got.append(next(second)))
    reader.start()
    reader.join(timeout=0.5)
    assert got == [] and batch.steps < 10  # a busy loop would have stepped thousands of times
    first.close()
    reader.join(timeout=30)
    assert got == list(engine.generate(seq(13, 1), SamplingParams(max_tokens=1, temperature=0)))
    second.close()
