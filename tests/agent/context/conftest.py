"""A rule-following "model" for long runs: its replies come from a policy over the decoded prompt (a tool
call per turn, then an answer) and, when compaction asks for a summary, from a summariser over the prompt.
With an engine it pushes every prompt and reply through the real KV cache (replies forced token by token,
the stop token sampled under a one-token mask), so sizes, overflows and cache reuse are the engine's own."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from ossagent.agent.backends.base import GenerationParams, default_encoding
from ossagent.agent.context.summary import REQUEST
from ossagent.tools.base import FunctionDescription, ToolDescription, ToolResult

Policy = Callable[[str, int], str]  # (decoded prompt, main-turn number from 1) -> harmony reply


def call_reply(page: int, think: str | None = None) -> str:
    return (f"<|channel|>analysis<|message|>{think or f'Read page {page}.'}<|end|>"
            f"<|start|>assistant to=notes.read<|channel|>commentary <|constrain|>json<|message|>"
            f'{{"page":{page}}}<|call|>')


def final_reply(text: str) -> str:
    return f"<|channel|>analysis<|message|>Done.<|end|><|start|>assistant<|channel|>final<|message|>{text}<|return|>"


FACT = re.compile(r"vault code is \d+")


def fact_summary(prompt: str) -> str:
    """A summariser that keeps what it can read: every vault-code fact in the prompt, and the last page read."""
    facts = sorted(set(FACT.findall(prompt)))
    pages = re.findall(r'\{"page":(\d+)\}', prompt)
    if pages:
        facts.append(f"read pages up to {pages[-1]}")
    body = json.dumps({"facts": facts, "open_tasks": ["keep reading the notes"], "citations": []})
    return final_reply(body)


@dataclass
class RuleModel:
    policy: Policy
    summarise: Callable[[str], str] = fact_summary
    engine: Any = None
    context_window: int | None = None
    encoding: Any = field(default_factory=default_encoding)
    takes_hooks: bool = False
    turns: int = 0
    summaries: int = 0
    prompts: list[int] = field(default_factory=list)  # prompt sizes, every call
    peaks: list[int] = field(default_factory=list)  # prompt + completion tokens, every call
    shared: list[int] = field(default_factory=list)  # tokens the engine held that each prompt starts with

    def generate(self, prompt: Any, params: GenerationParams, hook: Any = None) -> Iterator[int]:
        prompt = list(getattr(prompt, "tokens", prompt))  # a typed prompt, or its tokens
        text = self.encoding.decode(prompt)
        if REQUEST in text[-len(REQUEST) - 200:]:
            self.summaries += 1
            reply = self.summarise(text)
        else:
            self.turns += 1
            reply = self.policy(text, self.turns)
        tokens = list(self.encoding.encode(reply, allowed_special="all"))[: params.max_tokens]
        self.prompts.append(len(prompt))
        self.peaks.append(len(prompt) + len(tokens))
        if self.engine is None:
            return iter(tokens)
        from ossagent.model.engine import SamplingParams

        held = getattr(self.engine, "tokens", None)  # a BatchEngine keeps several caches: not recorded
        self.shared.append(-1 if held is None else next(
            (i for i, (a, b) in enumerate(zip(held, prompt, strict=False)) if a != b), min(len(held), len(prompt))))
        sp = SamplingParams(max_tokens=len(tokens), stop_tokens=tuple(params.stop_tokens))
        return self.engine.generate(prompt, sp, Force(tokens, self.engine.model.config.vocab_size))


class Force:
    """Feeds all but the last token as forced tokens, then allows only the last one (a sampled stop token
    leaves the cache as a real generation does: the prompt and the reply without its last token)."""

    def __init__(self, tokens: list[int], vocab: int) -> None:
        self.tokens, self.vocab = tokens, vocab

    def step(self, generated: Sequence[int]) -> Any:
        import torch

        from ossagent.model.hooks import StepAction

        if len(generated) < len(self.tokens) - 1:
            return StepAction(forced=self.tokens[len(generated) : -1])
        mask = torch.zeros(self.vocab, dtype=torch.bool)
        mask[self.tokens[len(generated)]] = True
        return StepAction(mask=mask)


class Notes:
    """A real tool (namespace ``notes``): page N of a long notebook; page 1 holds the vault code."""

    name = "notes"

    def __init__(self, words: int = 90) -> None:
        self.words = words
        self.calls = 0

    def description(self) -> ToolDescription:
        return ToolDescription("notes", "The notebook.", (FunctionDescription("read", "Read one page.", {
            "type": "object", "properties": {"page": {"type": "integer"}}, "required": ["page"]}),))

    def call(self, recipient: str, content: str) -> ToolResult:
        self.calls += 1
        page = int(json.loads(content)["page"])
        head = f"Page {page}. " + ("The vault code is 4721. " if page == 1 else f"Nothing secret on page {page}. ")
        filler = " ".join(f"w{page}x{i}" for i in range(self.words))
        return ToolResult(recipient, head + filler)

    def close(self) -> None:
        pass


@pytest.fixture()
def rule_model() -> type[RuleModel]:
    return RuleModel


@pytest.fixture()
def notes() -> type[Notes]:
    return Notes


@pytest.fixture()
def replies() -> Any:
    return call_reply, final_reply, fact_summary


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """torch on one thread: on a shared 2-core machine two threads per process mostly wait for each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
