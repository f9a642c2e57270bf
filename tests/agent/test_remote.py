"""RemoteBackend over real HTTP on loopback: an agent whose model is another ossagent server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ossagent.agent.backends.remote import RemoteBackend, RemoteError
from ossagent.agent.backends.scripted import ScriptedBackend, Step
from ossagent.agent.loop import Agent
from ossagent.agent.server import ServerConfig, create_app
from ossagent.agent.server.serve import RunningServer, start_in_thread

CALL = ("<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant to=functions.get_weather"
        "<|channel|>commentary <|constrain|>json<|message|>{\"city\":\"Paris\"}<|call|>")


@pytest.fixture(scope="module")
def upstream() -> Iterator[RunningServer]:
    app = create_app(ServerConfig(backend=ScriptedBackend([]), model_id="up"))
    running = start_in_thread(app)
    running.app = app  # type: ignore[attr-defined]
    yield running
    running.stop()


def get_weather(city: str) -> str:
    """Current weather in a city.

    Args:
        city: the city's name
    """
    return f"sunny in {city}"


def test_agent_over_a_remote_server_runs_local_functions(upstream: RunningServer) -> None:
    script = ScriptedBackend([
        Step(CALL, expect=["Be helpful.", "type get_weather", "Reasoning: high"]),
        Step("<|channel|>analysis<|message|>Got it.<|end|><|start|>assistant<|channel|>final<|message|>"
             "Sunny in Paris.<|return|>",
             expect=["<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>sunny in Paris",
                     "Need the weather."]),
    ])
    upstream.app.state.server.config.backend = script  # type: ignore[attr-defined]
    backend = RemoteBackend(upstream.url, "up")
    result = Agent(backend, functions=[get_weather], instructions="Be helpful.", reasoning="high").run(
        "Weather in Paris?")
    script.assert_consumed()
    assert result.text == "Sunny in Paris." and result.stop_reason == "final"
    kinds = [(m.role, m.channel, m.recipient) for m in result.transcript]
    assert kinds == [("user", None, None), ("assistant", "analysis", None),
                     ("assistant", "commentary", "functions.get_weather"), ("tool", "commentary", "assistant"),
                     ("assistant", "analysis", None), ("assistant", "final", None)]


def test_chat_messages_carry_reasoning_calls_and_results(upstream: RunningServer) -> None:
    backend = RemoteBackend(upstream.url, "up")
    from ossagent.agent import prompt as hp
    from ossagent.agent.transcript import Msg, tool_result

    msgs = [Msg("user", "hi"), Msg("assistant", "think", channel="analysis"),
            Msg("assistant", '{"city":"X"}', recipient="functions.get_weather", channel="commentary",
                content_type="<|constrain|>json"),
            tool_result("functions.get_weather", "rain", channel="commentary")]
    prompt = hp.build_prompt(hp.PromptConfig(instructions="sys"), msgs, backend.encoding)
    from ossagent.agent.backends.base import GenerationParams

    body = backend.request_body(prompt, GenerationParams())
    assert body["messages"] == [
        {"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "reasoning_content": "think", "tool_calls": [
            {"id": "call_4", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"X"}'}}]},
        {"role": "tool", "tool_call_id": "call_4", "content": "rain"}]


def test_retries_then_succeeds_and_reports_final_failure() -> None:
    calls = {"n": 0}
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def flaky(request: Request) -> Response:
        calls["n"] += 1
        if calls["n"] < 3:
            return JSONResponse({"error": {"message": "busy"}}, status_code=503)

        def sse() -> Iterator[bytes]:
            for delta in ({"reasoning_content": "hm"}, {"content": "ok"}):
                yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': delta}]})}\n\n".encode()
            yield b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'

        return StreamingResponse(sse(), media_type="text/event-stream")

    running = start_in_thread(app)
    try:
        result = Agent(RemoteBackend(running.url, "m", backoff=0.01)).run("hello")
        assert result.text == "ok" and calls["n"] == 3
        assert [m.channel for m in result.transcript if m.role == "assistant"] == ["analysis", "final"]
        calls["n"] = -10
        failed = Agent(RemoteBackend(running.url, "m", retries=1, backoff=0.01)).run("hello")
        assert failed.stop_reason == "error" and "HTTP 503" in failed.errors[0].message
    finally:
        running.stop()
    with pytest.raises(RemoteError):
        list(RemoteBackend("http://127.0.0.1:9", "m", retries=0)._stream({}))
