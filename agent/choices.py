"""The two request options that travel from where a request enters (the server's edge, the CLI, the Python
API) down to the prompt, the backends and the grammar hook: :class:`ReasoningEffort` and :class:`ToolChoice`.

Each is parsed once, where it enters, into its one type; everything below takes the type. Spellings that
belong to one edge (the server's ``minimal`` effort, the OpenAI ``{"type": "function", ...}`` forms) are
read at that edge or by :meth:`ToolChoice.parse`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ossagent.agent.harmony.messages import ReasoningEffort, TranscriptError
from ossagent.tools.base import UserError

EFFORTS = tuple(e.value for e in ReasoningEffort)  # ("low", "medium", "high")
MODES = ("auto", "none", "required", "function")

__all__ = ["EFFORTS", "MODES", "ReasoningEffort", "ToolChoice", "effort"]


def effort(value: ReasoningEffort | str | None) -> ReasoningEffort | None:
    """None (the system message states no effort) or the effort; anything else is a :class:`UserError`."""
    if value is None:
        return None
    try:
        return ReasoningEffort.parse(getattr(value, "value", value))  # another library's enum reads as its value
    except TranscriptError:
        raise UserError(f"reasoning effort must be one of {', '.join(EFFORTS)}, not {value!r}") from None


@dataclass(frozen=True)
class ToolChoice:
    """``auto`` (the model decides), ``none`` (no function call can be written), ``required`` (the turn
    ends in a tool call), or ``function`` with ``name`` (the turn ends in a call to that function)."""

    mode: str = "auto"
    name: str | None = None

    @classmethod
    def parse(cls, value: ToolChoice | str | tuple[str, str] | Mapping[str, Any] | None) -> ToolChoice:
        """Accepts ``"auto" | "none" | "required"``, a ToolChoice, ``("function", NAME)``, or the OpenAI forms
        ``{"type": "function", "name": N}`` / ``{"type": "function", "function": {"name": N}}``."""
        if value is None:
            return cls()
        if isinstance(value, ToolChoice):
            return value
        if isinstance(value, str):
            if value in ("auto", "none", "required"):
                return cls(value)
            raise UserError(f"tool_choice {value!r}: use auto, none, required, or {{'type': 'function', 'name': ...}}")
        if isinstance(value, tuple) and len(value) == 2 and value[0] == "function" and isinstance(value[1], str):
            return cls("function", value[1])
        if isinstance(value, Mapping) and value.get("type") == "function":
            fn = value.get("function")
            name = value.get("name") or (fn.get("name") if isinstance(fn, Mapping) else None)
            if isinstance(name, str) and name:
                return cls("function", name)
        raise UserError(f"tool_choice {value!r} is not understood")

    @property
    def forced(self) -> bool:
        """The turn must end in a call (``required`` or a named function)."""
        return self.mode in ("required", "function")

    def check(self, functions: Collection[str], has_tools: bool) -> ToolChoice:
        """This choice, if the agent's tools allow it (``functions``: the declared function names)."""
        if self.mode == "function" and self.name not in functions:
            raise UserError(f"tool_choice {('function', self.name)!r} does not name one of the functions "
                            f"{sorted(functions)}")
        if self.mode == "required" and not has_tools:
            raise UserError("tool_choice is 'required' but the agent has no tools")
        return self

    def to_openai(self) -> str | dict[str, Any]:
        """The chat-completions spelling (``"auto"`` or ``{"type": "function", "function": {"name": N}}``)."""
        if self.mode == "function":
            return {"type": "function", "function": {"name": self.name}}
        return self.mode
