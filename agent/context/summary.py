"""The model summarises the oldest turns of its own conversation when the context fills up.

The request continues the conversation itself (same system and developer messages, the turns to replace,
then one user message asking for the summary), so the local engine reuses the cached prefix and computes
only the request. The answer is JSON of a small schema (facts, open tasks, citations), constrained by
grammar when the backend takes step hooks; it replaces the summarised turns as one message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ossagent.agent import prompt as hp
from ossagent.agent.backends.base import Backend, GenerationParams
from ossagent.agent.choices import ToolChoice
from ossagent.agent.functions import ResponseFormat
from ossagent.agent.transcript import Msg
from ossagent.tools.base import ModelError

if TYPE_CHECKING:
    from ossagent.model.hooks import StepHook

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "facts": {"type": "array", "maxItems": 40, "items": {"type": "string", "maxLength": 400}},
        "open_tasks": {"type": "array", "maxItems": 12, "items": {"type": "string", "maxLength": 300}},
        "citations": {"type": "array", "maxItems": 24, "items": {"type": "string", "maxLength": 300}},
    },
    "required": ["facts", "open_tasks", "citations"],
    "additionalProperties": False,
}
FORMAT_NAME = "context_summary"

REQUEST = (
    "Your context is full. The conversation above, up to this message, is about to be replaced by the summary "
    "you write now; you will not see it again. Answer with JSON only, as "
    '{"facts": [...], "open_tasks": [...], "citations": [...]}. facts: everything learned so far that may still '
    "matter, with exact values (numbers, names, dates, paths, URLs, ids, results of tool calls). open_tasks: "
    "what remains to be done for the user. citations: the sources you may cite later (URLs, file paths, "
    "browser citation markers such as \u30103\u2020L10-L15\u3011)."
)


def summary_format() -> ResponseFormat:
    return ResponseFormat.from_schema(FORMAT_NAME, SCHEMA, "A summary of the conversation so far.")


def summary_text(summary: dict[str, Any], replaced: int) -> str:
    """The message that stands for the summarised turns in later prompts (a user message)."""
    body = json.dumps({k: summary.get(k, []) for k in ("facts", "open_tasks", "citations")}, ensure_ascii=False)
    return (f"[Context summary] {replaced} earlier messages of this conversation were replaced by this summary, "
            "which you wrote when the context filled up. Their full text is no longer shown; call a tool again "
            f"to re-read a source.\n{body}")


@dataclass(frozen=True)
class SummaryResult:
    summary: dict[str, Any] | None
    completion_tokens: int
    error: str | None = None


# (the request's conversation after the system and developer messages, its tokens, max tokens) -> result
Summariser = Callable[[list[Msg], list[int], int], SummaryResult]


class ModelSummariser:
    """Asks the run's backend for the summary; ``hook`` makes a grammar hook for the JSON (or None)."""

    def __init__(
        self, backend: Backend, encoding: Any, config: hp.PromptConfig, *,
        hook: Callable[[], StepHook | None] | None = None, temperature: float = 1.0, seed: int | None = None,
    ) -> None:
        self.backend, self.encoding, self.hook = backend, encoding, hook
        self.format = summary_format()
        fmt = (self.format.name, self.format.schema, self.format.description or None)
        # remote backends send the structured request: ask them for this format
        self.config = replace(config, response_format=fmt)
        self.temperature, self.seed = temperature, seed

    def __call__(self, messages: list[Msg], prompt: list[int], max_tokens: int) -> SummaryResult:
        params = GenerationParams(max_tokens=max_tokens, temperature=self.temperature, seed=self.seed)
        request = hp.build_prompt(self.config, messages, self.encoding, ToolChoice("none"), prompt)
        out: list[int] = []
        stream = self.backend.generate(request, params, self.hook() if self.hook else None)
        try:
            for tok in stream:
                out.append(tok)
        except Exception as exc:  # the backend failed: the summary step fails, the run stops cleanly
            return SummaryResult(None, len(out), f"{type(exc).__name__}: {exc}")
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        finals = [m for m in hp.parse_completion(out, self.encoding)
                  if m.role == "assistant" and m.channel == "final" and not m.meta.get("truncated")]
        if not finals:
            return SummaryResult(None, len(out), f"no complete final answer within {max_tokens} tokens")
        try:
            value = self.format.parse(finals[-1].text)
        except ModelError as exc:
            return SummaryResult(None, len(out), str(exc))
        return SummaryResult(dict(value), len(out))
