"""The constrained hook inside the real engine: a random-weight tiny gpt-oss (full o200k_harmony vocabulary)
generates turns after a harmony prompt rendered by openai-harmony, with the hook's masks and forced tokens.

This is the representative subset of ``test_constrain.py``'s suite (which uses a random-logits stand-in for
speed): a few generations per ``tool_choice`` mode and one with a response format. A random model almost
never closes a JSON string by itself, so a thin wrapper narrows some masks to closing tokens (always a
subset of what the hook allows); the hook still checks every token the engine yields.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest
import torch

from ossagent.agent.constrain import TurnConstraints
from ossagent.agent.functions import Functions, ResponseFormat
from ossagent.agent.harmony.tokens import CALL, RETURN
from ossagent.model.hooks import StepAction

VOCAB = 201_088


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from ossagent.model.checkpoint_writer import write_checkpoint
    from ossagent.model.config import GptOssConfig
    from ossagent.model.engine import Engine

    cfg = GptOssConfig(num_hidden_layers=2, num_experts=4, experts_per_token=2, vocab_size=VOCAB, hidden_size=64,
                       intermediate_size=64, head_dim=16, num_attention_heads=4, num_key_value_heads=2,
                       sliding_window=8, initial_context_length=256, rope_scaling_factor=1.0)
    folder: Path = tmp_path_factory.mktemp("tiny-gpt-oss")
    # several shards, so the loader reads the safetensors index
    path = write_checkpoint(folder, cfg, seed=0, shard_bytes=1 << 24)
    return Engine.from_pretrained(path, device="cpu", dtype=torch.float32, max_len=2048)


class ClosingBias:
    """Wraps a hook; with probability ``p`` narrows a mask to the allowed closing tokens."""

    def __init__(self, inner: Any, closer: torch.Tensor, seed: int, p: float = 0.5) -> None:
        self.inner, self.closer, self.rng, self.p = inner, closer, random.Random(seed), p

    def step(self, generated: Sequence[int]) -> StepAction:
        action = self.inner.step(generated)
        if action.mask is not None and self.rng.random() < self.p:
            narrowed = action.mask[:VOCAB] & self.closer
            if bool(narrowed.any()):
                return StepAction(action.forced, narrowed, action.stop)
        return action


def _prompt(harmony_encoding: Any, functions: Functions, rf: ResponseFormat | None) -> list[int]:
    import openai_harmony as oh

    tools = [oh.ToolDescription.new(f.name, f.description, parameters=f.parameters) for f in functions]
    dev = oh.DeveloperContent.new().with_instructions("Use the tools to help the user.")
    if tools:
        dev = dev.with_function_tools(tools)
    convo = oh.Conversation.from_messages([
        oh.Message.from_role_and_content(oh.Role.SYSTEM, oh.SystemContent.new()),
        oh.Message.from_role_and_content(oh.Role.DEVELOPER, dev),
        oh.Message.from_role_and_content(oh.Role.USER, "Book me a flight to Lisbon and check the weather."),
    ])
    return list(harmony_encoding.render_conversation_for_completion(convo, oh.Role.ASSISTANT))


class Weather(pydantic.BaseModel):
    city: str = pydantic.Field(max_length=30)
    temperature_c: float = pydantic.Field(ge=-90, le=60)


CASES = [
    ("required", None), ({"type": "function", "name": "search_flights"}, None),
    ({"type": "function", "name": "create_order"}, None), ("auto", None), ("none", None), ("none", "format"),
]


@pytest.mark.slow
def test_tiny_engine_turns_satisfy_the_constraints(
    tiny_engine: Any, harmony_encoding: Any, enc: Any, suite_functions: Functions, closer_mask: torch.Tensor,
    parse_turn: Any,
) -> None:
    rf = ResponseFormat.from_model(Weather)
    results = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: threads only add overhead on a shared machine
    try:
        _run_cases(tiny_engine, harmony_encoding, enc, suite_functions, closer_mask, parse_turn, rf, results)
    finally:
        torch.set_num_threads(threads)
    forced = sum(f for _, f in results)
    assert forced > 0, results
    assert np.mean([m for m, _ in results]) > 0


def _run_cases(tiny_engine: Any, harmony_encoding: Any, enc: Any, suite_functions: Functions,
               closer_mask: torch.Tensor, parse_turn: Any, rf: ResponseFormat, results: list[Any]) -> None:
    from ossagent.model.engine import SamplingParams

    for i, (choice, fmt) in enumerate(CASES):
        constraints = TurnConstraints(suite_functions, encoding=enc, vocab_size=VOCAB, tool_choice=choice,
                                      response_format=rf if fmt else None, free_text_limit=3)
        prompt = _prompt(harmony_encoding, suite_functions, rf if fmt else None)
        hook = constraints.hook()
        params = SamplingParams(max_tokens=300, temperature=1.0, seed=i, stop_tokens=(RETURN, CALL))
        out = list(tiny_engine.generate(prompt, params, ClosingBias(hook, closer_mask[:VOCAB], seed=i)))
        messages = parse_turn(out)
        last = messages[-1]
        assert out[-1] in (RETURN, CALL), (choice, enc.decode(out[-40:]))
        if out[-1] == CALL:
            assert choice != "none" and not fmt
            call = suite_functions.parse_call(last.recipient, last.content[0].text)
            if isinstance(choice, dict):
                assert call.name == choice["name"]
        else:
            assert choice in ("auto", "none") and last.channel == "final" and last.recipient is None
            if fmt:
                assert isinstance(rf.parse(last.content[0].text), Weather)
        results.append((hook.stats.masks, hook.stats.forced_tokens))
