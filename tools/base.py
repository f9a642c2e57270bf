"""What every tool shares: its model-visible description, its call, and errors split by fault.

A tool owns the text the model sees about it (:meth:`Tool.description`); the harmony layer in
``ossagent.agent`` only renders it. Errors:

* :class:`UserError` — the caller configured something wrong; raised at construction, never shown to the model.
* :class:`ModelError` — the model called the tool wrongly (bad arguments, unknown function, bad cursor);
  its message tells the model how to recover and goes back to it as the tool's answer.
* :class:`ToolFailure` — the tool itself failed (timeout, crash, network); also goes back to the model,
  with what it can do next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class UserError(ValueError):
    """Bad configuration from the person using ossagent."""


class ToolCallError(Exception):
    """A failed call whose message is written for the model."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def for_model(self) -> str:
        return f"{self.args[0]}\n{self.hint}" if self.hint else str(self.args[0])


class ModelError(ToolCallError):
    """The model's fault: invalid arguments, an unknown function, a cursor that does not exist."""


class ToolFailure(ToolCallError):
    """The tool's fault: a timeout, a crash, a page that could not be fetched."""


@dataclass(frozen=True)
class FunctionDescription:
    """One function of a namespace: ``browser.search``, ``functions.get_weather``."""

    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None  # JSON Schema of the arguments; None for free-form input


@dataclass(frozen=True)
class ToolDescription:
    """A namespace as the model sees it in the system or developer message."""

    name: str
    description: str
    functions: tuple[FunctionDescription, ...] = ()


@dataclass
class ToolResult:
    """What goes back to the model as a tool message (author = ``recipient``)."""

    recipient: str  # the address the model used, e.g. "browser.search" or "python"
    text: str
    is_error: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)  # citations, state-lost flags, timings


@runtime_checkable
class Tool(Protocol):
    """A namespace of callable functions (or a single free-form tool like ``python``)."""

    @property
    def name(self) -> str: ...

    def description(self) -> ToolDescription: ...

    def call(self, recipient: str, content: str) -> ToolResult:
        """Run ``recipient`` (``"python"`` or ``"browser.open"``) on the message body ``content``.

        Raises :class:`ModelError` or :class:`ToolFailure`; the agent loop turns those into tool messages.
        """
        ...

    def close(self) -> None: ...


def escape_controls(text: str, keep: str = "") -> str:
    """``text`` with control characters (C0, DEL, C1, line and paragraph separators) and undecodable bytes
    (lone surrogates from ``os.fsdecode``) written as escapes, so a name or a line planted by sandboxed code
    cannot add lines to a listing or carry terminal sequences. Characters in ``keep`` pass unchanged."""
    out = []
    for c in text:
        n = ord(c)
        if c in keep or not (n < 0x20 or 0x7F <= n < 0xA0 or n in (0x2028, 0x2029) or 0xDC80 <= n <= 0xDCFF):
            out.append(c)
        elif 0xDC80 <= n <= 0xDCFF:
            out.append(f"\\x{n - 0xDC00:02x}")
        else:
            out.append(f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}")
    return "".join(out)
