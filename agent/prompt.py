"""The loop's only door to the harmony format: build the prompt, render a message, parse a completion.

Everything harmony-specific the loop, the backends and the server need goes through these few functions,
so the format's implementation can change underneath without touching them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ossagent.agent.transcript import Msg
from ossagent.tools.base import FunctionDescription, ToolDescription


@dataclass(frozen=True)
class PromptConfig:
    """What goes into the system and developer messages."""

    reasoning: str | None = "medium"
    instructions: str | None = None
    builtin_tools: tuple[ToolDescription, ...] = ()
    function_tools: tuple[FunctionDescription, ...] = ()
    response_format: tuple[str, dict[str, Any], str | None] | None = None
    model_identity: str | None = None
    current_date: str | None = None

    def settings(self) -> dict[str, Any]:
        """The JSON-safe summary stored in a transcript's header."""
        return {
            "reasoning": self.reasoning,
            "instructions": self.instructions,
            "builtin_tools": [t.name for t in self.builtin_tools],
            "function_tools": [f.name for f in self.function_tools],
            "response_format": self.response_format[0] if self.response_format else None,
        }


@dataclass(frozen=True)
class Delta:
    """New text of the message being generated."""

    channel: str | None
    recipient: str | None
    text: str


def default_encoding() -> Any:
    from ossagent.model.tokenizer import o200k_harmony

    return o200k_harmony()


def drop_old_cot(messages: Sequence[Msg]) -> list[Msg]:
    """Drop the chain of thought of finished turns: every ``analysis`` message before the last final answer.

    During a tool chain (after the last final) everything stays, as harmony prescribes.
    """
    last_final = max((i for i, m in enumerate(messages) if m.role == "assistant" and m.channel == "final"),
                     default=-1)
    return [m for i, m in enumerate(messages) if not (i < last_final and m.channel == "analysis")]


def render_prompt(config: PromptConfig, messages: Sequence[Msg], encoding: Any) -> list[int]:
    """System + developer + conversation (old CoT dropped) + ``<|start|>assistant``."""
    from ossagent.agent import harmony_glue

    return harmony_glue.render_prompt(config, drop_old_cot(list(messages)), encoding)


def render_message(msg: Msg, encoding: Any) -> list[int]:
    from ossagent.agent import harmony_glue

    return harmony_glue.render_message(msg, encoding)


def assistant_start(encoding: Any) -> list[int]:
    return [200006, *encoding.encode_ordinary("assistant")]


class TurnParser:
    """Parse the tokens of one model call (after ``<|start|>assistant``) into deltas and messages."""

    def __init__(self, encoding: Any) -> None:
        from ossagent.agent import harmony_glue

        self._impl = harmony_glue.TurnParser(encoding)

    def feed(self, token: int) -> list[Delta | Msg]:
        return self._impl.feed(token)

    def finish(self) -> list[Msg]:
        """Messages not reported yet: a message cut off mid-way (token limit, stop sequence)."""
        return self._impl.finish()


def parse_prompt(tokens: Sequence[int], encoding: Any) -> list[Msg]:
    """The messages of a rendered prompt (a trailing ``<|start|>assistant`` is ignored)."""
    from ossagent.agent import harmony_glue

    toks = list(tokens)
    tail = assistant_start(encoding)
    if toks[-len(tail) :] == tail:
        toks = toks[: -len(tail)]
    return harmony_glue.parse_messages(toks, encoding)


def parse_completion(tokens: Sequence[int], encoding: Any) -> list[Msg]:
    parser = TurnParser(encoding)
    msgs = [m for t in tokens for m in parser.feed(t) if isinstance(m, Msg)]
    return msgs + parser.finish()
