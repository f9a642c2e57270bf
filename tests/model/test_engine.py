"""Engine sampling, stop tokens, max tokens, and the step hook (mask, forced tokens, stop)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from ossagent.model.engine import Engine, SamplingParams, sample
from ossagent.model.hooks import StepAction

GREEDY = SamplingParams(max_tokens=8, temperature=0)


@pytest.fixture(scope="module")
def engine(ckpt_mxfp4: Path) -> Engine:
    return Engine.from_pretrained(ckpt_mxfp4, device="cpu", dtype=torch.float32, chunk_size=8, snapshot_every=8)


PROMPT = [5, 17, 42, 99, 3, 250, 7, 8, 11, 12]


def greedy_ref(engine: Engine, prompt: list[int], n: int) -> list[int]:
    seqn = list(prompt)
    for _ in range(n):
        seqn.append(int(engine.logits(seqn)[-1].argmax()))
    return seqn[len(prompt) :]


def test_greedy_and_max_tokens(engine: Engine) -> None:
    out = list(engine.generate(PROMPT, GREEDY))
    assert out == greedy_ref(engine, PROMPT, 8)


def test_stop_token_is_yielded_last(engine: Engine) -> None:
    ref = greedy_ref(engine, PROMPT, 8)
    stop = ref[3]
    out = list(engine.generate(PROMPT, SamplingParams(max_tokens=8, temperature=0, stop_tokens=[stop])))
    assert out == ref[: ref.index(stop) + 1]


def test_seeded_sampling_is_reproducible(engine: Engine) -> None:
    p = SamplingParams(max_tokens=12, temperature=1.0, seed=7)
    a = list(engine.generate(PROMPT, p))
    b = list(engine.generate(PROMPT, p))
    c = list(engine.generate(PROMPT, SamplingParams(max_tokens=12, temperature=1.0, seed=8)))
    assert a == b
    assert a != c


def test_sample_filters() -> None:
    logits = torch.tensor([0.0, 3.0, 2.9, 1.0, -1.0])
    g = torch.Generator().manual_seed(0)
    assert sample(logits, SamplingParams(temperature=0), None) == 1
    draws = {sample(logits, SamplingParams(temperature=1.0, top_k=2), g) for _ in range(200)}
    assert draws == {1, 2}
    draws = {sample(logits, SamplingParams(temperature=1.0, top_p=0.01), g) for _ in range(50)}
    assert draws == {1}  # the smallest set reaching top_p is the best token alone
    draws = {sample(logits, SamplingParams(temperature=1.0, top_p=0.6), g) for _ in range(200)}
    assert draws == {1, 2}  # p(1) ~ 0.47 < 0.6, so the second joins; p(1)+p(2) ~ 0.9
    draws = {sample(logits, SamplingParams(temperature=5.0), g) for _ in range(400)}
    assert draws == {0, 1, 2, 3, 4}
    mask = torch.tensor([True, False, False, True, False])
    assert sample(logits, SamplingParams(temperature=0), None, mask) == 3
    assert sample(logits, SamplingParams(temperature=0), None, ~mask) == 1  # the best token is allowed
    ties = torch.tensor([1.0, 5.0, 5.0, 5.0])
    for allow in ([True] * 4, [True, False, True, True], [True, False, False, True]):
        allowed = torch.tensor(allow)
        want = int(torch.argmax(ties.masked_fill(~allowed, float("-inf"))))
        assert sample(ties, SamplingParams(temperature=0), None, allowed) == want  # first allowed maximum
    with pytest.raises(ValueError, match="allows no token"):
        sample(logits, SamplingParams(temperature=0), None, torch.zeros(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0).validate()


class MaskHook:
    """Allows only even token ids."""

    def __init__(self, vocab: int) -> None:
        self.mask = torch.zeros(vocab + 1, dtype=torch.bool)  # one id longer than the model: ignored
        self.mask[0::2] = True
        self.calls = 0

    def step(self, generated: Sequence[int]) -> StepAction:
        self.calls += 1
        return StepAction(mask=self.mask)


def test_hook_mask(engine: Engine) -> None:
    hook = MaskHook(engine.model.config.vocab_size)
    out = list(engine.generate(PROMPT, SamplingParams(max_tokens=10, temperature=1.0, seed=1), hook))
    assert len(out) == 10 and all(t % 2 == 0 for t in out)
    assert hook.calls == 10
    # greedy under the mask = argmax over allowed ids of the full recomputation
    out = list(engine.generate(PROMPT, SamplingParams(max_tokens=4, temperature=0), hook))
    seqn = list(PROMPT)
    for t in out:
        logits = engine.logits(seqn)[-1]
        logits[1::2] = float("-inf")
        assert t == int(logits.argmax())
        seqn.append(t)


class ForceHook:
    """Forces [200 % vocab, 201, 202] after the first sampled token, then lets the model go, then stops."""

    def __init__(self) -> None:
        self.seen: list[list[int]] = []

    def step(self, generated: Sequence[int]) -> StepAction:
        self.seen.append(list(generated))
        if len(generated) == 1:
            return StepAction(forced=[200, 201, 202])
        if len(generated) >= 6:
            return StepAction(stop=True)
        return StepAction()


def test_hook_forced_tokens_and_stop(engine: Engine) -> None:
    hook = ForceHook()
    fed_before = engine.cache_stats.total_computed
    out = list(engine.generate(PROMPT, GREEDY, hook))
    assert out[1:4] == [200, 201, 202]
    assert len(out) == 6  # the hook stopped it
    assert [len(g) for g in hook.seen] == [0, 1, 4, 5, 6]  # called again right after the forced chunk
    # every free token is the greedy continuation of everything before it, forced tokens included
    for i in (0, 4, 5):
        assert out[i] == int(engine.logits(PROMPT + out[:i])[-1].argmax())
    assert engine.cache_stats.total_computed > fed_before


def test_forced_tokens_respect_stop_and_max_tokens(engine: Engine) -> None:
    class Force:
        def step(self, generated: Sequence[int]) -> StepAction:
            return StepAction(forced=[1, 2, 3, 4, 5])

    out = list(engine.generate(PROMPT, SamplingParams(max_tokens=3, temperature=0), Force()))
    assert out == [1, 2, 3]
    out = list(engine.generate(PROMPT, SamplingParams(max_tokens=9, temperature=0, stop_tokens=[4]), Force()))
    assert out == [1, 2, 3, 4]


def test_bad_prompts(engine: Engine) -> None:
    with pytest.raises(ValueError, match="empty"):
        list(engine.generate([], GREEDY))
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        list(engine.generate([1, 10_000], GREEDY))


def test_second_generation_invalidates_first(engine: Engine) -> None:
    first = engine.generate(PROMPT, GREEDY)
    next(first)
    list(engine.generate(PROMPT[:5], GREEDY))
    with pytest.raises(RuntimeError, match="another generate"):
        list(first)
