"""Harmony replies of a scripted model, and a backend source that gives each trial its own script."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ossagent.agent import ScriptedBackend
from ossagent.agent.eval.runner import Trial

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples" / "eval"


def js(value: Any) -> str:
    """JSON as a constrained model writes it (compact)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def final(text: str, think: str = "Done.") -> str:
    return f"<|channel|>analysis<|message|>{think}<|end|><|start|>assistant<|channel|>final<|message|>{text}<|return|>"


def python(code: str, think: str = "Run code.") -> str:
    return (f"<|channel|>analysis<|message|>{think}<|end|><|start|>assistant to=python<|channel|>analysis"
            f"<|message|>{code}<|call|>")


def call(recipient: str, args: dict[str, Any], think: str = "Call it.") -> str:
    channel = "commentary" if recipient.startswith("functions.") else "analysis"
    return (f"<|channel|>analysis<|message|>{think}<|end|><|start|>assistant to={recipient}<|channel|>{channel}"
            f" <|constrain|>json<|message|>{js(args)}<|call|>")


class Scripts:
    """Per trial a constrained :class:`ScriptedBackend` (its replies checked against the grammar) from
    ``replies(trial)``; every backend handed out must be used up (:meth:`check`)."""

    def __init__(self, replies: Callable[[Trial], Sequence[str]]) -> None:
        self.replies = replies
        self.backends: list[tuple[str, ScriptedBackend]] = []

    def __call__(self, trial: Trial) -> ScriptedBackend:
        backend = ScriptedBackend(list(self.replies(trial)), constrained=True)
        self.backends.append((trial.key, backend))
        return backend

    @property
    def keys(self) -> list[str]:
        return [k for k, _ in self.backends]

    def check(self) -> None:
        for _, b in self.backends:
            b.assert_consumed()
