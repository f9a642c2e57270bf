"""LangChain's ``ChatOpenAI`` (langchain-openai) against ``ossagent serve`` on loopback, with no adapter: invoke,
stream, and ``bind_tools`` with a tool-call round trip (the tool's result goes back, the final answer comes out).
LangChain does not send the reasoning back after a tool call; the server restores it, so the scripted model's
second step finds its own thought in the prompt."""

from __future__ import annotations

from typing import Any

import pytest

langchain_openai = pytest.importorskip("langchain_openai")

from langchain_core.messages import AIMessageChunk, HumanMessage, ToolMessage  # noqa: E402

from ossagent.agent.backends.scripted import Step  # noqa: E402
from ossagent.agent.server.serve import RunningServer  # noqa: E402
from tests.agent import scripted_server  # noqa: E402
from tests.agent.scripted_server import MODEL, script  # noqa: E402
from tests.agent.test_server import answer  # noqa: E402

server = scripted_server.server  # the fixture: a real server on loopback with a scripted model, one per module

THOUGHT = "Paris weather needs the tool."
CALL = (f"<|channel|>analysis<|message|>{THOUGHT}<|end|><|start|>assistant to=functions.get_weather"
        "<|channel|>commentary <|constrain|>json<|message|>{\"city\":\"Paris\"}<|call|>")
TOOL_PROMPT = "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>sunny, 21 C"


def get_weather(city: str) -> str:
    """Current weather in a city.

    Args:
        city: the city's name
    """
    return f"sunny, 21 C in {city}"


def chat(server: RunningServer, **kw: Any) -> Any:
    return langchain_openai.ChatOpenAI(model=MODEL, base_url=server.url, api_key="unused", max_retries=0,
                                       timeout=60, **kw)


def test_invoke_answers_with_usage_and_stop(server: RunningServer) -> None:
    backend = script(server, [Step(answer("Hello!"), expect=["Be brief.", "Hi there"])])
    msg = chat(server).invoke([("system", "Be brief."), ("human", "Hi there")])
    assert msg.content == "Hello!"
    assert msg.response_metadata["finish_reason"] == "stop"
    assert msg.response_metadata["model_name"] == MODEL
    usage = msg.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] == len(backend.prompts[0])
    assert usage["output_tokens"] == len(backend.outputs[0])
    backend.assert_consumed()


def test_stream_yields_the_answer_in_pieces(server: RunningServer) -> None:
    backend = script(server, [answer("one two three four")])
    chunks = list(chat(server, stream_usage=True).stream("count to four"))
    texts = [c.content for c in chunks if c.content]
    assert len(texts) > 1, "streamed in more than one piece"
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.content == "one two three four"
    assert total.response_metadata.get("finish_reason") == "stop"
    assert total.usage_metadata is not None
    assert total.usage_metadata["output_tokens"] == len(backend.outputs[0])
    backend.assert_consumed()


def test_bind_tools_round_trip_to_the_final_answer(server: RunningServer) -> None:
    backend = script(server, [
        Step(CALL, expect=["type get_weather = (_: {", "city: string", "Weather in Paris?"]),
        Step(answer("It is sunny and 21 C in Paris."), expect=[THOUGHT, TOOL_PROMPT]),
    ])
    llm = chat(server).bind_tools([get_weather])
    messages: list[Any] = [HumanMessage("Weather in Paris?")]
    first = llm.invoke(messages)
    assert first.response_metadata["finish_reason"] == "tool_calls"
    (call,) = first.tool_calls
    assert call["name"] == "get_weather" and call["args"] == {"city": "Paris"}
    assert call["id"], "the tool call carries an id to answer to"
    messages += [first, ToolMessage(get_weather(**call["args"]), tool_call_id=call["id"])]
    final = llm.invoke(messages)
    assert final.content == "It is sunny and 21 C in Paris."
    assert final.response_metadata["finish_reason"] == "stop" and not final.tool_calls
    backend.assert_consumed()


def test_streamed_tool_call_assembles_from_chunks(server: RunningServer) -> None:
    backend = script(server, [CALL])
    total: AIMessageChunk | None = None
    pieces = 0
    for chunk in chat(server).bind_tools([get_weather]).stream("Weather in Paris?"):
        pieces += bool(chunk.tool_call_chunks)
        total = chunk if total is None else total + chunk
    assert total is not None and pieces > 1
    (call,) = total.tool_calls
    assert call["name"] == "get_weather" and call["args"] == {"city": "Paris"}
    assert total.response_metadata.get("finish_reason") == "tool_calls"
    backend.assert_consumed()
