"""The constrained-decoding hooks the agent loop asks for at each model call: what a hook is told
(:class:`ConstraintRequest`), the factory type, and the default factory (:class:`GrammarHooks`), which compiles
the turn's grammar (:mod:`ossagent.agent.constrain`) once per tool choice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ossagent.agent import prompt as hp
from ossagent.agent.choices import ToolChoice

if TYPE_CHECKING:
    from ossagent.agent.loop import Agent
    from ossagent.model.hooks import StepHook


@dataclass(frozen=True)
class ConstraintRequest:
    """What a constrained-decoding hook needs to know about one model call."""

    config: hp.PromptConfig
    tool_choice: ToolChoice
    encoding: Any


HookFactory = Callable[[ConstraintRequest], "StepHook | None"]


class GrammarHooks:
    """The default hook factory: grammar-constrained turns (:mod:`ossagent.agent.constrain`), compiled once
    per tool choice and reused across the run's calls."""

    _summary: Any = None  # the compaction summary's constraints, compiled at the first summary

    def __init__(self, agent: Agent, free_text_limit: int | None = None) -> None:
        self.agent = agent
        self.free_text_limit = free_text_limit
        self._compiled: dict[ToolChoice, Any] = {}

    def __call__(self, req: ConstraintRequest) -> StepHook | None:
        from ossagent.agent.constrain import TurnConstraints

        tc = self._compiled.get(req.tool_choice)
        if tc is None:
            tc = TurnConstraints(
                self.agent.functions, encoding=req.encoding,
                vocab_size=self.agent.backend.vocab_size, tool_choice=req.tool_choice,
                response_format=self.agent.answer, builtin_recipients=self.agent.builtin_recipients,
                free_text_limit=self.free_text_limit, builtin_schemas=namespace_schemas(self.agent.config),
            )
            self._compiled[req.tool_choice] = tc
        return tc.hook()

    def summary_hook(self) -> StepHook:
        """A hook for a compaction summary: no tool calls, a final answer of the summary's JSON schema."""
        from ossagent.agent.constrain import TurnConstraints
        from ossagent.agent.context.summary import summary_format

        if self._summary is None:
            self._summary = TurnConstraints(
                encoding=self.agent.encoding, vocab_size=getattr(self.agent.backend, "vocab_size", None),
                tool_choice="none", response_format=summary_format(), free_text_limit=self.free_text_limit)
        return self._summary.hook()


def namespace_schemas(config: hp.PromptConfig) -> dict[str, dict[str, Any]]:
    """``{"page.click": schema, ...}``: the parameter schemas of every namespace tool's functions, so their
    arguments are decoded under the same grammar as function calls."""
    return {f"{t.name}.{f.name}": f.parameters for t in config.builtin_tools for f in t.functions
            if f.parameters is not None}
