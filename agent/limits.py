"""Run limits and the incremental stop-sequence matcher the loop uses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ossagent.tools.base import UserError


@dataclass(frozen=True)
class Limits:
    """When a run stops even without a final answer.

    max_turns: model calls (one per tool round trip). max_tokens: completion tokens over the whole run.
    max_time: wall-clock seconds for the run (checked between tokens and before each turn).
    max_turn_tokens: completion tokens per model call.

    The context budget (:mod:`ossagent.agent.context`): context caps the window in tokens (None: what the
    backend offers, e.g. the engine's cache); reserve is kept free for the next completion (None: the smaller
    of max_turn_tokens and a quarter of the window); compaction shrinks a conversation that outgrew the
    window (False: the run stops with ``stop_reason == "context"``); tool_output_tokens bounds one tool
    output (None: a quarter of the window), tool_output_limits per recipient or namespace
    (``{"browser": 2000, "functions.fetch_logs": 500}``).
    """

    max_turns: int = 20
    max_tokens: int | None = None
    max_time: float | None = None
    max_turn_tokens: int = 8192
    context: int | None = None
    reserve: int | None = None
    compaction: bool = True
    tool_output_tokens: int | None = None
    tool_output_limits: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_turns < 1:
            raise UserError(f"max_turns must be at least 1, not {self.max_turns}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise UserError(f"max_tokens must be at least 1, not {self.max_tokens}")
        if self.max_time is not None and self.max_time <= 0:
            raise UserError(f"max_time must be positive, not {self.max_time}")
        if self.max_turn_tokens < 1:
            raise UserError(f"max_turn_tokens must be at least 1, not {self.max_turn_tokens}")
        if self.context is not None and self.context < 1:
            raise UserError(f"context must be at least 1 token, not {self.context}")
        if self.reserve is not None and self.reserve < 1:
            raise UserError(f"reserve must be at least 1 token, not {self.reserve}")
        bounds = {"tool_output_tokens": self.tool_output_tokens, **{f"tool_output_limits[{k!r}]": v
                                                                     for k, v in self.tool_output_limits.items()}}
        for name, value in bounds.items():
            if value is not None and value < 16:
                raise UserError(f"{name} must be at least 16 tokens, not {value}")


class StopMatcher:
    """Cuts streamed text at the first stop sequence, holding back what could still become one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        if any(not s for s in stops):
            raise UserError("stop sequences must be non-empty strings")
        self.stops = stops
        self._held = ""
        self.hit = False

    def feed(self, text: str) -> str:
        """Return the text that is safe to emit now."""
        if self.hit or not self.stops:
            return "" if self.hit else text
        buf = self._held + text
        cut = min((i for i in (buf.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.hit = True
            self._held = ""
            return buf[:cut]
        keep = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(buf)), 0, -1):
                if buf.endswith(s[:k]):
                    keep = max(keep, k)
                    break
        self._held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep]

    def flush(self) -> str:
        out, self._held = ("" if self.hit else self._held), ""
        return out
