"""A random-weight tiny gpt-oss calls a live MCP server through the agent with grammar constraints: every call
it writes names one of the server's tools and carries arguments the server's schema accepts."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch

from ossagent.agent.approvals import Policy
from ossagent.agent.grammar_hooks import ConstraintRequest, GrammarHooks
from ossagent.agent.limits import Limits
from ossagent.agent.loop import Agent
from ossagent.agent.mcp import MCPServerConfig
from ossagent.model.hooks import StepAction

SERVER = Path(__file__).with_name("server.py")


class Closing:
    """The agent's grammar hooks, with every other mask narrowed to tokens that close JSON values (always a
    subset of what the grammar allows): a random model almost never closes a string by itself."""

    def __init__(self, inner: GrammarHooks, closer: torch.Tensor) -> None:
        self.inner, self.closer, self.n = inner, closer, 0

    def __call__(self, req: ConstraintRequest) -> Any:
        hook, outer = self.inner(req), self

        class Hook:
            def step(self, generated: Any) -> StepAction:
                action = hook.step(generated)
                outer.n += 1
                if action.mask is not None and outer.n % 2:
                    narrowed = action.mask[: len(outer.closer)] & outer.closer
                    if bool(narrowed.any()):
                        return StepAction(action.forced, narrowed, action.stop)
                return action

        return Hook()


@pytest.mark.slow
def test_tiny_engine_calls_mcp_tools_with_valid_arguments(tiny_backend: Any, closer_mask: torch.Tensor,
                                                          tmp_path: Path) -> None:
    config = MCPServerConfig("trips", command=(sys.executable, str(SERVER), "stdio"), trusted=True,
                             allowed_tools=("plan_trip", "fail", "lookup"))
    agent = Agent(tiny_backend, mcp=[config], workspace=str(tmp_path), approvals=Policy({"trips": "allow"}),
                  tool_choice="required", temperature=1.0, seed=1, limits=Limits(max_turns=3, max_tokens=250))
    agent.hook_factory = Closing(GrammarHooks(agent, free_text_limit=4), closer_mask)
    try:
        schemas = {f"trips.{f.name}": f.parameters for t in agent.config.builtin_tools for f in t.functions}
        calls = []
        for seed in range(1):
            agent.seed = seed
            result = agent.run("Plan a trip.")
            calls += [m for m in result.transcript if m.is_tool_call]
            answers = [m for m in result.transcript if m.role == "tool"]
            assert all(a.meta.get("metadata", {}).get("fault") != "model" for a in answers), answers
    finally:
        agent.close()
    assert calls
    for call in calls:
        assert call.recipient in schemas
        jsonschema.validate(json.loads(call.text), schemas[call.recipient])
