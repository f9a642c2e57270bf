"""The typed conversation model of the harmony format, and its JSON transcript form.

The shapes follow openai-harmony's Python API (``Message.from_role_and_content``, ``SystemContent``
builders, ``to_dict``/``from_dict``), with plain dataclasses. Namespaces of tools are
:class:`ossagent.tools.base.ToolDescription` values, so a tool's own description is what gets rendered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Union

from ossagent.tools.base import FunctionDescription, ToolDescription

DEFAULT_IDENTITY = "You are ChatGPT, a large language model trained by OpenAI."
DEFAULT_KNOWLEDGE_CUTOFF = "2024-06"
DEFAULT_CHANNELS = ("analysis", "commentary", "final")


class TranscriptError(ValueError):
    """A transcript record (JSON) that does not describe a harmony message."""


class Role(StrEnum):
    SYSTEM = "system"
    DEVELOPER = "developer"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class ReasoningEffort(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @classmethod
    def parse(cls, value: str | ReasoningEffort) -> ReasoningEffort:
        """Accept ``"low"``, ``"Low"`` (openai-harmony's spelling) or a member."""
        if isinstance(value, ReasoningEffort):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise TranscriptError(f"reasoning effort must be low, medium or high, not {value!r}") from None


@dataclass
class Author:
    role: Role
    name: str | None = None

    @classmethod
    def new(cls, role: Role, name: str) -> Author:
        return cls(role, name)


@dataclass
class TextContent:
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": "text", "text": self.text}


@dataclass
class ChannelConfig:
    valid_channels: list[str]
    channel_required: bool = True

    @classmethod
    def require_channels(cls, channels: Sequence[str]) -> ChannelConfig:
        return cls(list(channels), True)


def _namespace_to_dict(ns: ToolDescription) -> dict[str, Any]:
    return {
        "name": ns.name,
        "description": ns.description,
        "tools": [
            {"name": f.name, "description": f.description, "parameters": f.parameters} for f in ns.functions
        ],
    }


def _namespace_from_dict(raw: Mapping[str, Any]) -> ToolDescription:
    try:
        funcs = tuple(
            FunctionDescription(t["name"], t.get("description") or "", t.get("parameters"))
            for t in raw.get("tools") or ()
        )
        return ToolDescription(raw["name"], raw.get("description") or "", funcs)
    except (KeyError, TypeError, AttributeError) as exc:
        raise TranscriptError(f"not a tool namespace: {raw!r}") from exc


def _tools_from_dict(raw: Any) -> dict[str, ToolDescription] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise TranscriptError(f"tools must map namespace names to namespaces, not {raw!r}")
    return {key: _namespace_from_dict(ns) for key, ns in raw.items()}


@dataclass
class SystemContent:
    """The system message: identity, dates, reasoning effort, channels and built-in tool namespaces."""

    model_identity: str | None = DEFAULT_IDENTITY
    reasoning_effort: ReasoningEffort | None = ReasoningEffort.MEDIUM
    conversation_start_date: str | None = None
    knowledge_cutoff: str | None = DEFAULT_KNOWLEDGE_CUTOFF
    channel_config: ChannelConfig | None = field(
        default_factory=lambda: ChannelConfig.require_channels(DEFAULT_CHANNELS)
    )
    tools: dict[str, ToolDescription] | None = None

    @classmethod
    def new(cls) -> SystemContent:
        return cls()

    @property
    def valid_channels(self) -> list[str]:
        return list(self.channel_config.valid_channels) if self.channel_config else []

    def with_model_identity(self, model_identity: str | None) -> SystemContent:
        self.model_identity = model_identity
        return self

    def with_reasoning_effort(self, effort: ReasoningEffort | str | None) -> SystemContent:
        self.reasoning_effort = None if effort is None else ReasoningEffort.parse(effort)
        return self

    def with_conversation_start_date(self, date: str | None) -> SystemContent:
        self.conversation_start_date = date
        return self

    def with_knowledge_cutoff(self, cutoff: str | None) -> SystemContent:
        self.knowledge_cutoff = cutoff
        return self

    def with_channel_config(self, config: ChannelConfig | None) -> SystemContent:
        self.channel_config = config
        return self

    def with_required_channels(self, channels: Sequence[str]) -> SystemContent:
        self.channel_config = ChannelConfig.require_channels(channels)
        return self

    def with_tools(self, namespace: ToolDescription) -> SystemContent:
        if self.tools is None:
            self.tools = {}
        self.tools[namespace.name] = namespace
        return self

    def with_browser_tool(self) -> SystemContent:
        from ossagent.agent.harmony.builtin import browser_namespace

        return self.with_tools(browser_namespace())

    def with_python_tool(self) -> SystemContent:
        from ossagent.agent.harmony.builtin import python_namespace

        return self.with_tools(python_namespace())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "system_content"}
        for key in ("model_identity", "conversation_start_date", "knowledge_cutoff"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.reasoning_effort is not None:
            out["reasoning_effort"] = self.reasoning_effort.value
        if self.channel_config is not None:
            out["channel_config"] = {
                "valid_channels": list(self.channel_config.valid_channels),
                "channel_required": self.channel_config.channel_required,
            }
        if self.tools is not None:
            out["tools"] = {key: _namespace_to_dict(ns) for key, ns in self.tools.items()}
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SystemContent:
        """Inverse of :meth:`to_dict`; a missing key means the field is unset (None)."""
        cc = raw.get("channel_config")
        effort = raw.get("reasoning_effort")
        return cls(
            model_identity=raw.get("model_identity"),
            reasoning_effort=None if effort is None else ReasoningEffort.parse(effort),
            conversation_start_date=raw.get("conversation_start_date"),
            knowledge_cutoff=raw.get("knowledge_cutoff"),
            channel_config=None
            if cc is None
            else ChannelConfig(list(cc.get("valid_channels", [])), bool(cc.get("channel_required", True))),
            tools=_tools_from_dict(raw.get("tools")),
        )


@dataclass
class ResponseFormat:
    """A structured-output format announced in the developer message (``# Response Formats``)."""

    name: str
    schema: dict[str, Any]
    description: str | None = None


@dataclass
class DeveloperContent:
    """The developer message: instructions, function tools (namespace ``functions``), response formats."""

    instructions: str | None = None
    tools: dict[str, ToolDescription] | None = None
    response_formats: list[ResponseFormat] = field(default_factory=list)

    @classmethod
    def new(cls) -> DeveloperContent:
        return cls()

    def with_instructions(self, instructions: str | None) -> DeveloperContent:
        self.instructions = instructions
        return self

    def with_tools(self, namespace: ToolDescription) -> DeveloperContent:
        if self.tools is None:
            self.tools = {}
        self.tools[namespace.name] = namespace
        return self

    def with_function_tools(self, functions: Sequence[FunctionDescription]) -> DeveloperContent:
        return self.with_tools(ToolDescription("functions", "", tuple(functions)))

    def with_response_format(
        self, name: str, schema: dict[str, Any], description: str | None = None
    ) -> DeveloperContent:
        self.response_formats.append(ResponseFormat(name, schema, description))
        return self

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "developer_content"}
        if self.instructions is not None:
            out["instructions"] = self.instructions
        if self.tools is not None:
            out["tools"] = {key: _namespace_to_dict(ns) for key, ns in self.tools.items()}
        if self.response_formats:
            out["response_formats"] = [
                {"name": f.name, "schema": f.schema, "description": f.description}
                for f in self.response_formats
            ]
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DeveloperContent:
        try:
            formats = [
                ResponseFormat(f["name"], f["schema"], f.get("description"))
                for f in raw.get("response_formats") or ()
            ]
        except (KeyError, TypeError) as exc:
            raise TranscriptError(f"bad response_formats: {raw.get('response_formats')!r}") from exc
        return cls(raw.get("instructions"), _tools_from_dict(raw.get("tools")), formats)


Content = Union[TextContent, SystemContent, DeveloperContent]  # noqa: UP007 (used at runtime)


def content_from_dict(raw: Any) -> Content:
    if isinstance(raw, str):
        return TextContent(raw)
    if not isinstance(raw, Mapping):
        raise TranscriptError(f"content must be an object, not {raw!r}")
    kind = raw.get("type")
    if kind == "text":
        if not isinstance(raw.get("text"), str):
            raise TranscriptError(f"text content without a string 'text': {raw!r}")
        return TextContent(raw["text"])
    if kind == "system_content":
        return SystemContent.from_dict(raw)
    if kind == "developer_content":
        return DeveloperContent.from_dict(raw)
    raise TranscriptError(f"unknown content type {kind!r} (text, system_content, developer_content)")


@dataclass
class Message:
    author: Author
    content: list[Content] = field(default_factory=list)
    channel: str | None = None
    recipient: str | None = None
    content_type: str | None = None

    @classmethod
    def from_author_and_content(cls, author: Author, content: str | Content) -> Message:
        return cls(author, [TextContent(content) if isinstance(content, str) else content])

    @classmethod
    def from_role_and_content(cls, role: Role, content: str | Content) -> Message:
        return cls.from_author_and_content(Author(role), content)

    @classmethod
    def from_role_and_contents(cls, role: Role, contents: Sequence[Content]) -> Message:
        return cls(Author(role), list(contents))

    @classmethod
    def tool_result(
        cls, name: str, text: str, *, channel: str | None = None, recipient: str | None = "assistant"
    ) -> Message:
        """A tool's answer: author ``name`` (e.g. ``functions.get_weather``), addressed to the assistant."""
        return cls(Author(Role.TOOL, name), [TextContent(text)], channel=channel, recipient=recipient)

    def adding_content(self, content: str | Content) -> Message:
        self.content.append(TextContent(content) if isinstance(content, str) else content)
        return self

    def with_channel(self, channel: str | None) -> Message:
        self.channel = channel
        return self

    def with_recipient(self, recipient: str | None) -> Message:
        self.recipient = recipient
        return self

    def with_content_type(self, content_type: str | None) -> Message:
        self.content_type = content_type
        return self

    @property
    def role(self) -> Role:
        return self.author.role

    @property
    def text(self) -> str:
        """The concatenated text parts (system/developer parts are skipped)."""
        return "".join(c.text for c in self.content if isinstance(c, TextContent))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.author.role.value}
        if self.author.name is not None:
            out["name"] = self.author.name
        out["content"] = [c.to_dict() for c in self.content]
        for key in ("channel", "recipient", "content_type"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Message:
        if not isinstance(raw, Mapping):
            raise TranscriptError(f"a message must be an object, not {raw!r}")
        try:
            role = Role(raw["role"])
        except (KeyError, ValueError):
            raise TranscriptError(
                f"message role must be one of {[r.value for r in Role]}, got {raw.get('role')!r}"
            ) from None
        contents = raw.get("content", [])
        if isinstance(contents, str | Mapping):
            contents = [contents]
        parts = [content_from_dict(c) for c in contents]
        for key in ("name", "channel", "recipient", "content_type"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                raise TranscriptError(f"message {key} must be a string, got {raw[key]!r}")
        return cls(
            Author(role, raw.get("name")),
            parts,
            channel=raw.get("channel"),
            recipient=raw.get("recipient"),
            content_type=raw.get("content_type"),
        )

    @classmethod
    def from_json(cls, payload: str) -> Message:
        try:
            return cls.from_dict(json.loads(payload))
        except json.JSONDecodeError as exc:
            raise TranscriptError(f"not JSON: {exc}") from exc


@dataclass
class Conversation:
    messages: list[Message] = field(default_factory=list)

    @classmethod
    def from_messages(cls, messages: Sequence[Message]) -> Conversation:
        return cls(list(messages))

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    def __len__(self) -> int:
        return len(self.messages)

    def to_dict(self) -> dict[str, Any]:
        return {"messages": [m.to_dict() for m in self.messages]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Conversation:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("messages"), list):
            raise TranscriptError("a conversation is an object with a 'messages' list")
        return cls([Message.from_dict(m) for m in raw["messages"]])

    @classmethod
    def from_json(cls, payload: str) -> Conversation:
        try:
            return cls.from_dict(json.loads(payload))
        except json.JSONDecodeError as exc:
            raise TranscriptError(f"not JSON: {exc}") from exc
