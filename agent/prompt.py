"""The loop's only door to the harmony format: build the prompt, render a message, parse a completion.

A message goes loop -> prompt -> harmony: the loop, the backends and the server speak in transcript
messages (:class:`~ossagent.agent.transcript.Msg`) and :class:`PromptConfig`; this module turns them into
:mod:`ossagent.agent.harmony` messages and tokens and back, so the format's implementation can change
underneath without touching them.

Built-in namespaces (``python``, ``browser``) go in the system message as gpt-oss was trained; other tool
namespaces (``files``) and the function tools go in the developer message, with the response format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from ossagent.agent.choices import ReasoningEffort, ToolChoice
from ossagent.agent.harmony import (
    Author,
    ContentDelta,
    DeveloperContent,
    HarmonyRenderer,
    Message,
    MessageDone,
    MessageStart,
    Problem,
    Role,
    StreamParser,
    SystemContent,
)
from ossagent.agent.harmony.tokens import START
from ossagent.agent.transcript import Msg
from ossagent.tools.base import FunctionDescription, ToolDescription

SYSTEM_NAMESPACES = ("browser", "python")


@dataclass(frozen=True)
class PromptConfig:
    """What goes into the system and developer messages."""

    reasoning: ReasoningEffort | None = ReasoningEffort.MEDIUM
    instructions: str | None = None
    builtin_tools: tuple[ToolDescription, ...] = ()
    function_tools: tuple[FunctionDescription, ...] = ()
    response_format: tuple[str, dict[str, Any], str | None] | None = None
    model_identity: str | None = None
    current_date: str | None = None

    def settings(self) -> dict[str, Any]:
        """The JSON-safe summary stored in a transcript's header."""
        rf = self.response_format
        return {
            "reasoning": self.reasoning.value if self.reasoning else None,
            "instructions": self.instructions,
            "builtin_tools": [t.name for t in self.builtin_tools],
            "function_tools": [f.name for f in self.function_tools],
            "response_format": rf[0] if rf else None,
            "current_date": self.current_date,
            "model_identity": self.model_identity,
            # what the model was shown of them, so the prompt can be rebuilt exactly (fine-tuning data)
            "texts": {
                "builtin_tools": [asdict(t) for t in self.builtin_tools],
                "function_tools": [asdict(f) for f in self.function_tools],
                "response_format": {"schema": rf[1], "description": rf[2]} if rf else None,
            },
        }


@dataclass(frozen=True)
class Prompt:
    """What a backend continues: the harmony tokens, and the conversation they render.

    ``messages`` is the conversation after the system and developer messages (which ``config`` describes),
    as rendered: the chain of thought of finished turns already dropped. Token backends read ``tokens``;
    a backend that speaks another protocol (RemoteBackend) sends ``config``, ``messages`` and ``tool_choice``.
    """

    tokens: list[int]
    config: PromptConfig = field(default_factory=PromptConfig)
    messages: tuple[Msg, ...] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)


@dataclass(frozen=True)
class Delta:
    """New text of the message being generated."""

    channel: str | None
    recipient: str | None
    text: str


@dataclass(frozen=True)
class ParseProblem:
    """Something the model wrote that is not well-formed harmony (the parser kept going)."""

    kind: str
    message: str
    text: str = ""


# ------------------------------------------------------------------------------ Msg <-> harmony Message
@lru_cache(maxsize=4)
def _renderer(encoding: Any) -> HarmonyRenderer:
    return HarmonyRenderer(encoding, auto_drop_analysis=False)  # drop_old_cot does it (the transcript keeps all)


def to_harmony(m: Msg) -> Message:
    author = Author(Role.TOOL, m.name) if m.role == "tool" else Author(Role(m.role))
    return Message(author, [], channel=m.channel, recipient=m.recipient,
                   content_type=m.content_type).adding_content(m.text)


def from_harmony(msg: Message) -> Msg:
    role = msg.author.role.value
    name = msg.author.name if role == "tool" else None
    if role == "tool" and not name:
        name = "tool"
    return Msg(role, msg.text, name=name, recipient=msg.recipient, channel=msg.channel,
               content_type=msg.content_type)


def system_message(config: PromptConfig) -> Message:
    sc = SystemContent.new().with_reasoning_effort(config.reasoning)
    if config.model_identity:
        sc = sc.with_model_identity(config.model_identity)
    if config.current_date:
        sc = sc.with_conversation_start_date(config.current_date)
    for ns in config.builtin_tools:
        if ns.name in SYSTEM_NAMESPACES:
            sc = sc.with_tools(ns)
    return Message.from_role_and_content(Role.SYSTEM, sc)


def developer_message(config: PromptConfig) -> Message | None:
    others = [ns for ns in config.builtin_tools if ns.name not in SYSTEM_NAMESPACES]
    if config.instructions is None and not config.function_tools and not others and not config.response_format:
        return None
    dc = DeveloperContent.new().with_instructions(config.instructions)
    if config.function_tools:
        dc = dc.with_function_tools(config.function_tools)
    for ns in others:
        dc = dc.with_tools(ns)
    if config.response_format:
        name, schema, desc = config.response_format
        dc = dc.with_response_format(name, schema, desc)
    return Message.from_role_and_content(Role.DEVELOPER, dc)


# ------------------------------------------------------------------------------ rendering
def drop_old_cot(messages: Sequence[Msg]) -> list[Msg]:
    """Drop the chain of thought of finished turns: every ``analysis`` message before the last final answer.

    During a tool chain (after the last final) everything stays, as harmony prescribes.
    """
    last_final = max((i for i, m in enumerate(messages) if m.role == "assistant" and m.channel == "final"),
                     default=-1)
    return [m for i, m in enumerate(messages) if not (i < last_final and m.channel == "analysis")]


def head_messages(config: PromptConfig) -> list[Message]:
    """The system message, and the developer message when the config has anything for it."""
    dev = developer_message(config)
    return [system_message(config)] + ([dev] if dev is not None else [])


def render_prompt(config: PromptConfig, messages: Sequence[Msg], encoding: Any) -> list[int]:
    """System + developer + conversation (old CoT dropped) + ``<|start|>assistant``."""
    convo = [to_harmony(m) for m in drop_old_cot(list(messages))]
    return _renderer(encoding).render_conversation_for_completion(head_messages(config) + convo, Role.ASSISTANT)


def build_prompt(config: PromptConfig, messages: Sequence[Msg], encoding: Any,
                 tool_choice: ToolChoice | None = None, tokens: list[int] | None = None) -> Prompt:
    """The :class:`Prompt` of a conversation; ``tokens``: already rendered (a tool chain extends the previous
    prompt with exactly what the model wrote, so the engine's KV cache reuses it), else rendered here."""
    return Prompt(tokens if tokens is not None else render_prompt(config, messages, encoding), config,
                  tuple(drop_old_cot(list(messages))), tool_choice or ToolChoice())


def render_message(msg: Msg, encoding: Any) -> list[int]:
    return _renderer(encoding).render(to_harmony(msg))


def assistant_start(encoding: Any) -> list[int]:
    return [START, *encoding.encode_ordinary("assistant")]


# ------------------------------------------------------------------------------ parsing
class TurnParser:
    """Parse the tokens of one model call (after ``<|start|>assistant``) into deltas and messages."""

    def __init__(self, encoding: Any) -> None:
        self._p = StreamParser(encoding, Role.ASSISTANT)
        self._start: MessageStart | None = None

    def _convert(self, events: list[Any]) -> list[Delta | Msg | ParseProblem]:
        out: list[Delta | Msg | ParseProblem] = []
        for ev in events:
            if isinstance(ev, MessageStart):
                self._start = ev
            elif isinstance(ev, ContentDelta):
                s = self._start
                out.append(Delta(s.channel if s else None, s.recipient if s else None, ev.text))
            elif isinstance(ev, MessageDone):
                msg = from_harmony(ev.message)
                out.append(msg if ev.stop_token is not None else msg.with_meta(truncated=True))
                self._start = None
            elif isinstance(ev, Problem):
                out.append(ParseProblem(ev.kind, ev.message, ev.text))
        return out

    def feed(self, token: int) -> list[Delta | Msg | ParseProblem]:
        return self._convert(self._p.process(token))

    @property
    def in_reasoning(self) -> bool:
        """The next token belongs to the body (or the end) of a chain-of-thought message: analysis, no recipient."""
        p = self._p
        return p.state == "content" and p.current_channel == "analysis" and p.current_recipient is None

    def finish(self) -> list[Delta | Msg | ParseProblem]:
        """What is left at the end: a message cut off mid-way (token limit, stop sequence)."""
        return self._convert(self._p.finish())


def parse_prompt(tokens: Sequence[int], encoding: Any) -> list[Msg]:
    """The messages of a rendered prompt (a trailing ``<|start|>assistant`` is ignored)."""
    toks = list(tokens)
    tail = assistant_start(encoding)
    if toks[-len(tail) :] == tail:
        toks = toks[: -len(tail)]
    parser = StreamParser(encoding, None, require_channel=False)
    parser.process_all(toks)
    parser.finish()
    return [from_harmony(m) for m in parser.messages]


def parse_completion(tokens: Sequence[int], encoding: Any) -> list[Msg]:
    parser = TurnParser(encoding)
    msgs = [m for t in tokens for m in parser.feed(t) if isinstance(m, Msg)]
    return msgs + [m for m in parser.finish() if isinstance(m, Msg)]
