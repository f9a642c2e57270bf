"""Which tool calls run without a person saying yes: a policy, pending calls, and the decisions on them.

A :class:`Policy` maps ``NAMESPACE.FUNCTION`` or ``NAMESPACE`` (or ``*``) to ``allow``, ``ask`` or ``deny``.
Without a rule, a tool's own default applies (an MCP server's tools: ``ask``, see
:meth:`ossagent.agent.mcp.MCPTool.default_approval`); a browser page action that would submit a form,
download or upload (``PageTool.side_effect``) gets ``side_effects``; everything else gets ``default``
(``allow``: reading, python in its sandbox, workspace files).

``ask`` pauses the run: :meth:`ossagent.agent.loop.Agent.run` returns ``stop_reason == "approval"`` with the
pending calls in ``tool_calls``; the caller resumes with ``approvals=[Decision(call_id, approve, reason)]``
(the transcript can be saved and loaded in between: the pending call is its last message). An ``approver``
callback given to the agent (the CLI's terminal prompt) decides on the spot instead. Every decision is
written into the call's and the answer's ``meta["approval"]`` in the transcript: what, by whom, why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ossagent.tools.base import Tool, UserError

VERDICTS = ("allow", "ask", "deny")


@dataclass(frozen=True)
class Decision:
    """A caller's answer to a pending call: approve it, or reject it with a reason the model is told."""

    call_id: str
    approve: bool
    reason: str | None = None
    by: str = "caller"  # who decided ("caller", "user" at the terminal, "policy")


@dataclass(frozen=True)
class PendingCall:
    call_id: str
    recipient: str
    arguments: str


Approver = Callable[[PendingCall], "Decision | None"]  # None: no decision now (the run pauses)


@dataclass
class Policy:
    rules: Mapping[str, str] = field(default_factory=dict)  # "ns.fn" | "ns" | "*" -> allow | ask | deny
    default: str = "allow"
    side_effects: str = "allow"  # page actions that submit, download or upload
    ask_as: str = "ask"  # what "ask" becomes: "deny" where nobody can answer (``--approve none``)

    def __post_init__(self) -> None:
        for key, value in {**self.rules, "default": self.default, "side_effects": self.side_effects,
                           "ask_as": self.ask_as}.items():
            if value not in VERDICTS:
                raise UserError(f"approval for {key!r} must be one of {VERDICTS}, not {value!r}")
        self.rules = dict(self.rules)

    @classmethod
    def everything(cls, verdict: str) -> Policy:
        """One verdict for every call (``--approve all`` is ``allow``, ``--approve none`` is ``deny``)."""
        return cls({"*": verdict}, default=verdict, side_effects=verdict)

    def verdict(self, recipient: str, content: str, tool: Tool | None) -> str:
        found = self._verdict(recipient, content, tool)
        return self.ask_as if found == "ask" else found

    def _verdict(self, recipient: str, content: str, tool: Tool | None) -> str:
        namespace = recipient.split(".", 1)[0]
        for key in (recipient, namespace):
            if key in self.rules:
                return self.rules[key]
        own = getattr(tool, "default_approval", None)
        if own is not None and "*" not in self.rules:
            return str(own(recipient, content))
        side_effect = getattr(tool, "side_effect", None)
        if side_effect is not None and side_effect(recipient, content) is not None:
            return self.side_effects
        return self.rules.get("*", self.default)


def refusal(recipient: str, reason: str | None) -> str:
    """The tool message a refused call gets (the model should not retry it as is)."""
    why = f" Reason: {reason}" if reason else ""
    return (f"The call to {recipient} was not approved, so it did not run.{why} Do not repeat it; continue "
            "without it or ask the user.")


def record(decision: Decision | None, verdict: str) -> dict[str, Any]:
    """What the transcript keeps about one approval."""
    if decision is None:
        return {"decision": "approved" if verdict == "allow" else "rejected", "by": "policy", "policy": verdict}
    out: dict[str, Any] = {"decision": "approved" if decision.approve else "rejected", "by": decision.by,
                           "policy": verdict}
    if decision.reason:
        out["reason"] = decision.reason
    return out
