"""How a run's stop reason (:class:`~ossagent.agent.events.Stopped`) reads in each API.

Chat completions' ``finish_reason``: ``stop`` (the model ended its answer, a stop sequence matched, or the run
failed: the error says so), ``tool_calls`` (calls for the caller to run), ``length`` (a token, turn, time or
context limit cut the run). ``content_filter`` is never sent: nothing here filters content.

Responses: a run cut by a limit is ``incomplete`` with ``incomplete_details.reason == "max_output_tokens"``;
a failed run is ``failed``; every other stop is ``completed``.

``incomplete`` (the model closed a reasoning or preamble message with ``<|return|>``, so the turn ended with
no answer) is the model's own stop, not a limit: ``stop`` / ``completed``. Grammar-constrained local runs
cannot produce it (the decoder masks ``<|return|>`` outside a final answer); a remote or unconstrained model can.
"""

from __future__ import annotations

LIMITS = frozenset({"max_tokens", "max_turns", "timeout", "context"})


def finish_reason(reason: str) -> str:
    """The chat ``finish_reason`` for a run's stop reason."""
    if reason == "tool_calls":
        return "tool_calls"
    return "length" if reason in LIMITS else "stop"


def incomplete_reason(reason: str) -> str | None:
    """The Responses ``incomplete_details.reason`` for a run's stop reason, or None when it completed."""
    return "max_output_tokens" if reason in LIMITS else None
