"""A run's context budget, and tool outputs bounded in tokens.

The window is what the backend offers (the local engine's cache ``max_len``, a remote model's configured
window), capped by ``Limits.context``. ``reserve`` tokens stay free for the next completion, so a prompt may
hold ``window - reserve`` tokens (``limit``); past that the run compacts (or stops with
``stop_reason == "context"`` when compaction is off). Compaction aims below ``target`` so that it does
not run again at the next turn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ossagent.tools.base import UserError

if TYPE_CHECKING:
    from ossagent.agent.limits import Limits

LOW_WATER = 0.6  # compaction brings the prompt below this share of the limit
MIN_WINDOW = 256  # smaller windows cannot hold a system message and a turn


def backend_window(backend: Any) -> int | None:
    """The context the backend offers, in tokens (None: unknown, e.g. a remote model without configuration)."""
    window = getattr(backend, "context_window", None)
    return int(window) if window else None


@dataclass(frozen=True)
class ContextBudget:
    """How many tokens a run's prompts and tool outputs may take.

    window: tokens the model's context holds (prompt and completion); None when unknown (no checks).
    reserve: tokens kept free for the next completion.
    tool_output: default bound of one tool output in tokens (None: unbounded).
    per_tool: bounds by recipient (``browser.open``) or namespace (``browser``, ``functions``).
    compaction: shrink the conversation when it outgrows the window; False stops the run instead.
    """

    window: int | None = None
    reserve: int = 0
    tool_output: int | None = None
    per_tool: Mapping[str, int] = field(default_factory=dict)
    compaction: bool = True

    @classmethod
    def resolve(cls, limits: Limits, backend: Any) -> ContextBudget:
        offered = backend_window(backend)
        sizes = [n for n in (limits.context, offered) if n]
        window = min(sizes) if sizes else None
        if window is None:
            return cls(None, 0, limits.tool_output_tokens, dict(limits.tool_output_limits), limits.compaction)
        if window < MIN_WINDOW:
            raise UserError(f"a context of {window} tokens is too small; give at least {MIN_WINDOW}")
        reserve = limits.reserve if limits.reserve is not None else min(limits.max_turn_tokens, window // 4)
        if not 0 < reserve <= window // 2:
            raise UserError(f"the tokens reserved for a completion ({reserve}) must be within 1..{window // 2} "
                            f"(half the {window}-token context)")
        tool_output = limits.tool_output_tokens if limits.tool_output_tokens is not None else window // 4
        return cls(window, reserve, tool_output, dict(limits.tool_output_limits), limits.compaction)

    @property
    def limit(self) -> int | None:
        """The longest prompt that still leaves ``reserve`` tokens for the completion."""
        return None if self.window is None else self.window - self.reserve

    @property
    def target(self) -> int | None:
        """What compaction aims below (so that the next turns do not compact again at once)."""
        return None if self.window is None else int((self.window - self.reserve) * LOW_WATER)

    def fits(self, prompt_tokens: int) -> bool:
        return self.window is None or prompt_tokens <= self.window - self.reserve

    def room(self, prompt_tokens: int) -> int | None:
        """Tokens a completion after this prompt may have before the context is full."""
        return None if self.window is None else self.window - prompt_tokens

    def tool_bound(self, recipient: str) -> int | None:
        """The token bound of an output of ``recipient``: its own, its namespace's, or the default."""
        for key in (recipient, recipient.split(".", 1)[0]):
            if key in self.per_tool:
                return self.per_tool[key]
        return self.tool_output


def cut_note_budget(cut: int, limit: int, recipient: str) -> str:
    """What the model reads where a tool output was cut to its budget."""
    return (f"\n[... {cut} tokens cut here: the output exceeded the {limit}-token budget for {recipient}. "
            "Ask for a smaller part (a line range, a narrower query) to see what was cut ...]\n")


def cut_note_compaction(cut: int, recipient: str) -> str:
    """What the model reads where an old tool output was shortened to free context."""
    return (f"\n[... {cut} tokens cut here to free context (you saw them earlier). To read them again, repeat "
            f"the call to {recipient} (re-open the page or cursor, read the file again) ...]\n")


def head_tail(text: str, keep: int, encoding: Any, note: Any) -> tuple[str, int]:
    """``text`` cut to about ``keep`` tokens: two thirds from the start, a third from the end, and
    ``note(cut)`` between them. Returns (text, tokens cut); the text is unchanged when it fits."""
    tokens = encoding.encode_ordinary(text)
    if len(tokens) <= keep:
        return text, 0
    note_len = len(encoding.encode_ordinary(note(len(tokens))))
    room = max(keep - note_len, 2)
    head, tail = (room * 2) // 3, room - (room * 2) // 3
    cut = len(tokens) - head - tail
    return encoding.decode(tokens[:head]) + note(cut) + encoding.decode(tokens[len(tokens) - tail :]), cut


def bound_tool_output(text: str, recipient: str, budget: ContextBudget, encoding: Any) -> tuple[str, int]:
    """A tool's output as it enters the conversation: within its token budget. Returns (text, tokens cut)."""
    limit = budget.tool_bound(recipient)
    if limit is None or len(text.encode("utf-8")) <= limit:  # a token is at least one byte: short texts fit
        return text, 0
    return head_tail(text, limit, encoding, lambda cut: cut_note_budget(cut, limit, recipient))
