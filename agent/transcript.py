"""A run's transcript: every message after the system and developer messages, saved as JSONL.

The first line is a header (format version, the agent's settings that shaped the prompt); every other
line is one message. :meth:`Transcript.load` reads it back, so a run can be inspected, replayed or
resumed with :meth:`ossagent.agent.loop.Agent.run` (``transcript=``). Messages are plain data with the
fields harmony gives a message: role, author name (tools), recipient, channel, content type, text.

Compaction (:mod:`ossagent.agent.context.compaction`) never deletes or rewrites a message: it marks them in
``meta["compacted"]`` (hidden from later prompts, or shown as a shorter ``text``) and inserts the summary
that replaces hidden ones (``meta["summary"]``); :meth:`Transcript.prompt_messages` is what the model sees.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

FORMAT = "ossagent.transcript/1"
ROLES = ("system", "developer", "user", "assistant", "tool")


class TranscriptError(ValueError):
    """A transcript file that cannot be read back (the user's fault: wrong file, edited by hand)."""


@dataclass(frozen=True)
class Msg:
    role: str
    text: str
    name: str | None = None  # the tool's name for role "tool" (e.g. "functions.get_weather", "python")
    recipient: str | None = None  # set on tool calls
    channel: str | None = None
    content_type: str | None = None  # "<|constrain|>json", "code", "json"
    meta: dict[str, Any] = field(default_factory=dict, compare=False)  # call ids, citations; not rendered

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise TranscriptError(f"unknown role {self.role!r}; expected one of {ROLES}")
        if self.role == "tool" and not self.name:
            raise TranscriptError("a tool message needs the tool's name (who answers)")

    @property
    def is_tool_call(self) -> bool:
        return self.role == "assistant" and self.recipient is not None and self.recipient != "all"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {})}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Msg:
        unknown = set(data) - {"role", "text", "name", "recipient", "channel", "content_type", "meta"}
        if unknown:
            raise TranscriptError(f"unknown message fields {sorted(unknown)}")
        if "role" not in data or "text" not in data:
            raise TranscriptError(f"a message needs 'role' and 'text': {data!r}")
        return cls(**data)

    def with_meta(self, **meta: Any) -> Msg:
        return replace(self, meta={**self.meta, **meta})


def shown(msg: Msg) -> Msg | None:
    """A message as later prompts show it: None when compaction hid it, its excerpt when it shortened it."""
    mark = msg.meta.get("compacted")
    if not mark:
        return msg
    if mark.get("hidden"):
        return None
    return replace(msg, text=str(mark["text"])) if "text" in mark else msg


def user(text: str) -> Msg:
    return Msg("user", text)


def tool_result(name: str, text: str, *, channel: str | None = None, **meta: Any) -> Msg:
    return Msg("tool", text, name=name, recipient="assistant", channel=channel, meta=meta)


@dataclass
class Transcript:
    """Messages of a conversation plus the settings that framed it."""

    messages: list[Msg] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Msg]:
        return iter(self.messages)

    def __len__(self) -> int:
        return len(self.messages)

    def append(self, msg: Msg) -> None:
        self.messages.append(msg)

    def extend(self, msgs: Iterable[Msg]) -> None:
        self.messages.extend(msgs)

    def copy(self) -> Transcript:
        return Transcript(list(self.messages), dict(self.settings))

    def prompt_messages(self) -> list[Msg]:
        """The conversation as the next prompt shows it (after compactions; see :func:`shown`)."""
        return [m for m in map(shown, self.messages) if m is not None]

    def pending_tool_call(self) -> Msg | None:
        """The last message, when it is a tool call nobody answered yet."""
        return self.messages[-1] if self.messages and self.messages[-1].is_tool_call else None

    def dumps(self) -> str:
        lines = [json.dumps({"format": FORMAT, "settings": self.settings}, ensure_ascii=False)]
        lines += [json.dumps(m.to_dict(), ensure_ascii=False) for m in self.messages]
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.dumps(), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def loads(cls, text: str, origin: str = "<string>") -> Transcript:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if not lines:
            raise TranscriptError(f"{origin}: empty transcript")
        try:
            header = json.loads(lines[0])
        except json.JSONDecodeError as exc:
            raise TranscriptError(f"{origin}:1: not JSON: {exc}") from exc
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise TranscriptError(f"{origin}:1: not an ossagent transcript (expected format {FORMAT!r})")
        msgs = []
        for i, line in enumerate(lines[1:], start=2):
            try:
                msgs.append(Msg.from_dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError, TranscriptError) as exc:
                raise TranscriptError(f"{origin}:{i}: {exc}") from exc
        return cls(msgs, dict(header.get("settings") or {}))

    @classmethod
    def load(cls, path: str | Path) -> Transcript:
        path = Path(path)
        return cls.loads(path.read_text(encoding="utf-8"), str(path))
