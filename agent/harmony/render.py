"""Render harmony messages and conversations to o200k_harmony token ids, as openai-harmony 0.0.8 does.

Every text segment (role, ``:name``, `` to=recipient``, channel, content type, each content part) is
tokenized on its own with ``encode_ordinary``: special-token strings inside text stay plain text and BPE
never merges across a segment boundary. Details and quirks: harmony-format.md §3.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ossagent.agent.harmony.messages import (
    Content,
    Conversation,
    DeveloperContent,
    Message,
    Role,
    SystemContent,
    TextContent,
)
from ossagent.agent.harmony.schema_ts import parameters_type, signature_swallowed, to_typescript
from ossagent.agent.harmony.tokens import CALL, CHANNEL, CONSTRAIN, END, MESSAGE, RETURN, START
from ossagent.tools.base import ToolDescription

CONSTRAIN_TEXT = "<|constrain|>"
FUNCTIONS_LINE = "Calls to these tools must go to the commentary channel: 'functions'."


class RenderError(ValueError):
    """A message that cannot be rendered (the caller's fault), e.g. a tool message without a name."""


@dataclass(frozen=True)
class RenderConversationConfig:
    auto_drop_analysis: bool = True


def rust_lines(text: str) -> list[str]:
    """Rust's ``str::lines``: split on ``\\n``, drop one ``\\r`` right before it, no trailing empty line.

    A ``\\r`` not followed by ``\\n`` (also at the very end) stays in the line.
    """
    parts = text.split("\n")
    last = parts.pop()
    lines = [p[:-1] if p.endswith("\r") else p for p in parts]
    if last:
        lines.append(last)
    return lines


def tools_section(namespaces: dict[str, ToolDescription]) -> str:
    """``# Tools`` with one block per namespace, sorted by key (the reference keeps them in a BTreeMap)."""
    blocks = ["# Tools"]
    for key in sorted(namespaces):
        ns = namespaces[key]
        lines = [f"## {ns.name}\n"]
        has_tools = len(ns.functions) > 0
        for line in rust_lines(ns.description or ""):
            lines.append(f"// {line}" if has_tools else line)
        if has_tools:
            lines.append(f"namespace {ns.name} {{\n")
            for fn in ns.functions:
                lines.extend(f"// {line}" for line in rust_lines(fn.description or ""))
                if fn.parameters is not None:
                    try:
                        ts = parameters_type(fn.parameters)
                    except ValueError as exc:
                        raise RenderError(f"tool {ns.name}.{fn.name}: parameters are not JSON: {exc}") from exc
                    lines.append(f"type {fn.name} = (_: {ts}) => any;\n")
                else:
                    lines.append(f"type {fn.name} = () => any;\n")
            lines.append(f"}} // namespace {ns.name}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def system_body(sys: SystemContent, has_function_tools: bool) -> str:
    sections = []
    top = []
    if sys.model_identity is not None:
        top.append(sys.model_identity)
    if sys.knowledge_cutoff is not None:
        top.append(f"Knowledge cutoff: {sys.knowledge_cutoff}")
    if sys.conversation_start_date is not None:
        top.append(f"Current date: {sys.conversation_start_date}")
    if top:
        sections.append("\n".join(top))
    if sys.reasoning_effort is not None:
        sections.append(f"Reasoning: {sys.reasoning_effort.value}")
    if sys.tools:
        sections.append(tools_section(sys.tools))
    cc = sys.channel_config
    if cc is not None and cc.valid_channels:
        header = f"# Valid channels: {', '.join(cc.valid_channels)}."
        if cc.channel_required:
            header += " Channel must be included for every message."
        if has_function_tools:
            header += "\n" + FUNCTIONS_LINE
        sections.append(header)
    return "\n\n".join(sections)


def response_formats_section(dev: DeveloperContent) -> str:
    """``# Response Formats`` (not in openai-harmony 0.0.8; the layout of its docs and cookbook)."""
    blocks = ["# Response Formats"]
    for fmt in dev.response_formats:
        lines = [f"## {fmt.name}", ""]
        lines.extend(f"// {line}" for line in rust_lines(fmt.description or ""))
        try:  # the docs' serialization: compact, key order kept, non-ASCII as is
            lines.append(json.dumps(fmt.schema, separators=(",", ":"), ensure_ascii=False, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise RenderError(f"response format {fmt.name!r}: the schema is not JSON: {exc}") from exc
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def developer_body(dev: DeveloperContent) -> str:
    sections = []
    if dev.instructions is not None:
        sections += ["# Instructions", dev.instructions]
    if dev.tools:
        sections.append(tools_section(dev.tools))
    if dev.response_formats:
        sections.append(response_formats_section(dev))
    return "\n\n".join(sections)


def deviates_from_reference(message: Message) -> bool:
    """Whether we render ``message`` differently from openai-harmony 0.0.8 on purpose.

    Two cases: a function whose top-level ``oneOf`` parameters would swallow ``) => any;`` in a
    comment (schema_ts), and developer ``response_formats``, which the reference does not support.
    """
    for part in message.content:
        if isinstance(part, DeveloperContent) and part.response_formats:
            return True
        namespaces = part.tools if isinstance(part, SystemContent | DeveloperContent) else None
        for ns in (namespaces or {}).values():
            for fn in ns.functions:
                if fn.parameters is not None and signature_swallowed(
                    fn.parameters, to_typescript(fn.parameters, "")
                ):
                    return True
    return False


def has_function_tools(messages: Iterable[Message]) -> bool:
    """Some developer message has a non-empty ``functions`` namespace (system ones do not count)."""
    for msg in messages:
        for part in msg.content:
            if isinstance(part, DeveloperContent) and part.tools:
                ns = part.tools.get("functions")
                if ns is not None and ns.functions:
                    return True
    return False


def messages_to_render(messages: Sequence[Message], auto_drop_analysis: bool) -> list[Message]:
    """Drop analysis before the first final, when the last assistant message is final (§3.8)."""
    if not auto_drop_analysis:
        return list(messages)
    last_assistant_final = False
    for msg in reversed(messages):
        if msg.author.role is Role.ASSISTANT:
            last_assistant_final = msg.channel == "final"
            break
    if not last_assistant_final:
        return list(messages)
    first_final = next((i for i, m in enumerate(messages) if m.channel == "final"), None)
    if first_final is None:
        return list(messages)
    return [m for i, m in enumerate(messages) if not (i < first_final and m.channel == "analysis")]


class HarmonyRenderer:
    """openai-harmony's ``HarmonyEncoding`` rendering side, on our o200k_harmony tokenizer.

    ``auto_drop_analysis`` is the default for the conversation renderers (True, as the reference's
    Python API); a ``config`` passed to one call overrides it.
    """

    def __init__(self, encoding: Any | None = None, *, auto_drop_analysis: bool = True) -> None:
        if encoding is None:
            from ossagent.model.tokenizer import o200k_harmony

            encoding = o200k_harmony()
        self.encoding = encoding
        self.auto_drop_analysis = auto_drop_analysis
        self._encode = encoding.encode_ordinary
        self._cache: dict[str, list[int]] = {}

    # -- text ---------------------------------------------------------------------------------

    def _text(self, text: str, out: list[int]) -> None:
        if text:
            out.extend(self._encode(text))

    def _short(self, text: str, out: list[int]) -> None:
        """Header pieces repeat (roles, channels, recipients): cache their tokens."""
        ids = self._cache.get(text)
        if ids is None:
            ids = self._encode(text)
            if len(self._cache) < 4096:
                self._cache[text] = ids
        out.extend(ids)

    def decode(self, tokens: Sequence[int]) -> str:
        return str(self.encoding.decode(list(tokens)))

    def encode_text(self, text: str) -> list[int]:
        return list(self._encode(text))

    # -- messages -----------------------------------------------------------------------------

    def _content(self, part: Content, role: Role, has_functions: bool, out: list[int]) -> None:
        if isinstance(part, TextContent):
            self._text(part.text, out)
        elif isinstance(part, SystemContent):
            if role is not Role.SYSTEM:
                raise RenderError(f"SystemContent may only appear in system messages, found in {role.value}")
            self._text(system_body(part, has_functions), out)
        elif isinstance(part, DeveloperContent):
            if role is not Role.DEVELOPER:
                raise RenderError(
                    f"DeveloperContent may only appear in developer messages, found in {role.value}"
                )
            self._text(developer_body(part), out)
        else:
            raise RenderError(f"unknown content part {part!r}")

    def _render_into(self, message: Message, out: list[int], has_functions: bool) -> None:
        """Raises :class:`RenderError` for a message that cannot be rendered (nothing is appended then)."""
        start = len(out)
        try:
            self._render_message(message, out, has_functions)
        except RenderError:
            del out[start:]
            raise

    def _render_message(self, message: Message, out: list[int], has_functions: bool) -> None:
        out.append(START)
        role = message.author.role
        if role is Role.TOOL:
            if not message.author.name:
                raise RenderError("a tool message needs the tool's name as author name (Author(TOOL, name))")
            self._short(message.author.name, out)
        else:
            self._short(role.value, out)
            if message.author.name is not None:
                self._short(f":{message.author.name}", out)
        if message.recipient is not None and message.recipient != "all":
            self._short(f" to={message.recipient}", out)
        if message.channel is not None:
            out.append(CHANNEL)
            self._short(message.channel, out)
        ct = message.content_type
        if ct is not None:
            if ct.startswith(CONSTRAIN_TEXT):
                self._short(" ", out)
                out.append(CONSTRAIN)
                rest = ct[len(CONSTRAIN_TEXT) :]
                if rest:
                    self._short(rest, out)
            else:
                self._short(f" {ct}", out)
        out.append(MESSAGE)
        for part in message.content:
            self._content(part, role, has_functions, out)
        out.append(CALL if role is Role.ASSISTANT and message.recipient is not None else END)

    def render(self, message: Message, *, conversation_has_function_tools: bool = False) -> list[int]:
        """One message. The system message's ``functions`` line needs the conversation's flag."""
        out: list[int] = []
        self._render_into(message, out, conversation_has_function_tools)
        return out

    # -- conversations ------------------------------------------------------------------------

    def _messages(self, conv: Conversation | Sequence[Message]) -> list[Message]:
        return list(conv.messages if isinstance(conv, Conversation) else conv)

    def _drop(self, config: RenderConversationConfig | None) -> bool:
        return self.auto_drop_analysis if config is None else config.auto_drop_analysis

    def render_conversation(
        self, conv: Conversation | Sequence[Message], config: RenderConversationConfig | None = None
    ) -> list[int]:
        messages = self._messages(conv)
        has_functions = has_function_tools(messages)
        out: list[int] = []
        for msg in messages_to_render(messages, self._drop(config)):
            self._render_into(msg, out, has_functions)
        return out

    def render_conversation_for_completion(
        self,
        conv: Conversation | Sequence[Message],
        next_role: Role = Role.ASSISTANT,
        config: RenderConversationConfig | None = None,
    ) -> list[int]:
        """The prompt: the conversation, then ``<|start|>`` and the next role."""
        out = self.render_conversation(conv, config)
        out.append(START)
        self._short(Role(next_role).value, out)
        return out

    def render_conversation_for_training(
        self, conv: Conversation | Sequence[Message], config: RenderConversationConfig | None = None
    ) -> list[int]:
        """Like :meth:`render_conversation`, but a last assistant ``final`` ends in ``<|return|>``."""
        messages = self._messages(conv)
        out = self.render_conversation(messages, config)
        if messages and out:
            last = messages[-1]
            if last.author.role is Role.ASSISTANT and last.channel == "final":
                out[-1] = RETURN
        return out

    # -- stop tokens --------------------------------------------------------------------------

    @staticmethod
    def stop_tokens() -> list[int]:
        """``<|return|>``, ``<|end|>``, ``<|call|>``: the end of any message."""
        return [RETURN, END, CALL]

    @staticmethod
    def stop_tokens_for_assistant_actions() -> list[int]:
        """``<|return|>`` and ``<|call|>``: the assistant is done or waits for a tool."""
        return [RETURN, CALL]
