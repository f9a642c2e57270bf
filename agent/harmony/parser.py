"""A tolerant streaming parser for harmony completions, fed one sampled token at a time.

It never raises on tokens: whatever the model writes, what was parsed is kept, and anything wrong
(a malformed header, a missing channel, a stray special token, a truncated completion) becomes a
:class:`Problem` in :attr:`StreamParser.problems` (the model's fault, for the agent loop to act on).

Where it differs from openai-harmony's ``StreamableParser`` (strict mode), on purpose:

* The recipient may come before or after the channel, ``<|constrain|> json`` (with a space) is read as
  ``<|constrain|>json``, and a bare header word is a content type, never a recipient (the reference turns
  ``<|channel|>final json`` into recipient ``json``).
* ``role:name`` headers (``user:alice``) parse to an author name, and a tool author without further
  header words (``<|start|>functions.x<|message|>``) parses; the reference rejects both.
* ``<|start|>`` inside content or a header ends the broken message (a problem) and starts a new one,
  instead of being decoded into the text or the header.
* Deltas never drop text: content is decoded with an incremental UTF-8 decoder that holds back an
  incomplete sequence and replaces invalid bytes with U+FFFD; the final text is the deltas joined.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from ossagent.agent.harmony.messages import Author, Message, Role, TextContent
from ossagent.agent.harmony.tokens import CALL, CHANNEL, CONSTRAIN, END, FIRST_SPECIAL, MESSAGE, RETURN, START

STOP_TOKENS = frozenset({RETURN, END, CALL})
HEADER_SPECIALS = frozenset({CHANNEL, CONSTRAIN})
CONSTRAIN_TEXT = "<|constrain|>"
CHANNEL_TEXT = "<|channel|>"
_ROLE_NAMES = {r.value: r for r in Role if r is not Role.TOOL}
_CHANNEL_END = re.compile(r"[\s<]")
MAX_LIVE_HEADER = 1024  # header bytes the live current_* view reads (gpt-oss writes headers under 200 bytes)


@dataclass(frozen=True)
class Problem:
    """Something the model wrote that is not well-formed harmony; parsing went on."""

    # malformed_header | missing_channel | unknown_channel | call_without_recipient | stray_token |
    # stray_special | truncated | empty | internal (a parser bug, reported instead of raised)
    kind: str
    message: str
    text: str = ""  # the text involved (a broken header, stray text), so nothing is lost
    token_index: int = -1  # position in the token stream where it was noticed

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "text": self.text, "token_index": self.token_index}


@dataclass(frozen=True)
class MessageStart:
    author: Author
    channel: str | None
    recipient: str | None
    content_type: str | None

    @property
    def role(self) -> Role:
        return self.author.role


@dataclass(frozen=True)
class ContentDelta:
    text: str


@dataclass(frozen=True)
class MessageDone:
    message: Message
    stop_token: int | None  # <|end|>, <|call|>, <|return|>, or None when it was cut off


Event = Union[MessageStart, ContentDelta, MessageDone, Problem]  # noqa: UP007 (used at runtime)


@dataclass
class Header:
    author: Author
    channel: str | None = None
    recipient: str | None = None
    content_type: str | None = None
    problems: list[str] = field(default_factory=list)
    leftover: str = ""


def _split_role(word: str) -> Author:
    role = _ROLE_NAMES.get(word)
    if role is not None:
        return Author(role)
    base, sep, name = word.partition(":")
    if sep and base in _ROLE_NAMES and name:
        return Author(_ROLE_NAMES[base], name)
    return Author(Role.TOOL, word)


def parse_header(text: str, implied: Role | None) -> Header:
    """Read a header's decoded text (specials as their literal text); problems are collected, not raised."""
    problems: list[str] = []
    channel = None
    idx = text.find(CHANNEL_TEXT)
    if idx >= 0:
        after = text[idx + len(CHANNEL_TEXT) :]
        m = _CHANNEL_END.search(after)
        end = m.start() if m else len(after)
        channel = after[:end] or None
        if channel is None:
            problems.append("<|channel|> without a channel name")
        text = text[:idx] + " " + after[end:]
        if CHANNEL_TEXT in text:
            problems.append("more than one <|channel|> in the header")
            text = text.replace(CHANNEL_TEXT, " ")
    text = text.replace(CONSTRAIN_TEXT, " " + CONSTRAIN_TEXT)
    parts = text.split()
    # "<|constrain|> json" (a space after the marker) means "<|constrain|>json"
    merged: list[str] = []
    for part in parts:
        if merged and merged[-1] == CONSTRAIN_TEXT and not part.startswith(("to=", CONSTRAIN_TEXT)):
            merged[-1] += part
        else:
            merged.append(part)
    parts = merged
    if implied is not None:
        author = Author(implied)
        if parts and parts[0] == implied.value:
            parts.pop(0)
    elif parts and not parts[0].startswith("to="):
        author = _split_role(parts.pop(0))
    else:
        problems.append("the header has no role")
        author = Author(Role.ASSISTANT)  # only the assistant writes messages after a prompt
    recipient = content_type = None
    leftover = []
    for part in parts:
        if part.startswith("to="):
            if recipient is None:
                recipient = part[3:]
                continue
        elif content_type is None:
            content_type = part
            continue
        leftover.append(part)
    if leftover:
        problems.append(f"unexpected words in the header: {' '.join(leftover)!r}")
    return Header(author, channel, recipient, content_type, problems, " ".join(leftover))


class StreamParser:
    """Feed sampled tokens with :meth:`process`; call :meth:`finish` at the end of the stream.

    ``role`` is the role whose ``<|start|>role`` ended the prompt (assistant by default): the first
    message's header is read without ``<|start|>``. With ``role=None`` the stream must begin with
    ``<|start|>``. ``require_channel``: an assistant message without a channel is reported (gpt-oss
    always writes one). ``valid_channels`` (e.g. the system message's): any other channel is reported.
    """

    def __init__(
        self,
        encoding: Any | None = None,
        role: Role | None = Role.ASSISTANT,
        *,
        require_channel: bool = True,
        valid_channels: Sequence[str] | None = None,
    ) -> None:
        if encoding is None:
            from ossagent.model.tokenizer import o200k_harmony

            encoding = o200k_harmony()
        self.encoding = encoding
        self.require_channel = require_channel
        self.valid_channels = None if valid_channels is None else frozenset(valid_channels)
        self.messages: list[Message] = []
        self.problems: list[Problem] = []
        self.tokens: list[int] = []
        self._implied: Role | None = role
        self._state = "header" if role is not None else "expect_start"
        self._header_tokens: list[int] = []
        self._header_bytes = bytearray()  # the header's bytes so far, for the live view
        self._live: tuple[int, Header] | None = None  # the live view and how many header bytes it read
        self._header: Header | None = None
        self._content: list[str] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._stray: list[int] = []
        self._finished = False

    # -- public state ---------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``expect_start``, ``header`` or ``content``."""
        return self._state

    def _live_header(self) -> Header | None:
        if self._state == "content":
            return self._header
        if self._state == "header" and (self._header_tokens or self._implied is not None):
            # Parsed again only when it grew, and only its first MAX_LIVE_HEADER bytes: calling current_* after
            # every token costs O(header) in all, not O(header**2). The whole header is parsed at <|message|>.
            seen = min(len(self._header_bytes), MAX_LIVE_HEADER)
            if self._live is None or self._live[0] != seen:
                text = bytes(self._header_bytes[:seen]).decode("utf-8", "replace")
                self._live = (seen, parse_header(text, self._implied))
            return self._live[1]
        return None

    @property
    def current_role(self) -> Role | None:
        header = self._live_header()
        return header.author.role if header else None

    @property
    def current_channel(self) -> str | None:
        """Known as soon as the channel name is complete in the header, not only after ``<|message|>``."""
        header = self._live_header()
        return header.channel if header else None

    @property
    def current_recipient(self) -> str | None:
        header = self._live_header()
        return header.recipient if header else None

    @property
    def current_content_type(self) -> str | None:
        return self._header.content_type if self._state == "content" and self._header else None

    @property
    def current_content(self) -> str:
        return "".join(self._content) if self._state == "content" else ""

    @property
    def header_text(self) -> str:
        """The current header decoded so far ('' outside a header)."""
        return self._decode_lossy(self._header_tokens) if self._state == "header" else ""

    # -- feeding ----------------------------------------------------------------------------------

    def process(self, token: int) -> list[Event]:
        events: list[Event] = []
        try:
            self._step(int(token), events)
        except Exception as exc:  # a bug here must not take the agent down; report it as data
            self._problem(events, "internal", f"parser error on token {token!r}: {exc!r}")
        return events

    def process_all(self, tokens: Iterable[int]) -> list[Event]:
        events: list[Event] = []
        for token in tokens:
            events += self.process(token)
        return events

    def finish(self) -> list[Event]:
        """End of stream: complete a cut-off message (reported as truncated)."""
        events: list[Event] = []
        if self._finished:
            return events
        self._finished = True
        try:
            self._finish(events)
        except Exception as exc:  # as in process(): report, never raise
            self._problem(events, "internal", f"parser error at the end of the stream: {exc!r}")
        return events

    def _finish(self, events: list[Event]) -> None:
        self._flush_stray(events)
        if self._state == "content":
            tail = self._decoder.decode(b"", final=True)
            if tail:
                self._content.append(tail)
                events.append(ContentDelta(tail))
            self._problem(events, "truncated", "the completion ended inside a message (no stop token)")
            self._done(events, None)
        elif self._state == "header":
            text = self._decode_lossy(self._header_tokens)
            if self._header_tokens:
                self._problem(events, "truncated", "the completion ended inside a message header", text)
            elif not self.tokens:
                self._problem(events, "empty", "the completion is empty")
            elif self._implied is None:
                self._problem(events, "truncated", "the completion ended right after <|start|>")
        self._state = "expect_start"

    # -- internals --------------------------------------------------------------------------------

    def _decode_lossy(self, tokens: Sequence[int]) -> str:
        raw = b"".join(self._token_bytes(t) or b"" for t in tokens)
        return raw.decode("utf-8", "replace")

    def _token_bytes(self, token: int) -> bytes | None:
        try:
            return bytes(self.encoding.decode_single_token_bytes(token))
        except (KeyError, ValueError, OverflowError):
            return None

    def _problem(self, events: list[Event], kind: str, message: str, text: str = "") -> None:
        problem = Problem(kind, message, text, len(self.tokens) - 1)
        self.problems.append(problem)
        events.append(problem)

    def _flush_stray(self, events: list[Event]) -> None:
        if self._stray:
            text = self._decode_lossy(self._stray)
            self._problem(events, "stray_token", f"{len(self._stray)} token(s) outside any message", text)
            self._stray = []

    def _step(self, token: int, events: list[Event]) -> None:
        self.tokens.append(token)
        if self._finished:  # more tokens after finish(): reopen
            self._finished = False
        if self._state == "expect_start":
            if token == START:
                self._flush_stray(events)
                self._begin_header()
            else:
                self._stray.append(token)
        elif self._state == "header":
            self._header_step(token, events)
        else:
            self._content_step(token, events)

    def _begin_header(self, implied: Role | None = None) -> None:
        self._state = "header"
        self._implied = implied
        self._header_tokens = []
        self._header_bytes = bytearray()
        self._live = None

    def _header_step(self, token: int, events: list[Event]) -> None:
        if token == MESSAGE:
            self._open_message(events)
        elif token == START:
            text = self._decode_lossy(self._header_tokens)
            self._problem(events, "malformed_header", "<|start|> inside a message header", text)
            self._begin_header()
        elif token in STOP_TOKENS:
            self._headerless_message(token, events)
        elif (raw := self._token_bytes(token)) is None:
            self._problem(events, "stray_special", f"token {token} is not in the vocabulary")
        else:
            self._header_tokens.append(token)
            self._header_bytes += raw

    def _open_message(self, events: list[Event]) -> None:
        header = parse_header(self._decode_lossy(self._header_tokens), self._implied)
        text = self._decode_lossy(self._header_tokens)
        for p in header.problems:
            self._problem(events, "malformed_header", p, text)
        if (
            header.channel is None
            and self.require_channel
            and header.author.role is Role.ASSISTANT
            and CHANNEL_TEXT not in text
        ):
            self._problem(events, "missing_channel", "the message header has no <|channel|>", text)
        if header.channel is not None and self.valid_channels is not None and header.channel not in self.valid_channels:
            valid = ", ".join(sorted(self.valid_channels))
            self._problem(events, "unknown_channel", f"channel {header.channel!r} is not one of: {valid}", text)
        self._header = header
        self._implied = None
        self._state = "content"
        self._content = []
        self._decoder.reset()
        events.append(MessageStart(header.author, header.channel, header.recipient, header.content_type))

    def _headerless_message(self, stop: int, events: list[Event]) -> None:
        """A stop token before <|message|>: keep the header's words as the message text."""
        text = self._decode_lossy(self._header_tokens)
        self._problem(events, "malformed_header", "a stop token came before <|message|>", text)
        if self._header_tokens:
            header = parse_header(text, self._implied)
            header.content_type = header.recipient = None
            words = text
            if header.channel is not None:
                words = text.replace(CHANNEL_TEXT + header.channel, " ", 1)
            body = words.split()
            implied = self._implied
            if body and (implied is None or body[0] == implied.value):
                body.pop(0)  # the role word
            self._header = header
            events.append(MessageStart(header.author, header.channel, None, None))
            self._content = [" ".join(body)] if body else []
            if body:
                events.append(ContentDelta(self._content[0]))
            self._done(events, stop)
        self._state = "expect_start"
        self._implied = None

    def _content_step(self, token: int, events: list[Event]) -> None:
        if token in STOP_TOKENS:
            tail = self._decoder.decode(b"", final=True)
            if tail:
                self._content.append(tail)
                events.append(ContentDelta(tail))
            self._done(events, token)
            self._state = "expect_start"
            return
        if token == START:
            self._problem(events, "stray_special", "<|start|> inside a message: it was not ended")
            tail = self._decoder.decode(b"", final=True)
            if tail:
                self._content.append(tail)
                events.append(ContentDelta(tail))
            self._done(events, None)
            self._begin_header()
            return
        raw = self._token_bytes(token)
        if raw is None:
            self._problem(events, "stray_special", f"token {token} is not in the vocabulary")
            return
        if token >= FIRST_SPECIAL:
            self._problem(events, "stray_special", f"special token {raw.decode('utf-8', 'replace')} in content")
        text = self._decoder.decode(raw)
        if text:
            self._content.append(text)
            events.append(ContentDelta(text))

    def _done(self, events: list[Event], stop: int | None) -> None:
        assert self._header is not None
        h = self._header
        msg = Message(h.author, [TextContent("".join(self._content))], h.channel, h.recipient, h.content_type)
        if stop == CALL and h.recipient is None:
            self._problem(events, "call_without_recipient", "<|call|> ended a message that has no to=recipient")
        self.messages.append(msg)
        self._content = []
        self._decoder.reset()
        events.append(MessageDone(msg, stop))


def parse_completion(
    tokens: Iterable[int], role: Role | None = Role.ASSISTANT, *, encoding: Any | None = None
) -> tuple[list[Message], list[Problem]]:
    """Parse a whole completion (the tokens after the prompt's ``<|start|>role``)."""
    parser = StreamParser(encoding, role)
    parser.process_all(tokens)
    parser.finish()
    return parser.messages, parser.problems
