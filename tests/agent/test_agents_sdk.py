"""The OpenAI Agents SDK against ``serve`` on loopback: its chat-completions and responses models run an agent
with a function tool to a final answer, several times each, with no ``ModelBehaviorError``. The chat model does not
send the reasoning back after the tool call; the server restores it (the scripted model's second step expects
it in the prompt). Tracing is off: nothing leaves loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

agents = pytest.importorskip("agents")

from ossagent.agent.backends.scripted import ScriptedBackend, Step  # noqa: E402
from ossagent.agent.server import ServerConfig, create_app  # noqa: E402
from ossagent.agent.server.serve import RunningServer, start_in_thread  # noqa: E402

THOUGHT = "Paris weather needs the tool."
CALL = (f"<|channel|>analysis<|message|>{THOUGHT}<|end|><|start|>assistant to=functions.get_weather"
        "<|channel|>commentary <|constrain|>json<|message|>{\"city\":\"Paris\"}<|call|>")
ANSWER = "<|channel|>analysis<|message|>Got it.<|end|><|start|>assistant<|channel|>final<|message|>Sunny.<|return|>"
RUNS = 4  # a scripted model answers the same way each time; the 16 runs are for a sampling model


@pytest.fixture(scope="module")
def running() -> Iterator[RunningServer]:
    agents.set_tracing_disabled(True)
    app = create_app(ServerConfig(backend=ScriptedBackend([]), model_id="gpt-oss-20b"))
    server = start_in_thread(app)
    server.app = app  # type: ignore[attr-defined]
    yield server
    server.stop()


@agents.function_tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"sunny in {city}"


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_agents_sdk_runs_a_tool_to_the_answer(running: RunningServer, api: str) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=running.url, api_key="unused", max_retries=0)
    model = (agents.OpenAIChatCompletionsModel("gpt-oss-20b", client) if api == "chat"
             else agents.OpenAIResponsesModel("gpt-oss-20b", client))
    agent = agents.Agent(name="weather", instructions="Use tools.", tools=[get_weather], model=model)
    steps: list[Step] = []
    for _ in range(RUNS):
        steps += [Step(CALL), Step(ANSWER, expect=[THOUGHT, "sunny in Paris"])]
    backend = ScriptedBackend(steps, constrained=True)
    running.app.state.server.config.backend = backend  # type: ignore[attr-defined]
    for _ in range(RUNS):
        result = agents.Runner.run_sync(agent, "Weather in Paris?",
                                        run_config=agents.RunConfig(tracing_disabled=True))
        assert result.final_output == "Sunny."
    backend.assert_consumed()
