"""The OpenAI Agents SDK against ``serve`` on loopback: its chat-completions and responses models run an agent
with a function tool to a final answer, 16 times each, with no ``ModelBehaviorError``. The chat model does not
send the reasoning back after the tool call; the server restores it (the scripted model's second step expects
it in the prompt). Then the same through the shipped demo model, sampling (temperature 1, a seed per run): runs
that end at the token limit are counted and reported (the SDK raises ``ModelBehaviorError`` for them too, so the
server's log tells whether the limit was really spent); no other ``ModelBehaviorError`` is allowed.
Tracing is off: nothing leaves loopback."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

agents = pytest.importorskip("agents")

from ossagent.agent.backends.scripted import Step  # noqa: E402
from ossagent.agent.server import ServerConfig, create_app  # noqa: E402
from ossagent.agent.server.serve import RunningServer, start_in_thread  # noqa: E402
from tests.agent import scripted_server  # noqa: E402
from tests.agent.scripted_server import MODEL, script  # noqa: E402

server = scripted_server.server  # the fixture: a real server on loopback with a scripted model, one per module

THOUGHT = "Paris weather needs the tool."
CALL = (f"<|channel|>analysis<|message|>{THOUGHT}<|end|><|start|>assistant to=functions.get_weather"
        "<|channel|>commentary <|constrain|>json<|message|>{\"city\":\"Paris\"}<|call|>")
ANSWER = "<|channel|>analysis<|message|>Got it.<|end|><|start|>assistant<|channel|>final<|message|>Sunny.<|return|>"
RUNS = 16
DEMO_MAX_TOKENS = 256  # per request; the demo model's tool call or answer takes 10 to 250 tokens


@agents.function_tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"sunny in {city}"


def sdk_model(url: str, api: str, model_id: str) -> Any:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key="unused", max_retries=0)
    return (agents.OpenAIChatCompletionsModel(model_id, client) if api == "chat"
            else agents.OpenAIResponsesModel(model_id, client))


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_agents_sdk_runs_a_tool_to_the_answer(server: RunningServer, api: str) -> None:
    agents.set_tracing_disabled(True)
    model = sdk_model(server.url, api, MODEL)
    agent = agents.Agent(name="weather", instructions="Use tools.", tools=[get_weather], model=model)
    steps: list[Step] = []
    for _ in range(RUNS):
        steps += [Step(CALL), Step(ANSWER, expect=[THOUGHT, "sunny in Paris"])]
    backend = script(server, steps)
    for _ in range(RUNS):
        result = agents.Runner.run_sync(agent, "Weather in Paris?",
                                        run_config=agents.RunConfig(tracing_disabled=True))
        assert result.final_output == "Sunny."
    backend.assert_consumed()


# -- the shipped demo model, sampling -------------------------------------------------------------------------


def demo_weather(city: str) -> str:
    """The weather function the demo model was trained with (scripts/demo/tasks.py): a made-up but stable reading."""
    seed = sum(map(ord, city))
    return json.dumps({"city": city, "temperature": seed % 35 - 5,
                       "conditions": ["sunny", "cloudy", "rainy"][seed % 3]})


class Completions(logging.Handler):
    """The server's per-request log lines (agent/server/metrics.py): completion tokens of each generation."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.tokens: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        m = re.search(r" completion=(\d+) ", record.getMessage())
        if m:
            self.tokens.append(int(m.group(1)))


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[RunningServer, Completions]]:
    from ossagent.agent.backends.local import LocalBackend
    from ossagent.agent.server.conventions import DEMO_MODEL_ID
    from ossagent.model.demo import demo_model_dir

    folder = demo_model_dir()
    if folder is None:
        pytest.skip("this checkout carries no demo checkpoint (model/demo_weights)")
    agents.set_tracing_disabled(True)
    backend = LocalBackend.from_pretrained(folder, device="cpu")
    app = create_app(ServerConfig(backend=backend, model_id=DEMO_MODEL_ID, encoding=backend.encoding,
                                  default_max_tokens=DEMO_MAX_TOKENS, default_temperature=1.0))
    server = start_in_thread(app)
    log = logging.getLogger("ossagent.server")
    handler, level = Completions(), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield server, handler
    log.removeHandler(handler)
    log.setLevel(level)
    server.stop()


def outcome(run: Any, handler: Completions) -> str:
    """One run's outcome: answered, length (the token limit was really spent), behavior (a ModelBehaviorError that
    is not an honest length stop), or the name of any other error."""
    try:
        result = run()
    except agents.ModelBehaviorError as exc:
        limit = "finish_reason='length'" in str(exc) or "max_output_tokens" in str(exc)
        spent = bool(handler.tokens) and handler.tokens[-1] >= DEMO_MAX_TOKENS
        return "length" if limit and spent else f"behavior: {exc}"
    except Exception as exc:  # counted and reported, not hidden
        return type(exc).__name__
    calls = sum(item.type == "tool_call_item" for item in result.new_items)
    return "answered with the tool" if calls and result.final_output else "answered without the tool"


@pytest.mark.slow
@pytest.mark.parametrize("api", ["chat", "responses"])
def test_agents_sdk_on_the_sampling_demo_model(demo: tuple[RunningServer, Completions], api: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from ossagent.agent.server.conventions import DEMO_MODEL_ID

    server, handler = demo
    tool = agents.function_tool(demo_weather, name_override="get_weather",
                                description_override="Gets the current weather for a city.")
    model = sdk_model(server.url, api, DEMO_MODEL_ID)
    counts: Counter[str] = Counter()
    for run in range(RUNS):
        settings = agents.ModelSettings(extra_body={"seed": run + (0 if api == "chat" else 1000)})
        agent = agents.Agent(name="weather", tools=[tool], model=model, model_settings=settings)
        counts[outcome(lambda a=agent: agents.Runner.run_sync(  # type: ignore[misc]
            a, 'What is the weather in "Paris"?', max_turns=4, run_config=agents.RunConfig(tracing_disabled=True)),
            handler)] += 1
    with capsys.disabled():
        print(f"\nAgents SDK ({api}) on the demo model, {RUNS} runs at temperature 1: {dict(counts)}")
    behavior = [k for k in counts if k.startswith("behavior")]
    assert not behavior, f"ModelBehaviorError that is not a spent token limit: {behavior}"
    assert not [k for k in counts if "ServerError" in k or "APIError" in k], counts
    assert counts["answered with the tool"] >= RUNS // 2, counts
