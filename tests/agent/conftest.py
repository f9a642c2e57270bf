"""Shared pieces for the constrained-decoding tests: a suite of realistic tool schemas, a seeded
random-logits sampler (biased toward closing tokens so random walks end), and a driver that runs a
:class:`StepHook` the way the engine does."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import torch

from ossagent.agent.constrain import TurnConstraints
from ossagent.agent.functions import Functions, FunctionTool
from ossagent.agent.harmony.tokens import CALL, END, RETURN
from ossagent.model.hooks import StepHook

VOCAB = 201_088  # gpt-oss's embedding rows (the tokenizer has one more reserved id)

TOOL_SCHEMAS: dict[str, dict[str, Any] | None] = {
    "get_weather": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "City, country", "maxLength": 40},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 14},
        },
        "required": ["location"],
    },
    "search_flights": {
        "type": "object",
        "properties": {
            "origin": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "destination": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "date": {"type": "string", "format": "date"},
            "passengers": {
                "type": "object",
                "properties": {
                    "adults": {"type": "integer", "minimum": 1, "maximum": 9},
                    "children": {"type": "integer", "minimum": 0, "maximum": 9},
                },
                "required": ["adults"],
            },
            "cabin": {"enum": ["economy", "premium", "business", "first"]},
            "max_price": {"type": "number", "exclusiveMinimum": 0, "maximum": 20000},
        },
        "required": ["origin", "destination", "date", "passengers"],
    },
    "send_email": {
        "type": "object",
        "properties": {
            "to": {"type": "array", "items": {"type": "string", "format": "email", "maxLength": 60},
                   "minItems": 1, "maxItems": 5},
            "subject": {"type": "string", "minLength": 1, "maxLength": 100},
            "body": {"type": "string"},
            "cc": {"type": ["array", "null"], "items": {"type": "string", "format": "email"}},
            "priority": {"enum": ["low", "normal", "high"]},
        },
        "required": ["to", "subject", "body"],
    },
    "create_order": {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "minItems": 1,
                "maxItems": 8,
                "items": {
                    "type": "object",
                    "properties": {
                        "sku": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{4}$"},
                        "quantity": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                    "required": ["sku", "quantity"],
                },
            },
            "shipping": {
                "oneOf": [
                    {"type": "object", "properties": {"method": {"const": "pickup"},
                                                      "store_id": {"type": "integer", "minimum": 1}},
                     "required": ["method", "store_id"]},
                    {"type": "object", "properties": {
                        "method": {"const": "delivery"},
                        "address": {"type": "object", "properties": {
                            "street": {"type": "string", "maxLength": 80},
                            "city": {"type": "string", "maxLength": 40},
                            "postcode": {"type": "string", "pattern": "^[0-9]{5}$"}},
                            "required": ["street", "city", "postcode"]}},
                     "required": ["method", "address"]},
                ]
            },
            "coupon": {"anyOf": [{"type": "string", "pattern": "^[A-Z0-9]{6,10}$"}, {"type": "null"}]},
        },
        "required": ["items", "shipping"],
    },
    "update_record": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "fields": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 50},
                    "age": {"type": "integer", "minimum": 0, "maximum": 150},
                    "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 5},
                    "score": {"type": "number", "minimum": -1, "maximum": 1},
                },
            },
            "dry_run": {"type": "boolean"},
        },
        "required": ["id", "fields"],
    },
    "configure_network": {
        "type": "object",
        "properties": {
            "ip": {"type": "string", "format": "ipv4"},
            "ipv6": {"type": "string", "format": "ipv6"},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "protocol": {"type": "string", "enum": ["tcp", "udp"]},
        },
        "required": ["ip", "port", "protocol"],
    },
    "run_query": {
        "type": "object",
        "properties": {
            "sql": {"type": "string", "maxLength": 200},
            "params": {"type": "array", "maxItems": 6,
                       "items": {"anyOf": [{"type": "string", "maxLength": 30}, {"type": "number"},
                                           {"type": "boolean"}, {"type": "null"}]}},
            "timeout_s": {"type": "number", "minimum": 0, "maximum": 60},
        },
        "required": ["sql"],
    },
    "current_time": None,
}


@pytest.fixture(scope="session")
def suite_functions() -> Functions:
    return Functions(FunctionTool.from_schema(name, schema, f"The {name} tool.")
                     for name, schema in TOOL_SCHEMAS.items())


@pytest.fixture(scope="session")
def closer_mask(enc: Any) -> torch.Tensor:
    """Tokens that can close a JSON value or a message: quotes, brackets, commas, and every special token."""
    closer = np.zeros(VOCAB, dtype=bool)
    for i in range(199_998):
        b = enc.decode_single_token_bytes(i)
        if b"}" in b or b"]" in b or b'"' in b or b"," in b:
            closer[i] = True
    closer[199_998:] = True
    return torch.from_numpy(closer)


class RandomLogits:
    """A seeded stand-in for a random-weight model: uniform random logits plus a bias on ``closer``.

    Sampling is the argmax of (random logits + bias) over the allowed tokens, done cheaply: with
    probability ``p_close`` among allowed closing tokens, else by rejection from uniform ids. In a free
    state (mask None) it picks ``<|end|>`` with probability ``p_end``, else any token below the specials.
    """

    def __init__(self, seed: int, closer: torch.Tensor, p_close: float = 0.45, p_end: float = 0.2,
                 stop: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.closer = closer
        self.closer_np = closer.numpy()[:VOCAB]
        self.closer_ids = np.flatnonzero(self.closer_np[:199_998]).tolist()
        self.p_close = p_close
        self.p_end = p_end
        self.stop = stop  # in free mode, the token ending an unconstrained body (constraints-off runs)

    def __call__(self, mask: torch.Tensor | None) -> int:
        rng = self.rng
        if mask is None or bool(mask[:199_998].all()):  # free text (at most markup and wrong stops masked)
            if rng.random() < self.p_end:
                ends = [t for t in (self.stop, END, RETURN, CALL) if t is not None and (mask is None or mask[t])]
                return ends[0]
            if rng.random() < self.p_close:
                return int(rng.choice(self.closer_ids))  # JSON-looking punctuation
            return rng.randrange(199_998)
        allowed = mask.numpy()[:VOCAB]  # numpy: fast element access and flatnonzero
        if rng.random() < self.p_close:
            idx = np.flatnonzero(allowed & self.closer_np)
            if len(idx):
                return int(idx[rng.randrange(len(idx))])
        for _ in range(48):
            t = rng.randrange(VOCAB)
            if allowed[t]:
                return t
        idx = np.flatnonzero(allowed)
        assert len(idx), "the hook's mask allows nothing"
        return int(idx[rng.randrange(len(idx))])


def drive(hook: StepHook | None, sample: Callable[[torch.Tensor | None], int], max_tokens: int = 400,
          stops: Sequence[int] = (RETURN, CALL)) -> list[int]:
    """Run a hook the way the engine does: forced tokens appended unsampled, masks applied, stop on stops."""
    out: list[int] = []
    while len(out) < max_tokens:
        mask = None
        if hook is not None:
            action = hook.step(out)
            if action.stop:
                break
            if action.forced:
                out += action.forced
                if out[-1] in stops:
                    break
                continue
            mask = action.mask
        tok = sample(mask)
        if mask is not None:
            assert bool(mask[tok]), "the sampler broke the mask"
        out.append(tok)
        if tok in stops:
            break
    return out


@pytest.fixture(scope="session")
def make_constraints(enc: Any, suite_functions: Functions) -> Callable[..., TurnConstraints]:
    cache: dict[Any, TurnConstraints] = {}

    def make(tool_choice: Any = "auto", functions: Functions | None = None, **kw: Any) -> TurnConstraints:
        key = (repr(tool_choice), id(functions), repr(sorted(kw.items(), key=lambda x: x[0])))
        if key not in cache:
            kw.setdefault("free_text_limit", 6)
            cache[key] = TurnConstraints(functions if functions is not None else suite_functions, encoding=enc,
                                         vocab_size=VOCAB, tool_choice=tool_choice, **kw)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def parse_turn(harmony_encoding: Any) -> Callable[[Sequence[int]], list[Any]]:
    """openai-harmony's reference parser on the tokens after ``<|start|>assistant`` (strict mode)."""
    from openai_harmony import Role

    def parse(tokens: Sequence[int]) -> list[Any]:
        return list(harmony_encoding.parse_messages_from_completion_tokens(list(tokens), role=Role.ASSISTANT))

    return parse


@pytest.fixture(scope="session")
def sampler(closer_mask: torch.Tensor) -> Callable[..., RandomLogits]:
    """``sampler(seed, **kw)``: a RandomLogits with the session's closing-token mask."""
    return lambda seed, **kw: RandomLogits(seed, closer_mask, **kw)


@pytest.fixture(scope="session")
def run_hook() -> Callable[..., list[int]]:
    return drive


# -- the agent loop's end-to-end runs (tests/agent/test_local_e2e.py) ----------------------------------------


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny random gpt-oss checkpoint with the full harmony vocabulary."""
    from ossagent.model.checkpoint_writer import write_checkpoint
    from ossagent.model.config import GptOssConfig

    config = GptOssConfig(num_hidden_layers=2, num_experts=4, experts_per_token=2, vocab_size=VOCAB,
                          hidden_size=64, intermediate_size=64, head_dim=16, num_attention_heads=4,
                          num_key_value_heads=2, sliding_window=8)
    folder = tmp_path_factory.mktemp("tiny-gpt-oss")
    write_checkpoint(folder, config, layout="hf", experts="mxfp4", seed=0)
    return folder


@pytest.fixture(scope="session")
def tiny_backend(tiny_model: Any) -> Any:
    from ossagent.agent.backends.local import LocalBackend

    return LocalBackend.from_pretrained(tiny_model, device="cpu")
