"""The loop's transcript messages (:class:`Msg`) to and from :mod:`ossagent.agent.harmony`.

Built-in namespaces (``python``, ``browser``) go in the system message as gpt-oss was trained; other tool
namespaces (``files``) and the function tools go in the developer message, with the response format.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

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
from ossagent.agent.prompt import Delta, ParseProblem, PromptConfig
from ossagent.agent.transcript import Msg

SYSTEM_NAMESPACES = ("browser", "python")


@lru_cache(maxsize=4)
def _renderer(encoding: Any) -> HarmonyRenderer:
    return HarmonyRenderer(encoding, auto_drop_analysis=False)  # the loop drops old CoT itself


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


def render_prompt(config: PromptConfig, messages: list[Msg], encoding: Any) -> list[int]:
    head = [system_message(config)]
    dev = developer_message(config)
    if dev is not None:
        head.append(dev)
    return _renderer(encoding).render_conversation_for_completion(head + [to_harmony(m) for m in messages],
                                                                  Role.ASSISTANT)


def render_message(msg: Msg, encoding: Any) -> list[int]:
    return _renderer(encoding).render(to_harmony(msg))


class TurnParser:
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

    def finish(self) -> list[Delta | Msg | ParseProblem]:
        return self._convert(self._p.finish())


def parse_messages(tokens: list[int], encoding: Any) -> list[Msg]:
    parser = StreamParser(encoding, None, require_channel=False)
    parser.process_all(tokens)
    parser.finish()
    return [from_harmony(m) for m in parser.messages]
