"""End to end through the real engine: a tiny random gpt-oss, grammar-constrained turns, real sandboxed python,
and the OpenAI server in front of it (the constraints make every call valid even with random weights)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest

from ossagent.agent.limits import Limits
from ossagent.agent.loop import Agent
from ossagent.agent.server import ServerConfig, create_app
from ossagent.agent.server.serve import RunningServer, start_in_thread

pytestmark = pytest.mark.slow

UNIT = {"type": "object", "properties": {"unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["unit"], "additionalProperties": False}


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
def test_agent_runs_sandboxed_python_through_the_engine(tiny_backend: Any, tmp_path: Path) -> None:
    from ossagent.tools.python import PythonTool

    agent = Agent(tiny_backend, tools=[PythonTool(tmp_path, timeout=20)], tool_choice="required",
                  reasoning_budget=3, limits=Limits(max_turns=2, max_turn_tokens=24), seed=0)
    try:
        stream = agent.stream("Compute 6*7 with python.")
        events = list(stream)
        result = stream.result()
    finally:
        agent.close()
    assert not [e for e in result.errors if e.kind == "model"], "constrained output must be valid harmony"
    calls = [m for m in result.transcript if m.is_tool_call]
    answers = [m for m in result.transcript if m.role == "tool"]
    assert calls and calls[0].recipient == "python" and answers[0].name == "python"
    # The answer is what the real sandbox says about that code.
    fresh = PythonTool(tmp_path, timeout=20)
    try:
        assert answers[0].text == fresh.call("python", calls[0].text).text
    finally:
        fresh.close()
    # The second turn reused the KV cache of the first turn's prompt and output.
    first_prompt_and_output = result.usage.cached_tokens
    reused, _ = tiny_backend.cache_stats.history[-1]
    assert result.usage.turns == 2 and reused == first_prompt_and_output - 1
    assert any(type(e).__name__ == "ToolResultEvent" for e in events)


@pytest.fixture(scope="module")
def tiny_server(tiny_backend: Any) -> Iterator[RunningServer]:
    config = ServerConfig(backend=tiny_backend, model_id="tiny", encoding=tiny_backend.encoding, slots=1,
                          reasoning_budget=4, default_max_tokens=48)
    running = start_in_thread(create_app(config))
    yield running
    running.stop()


def test_openai_client_gets_valid_calls_and_formats_from_a_random_model(tiny_server: RunningServer) -> None:
    client = openai.OpenAI(base_url=tiny_server.url, api_key="x", max_retries=0)
    tool: Any = {"type": "function", "function": {"name": "set_unit", "description": "Set the unit.",
                                                  "parameters": UNIT}}
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "celsius please"}],
                                       tools=[tool], tool_choice="required", seed=1)
    assert r.choices[0].finish_reason == "tool_calls"
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "set_unit"
    jsonschema.validate(json.loads(call.function.arguments), UNIT)

    r = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "pick a unit"}], seed=2,
        response_format={"type": "json_schema", "json_schema": {"name": "unit", "schema": UNIT}})
    assert r.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(r.choices[0].message.content), UNIT)

    tools: Any = [{"type": "function", "name": "set_unit", "parameters": UNIT}]
    events = list(client.responses.create(model="tiny", input="unit?", tools=tools, tool_choice="required",
                                          stream=True, extra_body={"seed": 3}))
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    jsonschema.validate(json.loads(args), UNIT)
    assert events[-1].type == "response.completed"
