"""The typed event stream of an agent run.

:meth:`ossagent.agent.loop.Agent.stream` yields these, in order, as the model produces them; the CLI,
the server and :meth:`Agent.run` all consume the same stream. Every event is a frozen dataclass with a
``type`` tag, so ``match`` statements and ``to_dict`` (for JSON logs and SSE) both work.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    type: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **asdict(self)}


@dataclass(frozen=True)
class TextDelta(Event):
    """New text of a message (the kinds below say which)."""

    text: str


@dataclass(frozen=True)
class ReasoningDelta(TextDelta):
    """Chain of thought (the ``analysis`` channel). Never shown to end users by default."""

    type: ClassVar[str] = "reasoning_delta"


@dataclass(frozen=True)
class PreambleDelta(TextDelta):
    """User-visible commentary before tool calls (``commentary`` channel, no recipient)."""

    type: ClassVar[str] = "preamble_delta"


@dataclass(frozen=True)
class FinalDelta(TextDelta):
    """Text of the final answer (``final`` channel)."""

    type: ClassVar[str] = "final_delta"


@dataclass(frozen=True)
class ToolCallStarted(Event):
    """The model addressed a tool; its arguments follow as :class:`ToolCallDelta` events."""

    type: ClassVar[str] = "tool_call_started"
    call_id: str
    recipient: str  # "python", "browser.search", "functions.get_weather"
    channel: str | None = None


@dataclass(frozen=True)
class ToolCallDelta(Event):
    type: ClassVar[str] = "tool_call_delta"
    call_id: str
    text: str


@dataclass(frozen=True)
class ToolCall(Event):
    """A complete tool call (the model stopped on ``<|call|>``)."""

    type: ClassVar[str] = "tool_call"
    call_id: str
    recipient: str
    arguments: str
    channel: str | None = None
    content_type: str | None = None

    @property
    def function_name(self) -> str:
        """``get_weather`` for ``functions.get_weather``; the full recipient for built-in tools."""
        return self.recipient.split(".", 1)[1] if self.recipient.startswith("functions.") else self.recipient


@dataclass(frozen=True)
class ToolResultEvent(Event):
    """What a tool answered (or the error message the model receives instead)."""

    type: ClassVar[str] = "tool_result"
    call_id: str
    recipient: str
    text: str
    is_error: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Usage(Event):
    """Token counts, cumulative over the run so far."""

    type: ClassVar[str] = "usage"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens that extend the previous turn's tokens (KV prefix reuse)
    turns: int = 0
    reasoning_tokens: int = 0  # completion tokens in chain-of-thought bodies (analysis, no recipient)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Compacted(Event):
    """The conversation outgrew the context budget and was shrunk (the transcript keeps every message).

    step: ``trim`` (old chains of thought hidden, old tool outputs cut to an excerpt) or ``summary`` (the
    oldest turns replaced by one summary message the model wrote). messages: how many it hid or shortened.
    tokens_before / tokens_after: the prompt's size; window: the context it must fit, reserve included.
    """

    type: ClassVar[str] = "compacted"
    step: str
    tokens_before: int
    tokens_after: int
    messages: int
    window: int


@dataclass(frozen=True)
class ErrorEvent(Event):
    """Something went wrong; ``kind`` says whose fault (``model``, ``tool``, ``limit``, ``backend``)."""

    type: ClassVar[str] = "error"
    kind: str
    message: str


@dataclass(frozen=True)
class Stopped(Event):
    """The run ended; ``reason`` is ``final``, ``tool_calls`` (returned to the caller), ``max_turns``,
    ``max_tokens``, ``timeout``, ``stop`` (a stop sequence), ``context`` (the conversation no longer fits
    the context, even compacted) or ``error``."""

    type: ClassVar[str] = "stopped"
    reason: str


AnyEvent = (
    ReasoningDelta
    | PreambleDelta
    | FinalDelta
    | ToolCallStarted
    | ToolCallDelta
    | ToolCall
    | ToolResultEvent
    | Usage
    | Compacted
    | ErrorEvent
    | Stopped
)
