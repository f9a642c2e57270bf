"""The official openai client against ``ossagent serve`` on loopback, with a scripted model behind it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from ossagent.agent.backends.scripted import ScriptedBackend, Step
from ossagent.agent.server import ServerConfig, create_app
from ossagent.agent.server.serve import RunningServer, start_in_thread
from tests.agent import scripted_server
from tests.agent.scripted_server import script

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALL = ("<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant to=functions.get_weather"
        "<|channel|>commentary <|constrain|>json<|message|>{\"city\":\"Paris\"}<|call|>")
server, client = scripted_server.server, scripted_server.client  # the fixtures: a scripted model on loopback


def answer(text: str, think: str = "Easy.") -> str:
    return f"<|channel|>analysis<|message|>{think}<|end|><|start|>assistant<|channel|>final<|message|>{text}<|return|>"


def test_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["gpt-oss-test"]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_chat_plain_with_reasoning_and_usage(server: RunningServer, client: openai.OpenAI) -> None:
    backend = script(server, [Step(answer("Hello!"), expect=["Be brief.", "Reasoning: high", "Hi"])])
    r = client.chat.completions.create(
        model="gpt-oss-test", reasoning_effort="high",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    msg = r.choices[0].message
    assert msg.content == "Hello!" and r.choices[0].finish_reason == "stop"
    assert msg.model_extra["reasoning_content"] == "Easy."
    assert r.usage.prompt_tokens == len(backend.prompts[0])
    assert r.usage.completion_tokens == len(backend.outputs[0])
    backend.assert_consumed()


def test_chat_streaming(server: RunningServer, client: openai.OpenAI) -> None:
    script(server, [answer("one two three")])
    stream = client.chat.completions.create(model="gpt-oss-test", stream=True,
                                            stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "count"}])
    content, reasoning, finish, usage = [], [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            content.append(c.delta.content or "")
            reasoning.append((c.delta.model_extra or {}).get("reasoning_content") or "")
            finish = c.finish_reason or finish
    assert "".join(content) == "one two three" and "".join(reasoning) == "Easy."
    assert finish == "stop" and usage is not None and usage.completion_tokens > 5


def test_chat_tools_round_trip(server: RunningServer, client: openai.OpenAI) -> None:
    script(server, [
        Step(CALL, expect="type get_weather = (_: {\ncity: string,\n}) => any;"),
        Step(answer("It is sunny in Paris."),
             expect="<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>sunny"),
    ])
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    r = client.chat.completions.create(model="gpt-oss-test", messages=messages, tools=[WEATHER],
                                       tool_choice="required")
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    r2 = client.chat.completions.create(model="gpt-oss-test", messages=messages, tools=[WEATHER])
    assert r2.choices[0].message.content == "It is sunny in Paris."


def test_chat_streaming_tool_call_argument_deltas(server: RunningServer, client: openai.OpenAI) -> None:
    script(server, [CALL])
    stream = client.chat.completions.create(model="gpt-oss-test", stream=True, tools=[WEATHER],
                                            messages=[{"role": "user", "content": "Weather?"}])
    deltas = [tc for ch in stream for c in ch.choices for tc in (c.delta.tool_calls or [])]
    assert deltas[0].function.name == "get_weather" and deltas[0].id.startswith("call_")
    assert len(deltas) > 2
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "Paris"}


def test_chat_response_format(server: RunningServer, client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    script(server, [Step(answer('{"n":4}'), expect=["# Response Formats", "## count", '"required":["n"]'])])
    r = client.chat.completions.create(
        model="gpt-oss-test", messages=[{"role": "user", "content": "2+2 as JSON"}],
        response_format={"type": "json_schema", "json_schema": {"name": "count", "schema": schema}})
    assert json.loads(r.choices[0].message.content) == {"n": 4}


def test_responses_plain_and_function_call(server: RunningServer, client: openai.OpenAI) -> None:
    script(server, [Step(answer("Bonjour"), expect=["Speak French.", "Reasoning: low"])])
    r = client.responses.create(model="gpt-oss-test", input="Hello", instructions="Speak French.",
                                reasoning={"effort": "low"})
    assert r.output_text == "Bonjour" and r.status == "completed"
    assert [o.type for o in r.output] == ["reasoning", "message"]
    assert r.usage.output_tokens > 0
    tools: Any = [{"type": "function", **WEATHER["function"]}]
    script(server, [CALL, Step(answer("Sunny."), expect="<|start|>functions.get_weather to=assistant")])
    r = client.responses.create(model="gpt-oss-test", input="Weather?", tools=tools, tool_choice="required")
    call = next(o for o in r.output if o.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    r2 = client.responses.create(model="gpt-oss-test", previous_response_id=r.id, tools=tools,
                                 input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert r2.output_text == "Sunny."


def test_responses_streaming_events(server: RunningServer, client: openai.OpenAI) -> None:
    script(server, [answer("Hi there")])
    events = list(client.responses.create(model="gpt-oss-test", input="Hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.index("response.output_item.added") < kinds.index("response.reasoning_text.delta")
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Hi there" and events[-1].response.output_text == "Hi there"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    tools: Any = [{"type": "function", **WEATHER["function"]}]
    script(server, [CALL])
    events = list(client.responses.create(model="gpt-oss-test", input="Weather?", stream=True, tools=tools))
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(args) == {"city": "Paris"}
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done and done[0].arguments == args


def test_structured_output_via_responses(server: RunningServer, client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
              "additionalProperties": False}
    script(server, [Step(answer('{"ok":true}'), expect="## verdict")])
    r = client.responses.create(model="gpt-oss-test", input="ok?", text={
        "format": {"type": "json_schema", "name": "verdict", "schema": schema, "strict": True}})
    assert json.loads(r.output_text) == {"ok": True}


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"model": "gpt-oss-test", "messages": []}, 400, "messages"),
    ({"model": "gpt-oss-test", "messages": [{"role": "user", "content": "x"}], "temperature": 5}, 400, "temperature"),
    ({"model": "other", "messages": [{"role": "user", "content": "x"}]}, 404, None),
    ({"model": "gpt-oss-test", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}, 400,
     "tool_choice"),
    ({"model": "gpt-oss-test", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "max"}, 400,
     "reasoning_effort"),
    ({"model": "gpt-oss-test", "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role"),
    ({"model": "gpt-oss-test", "tools": [WEATHER], "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                              "function": {"name": "get_weather", "arguments": "{}"}}]}]},
     400, "messages"),
])
def test_openai_shaped_errors(server: RunningServer, body: dict[str, Any], status: int, param: str | None) -> None:
    r = httpx.post(server.url + "/chat/completions", json=body)
    assert r.status_code == status
    err = r.json()["error"]
    assert err["message"] and err["type"] and err["param"] == param


def test_bad_json_and_unknown_route(server: RunningServer) -> None:
    r = httpx.post(server.url + "/chat/completions", content=b"{not json",
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    assert httpx.get(server.url + "/nothing").json()["error"]["type"] == "not_found"


def test_client_errors_surface_in_the_openai_client(server: RunningServer, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-oss-test", messages=[{"role": "user", "content": "x"}], top_p=0)
    assert info.value.param == "top_p"


class Clock:
    """A server-side built-in tool (a namespace with one function)."""

    name = "clock"

    def __init__(self) -> None:
        self.closed = False

    def description(self) -> Any:
        from ossagent.tools.base import FunctionDescription, ToolDescription

        return ToolDescription("clock", "Tells the time.", (FunctionDescription("now", "The time."),))

    def call(self, recipient: str, content: str) -> Any:
        from ossagent.tools.base import ToolResult

        return ToolResult(recipient, "12:00")

    def close(self) -> None:
        self.closed = True


def test_builtin_tools_run_server_side_and_api_key() -> None:
    made: list[Clock] = []

    def tools() -> list[Clock]:
        made.append(Clock())
        return made[-1:]

    backend = ScriptedBackend([
        Step("<|channel|>analysis<|message|>Check.<|end|><|start|>assistant to=clock.now<|channel|>analysis"
             "<|message|>{}<|call|>", expect="## clock"),
        Step(answer("It is noon."), expect="<|start|>clock.now to=assistant<|channel|>analysis<|message|>12:00"),
    ])
    app = create_app(ServerConfig(backend=backend, model_id="m", tools_factory=tools, api_key="sekret"))
    running = start_in_thread(app)
    try:
        bad = openai.OpenAI(base_url=running.url, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        client = openai.OpenAI(base_url=running.url, api_key="sekret", max_retries=0)
        r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "time?"}])
        assert r.choices[0].message.content == "It is noon." and not r.choices[0].message.tool_calls
        assert r.choices[0].finish_reason == "stop"
        assert made and made[0].closed  # per-request tools are closed after the run
    finally:
        running.stop()
    backend.assert_consumed()


def test_backend_failure_mid_stream_reaches_the_client(server: RunningServer, client: openai.OpenAI) -> None:
    class Broken:
        encoding, vocab_size, takes_hooks = ScriptedBackend([]).encoding, None, False

        def generate(self, prompt: Any, params: Any, hook: Any = None) -> Any:
            yield from self.encoding.encode("<|channel|>analysis<|message|>hm", allowed_special="all")
            raise ConnectionError("GPU fell off the bus")

    server.app.state.server.config.backend = Broken()  # type: ignore[attr-defined]
    stream = client.chat.completions.create(model="gpt-oss-test", stream=True,
                                            messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.APIError, match="GPU fell off the bus"):
        list(stream)
    r = client.responses.create(model="gpt-oss-test", input="x")
    assert r.status == "failed" and "GPU fell off the bus" in r.error.message
