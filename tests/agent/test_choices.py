"""The one ReasoningEffort and the one ToolChoice, from the edges (Python API, CLI, server) to the prompt."""

from __future__ import annotations

import enum

import pytest

from ossagent.agent.backends.base import GenerationParams
from ossagent.agent.backends.remote import RemoteBackend
from ossagent.agent.backends.scripted import ScriptedBackend
from ossagent.agent.choices import ReasoningEffort, ToolChoice, effort
from ossagent.agent.loop import Agent
from ossagent.agent.prompt import Prompt, PromptConfig
from ossagent.agent.transcript import Msg, tool_result
from ossagent.tools.base import FunctionDescription, UserError

FN = FunctionDescription("get_weather", "Weather.", {"type": "object", "properties": {}})


def test_effort_is_parsed_once_into_the_enum() -> None:
    class Foreign(enum.Enum):
        HIGH = "High"

    assert effort("Low") is ReasoningEffort.LOW and effort(Foreign.HIGH) is ReasoningEffort.HIGH
    assert effort(None) is None and effort(ReasoningEffort.MEDIUM) is ReasoningEffort.MEDIUM
    with pytest.raises(UserError, match="reasoning effort must be one of low, medium, high, not 'max'"):
        effort("max")
    config = PromptConfig(reasoning=effort("high"))
    assert config.settings()["reasoning"] == "high" and type(config.settings()["reasoning"]) is str


def test_tool_choice_forms_and_checks() -> None:
    named = ToolChoice("function", "get_weather")
    assert ToolChoice.parse(("function", "get_weather")) == named == ToolChoice.parse(named)
    assert ToolChoice.parse({"type": "function", "name": "get_weather"}) == named
    assert named.to_openai() == {"type": "function", "function": {"name": "get_weather"}}
    assert ToolChoice.parse("none").to_openai() == "none" and not ToolChoice().forced and named.forced
    with pytest.raises(UserError, match=r"tool_choice \('function', 'nope'\) does not name one of the functions"):
        ToolChoice("function", "nope").check(["get_weather"], True)
    with pytest.raises(UserError, match="no tools"):
        ToolChoice("required").check([], False)
    def get_weather(city: str) -> str:
        """Weather."""
        return city

    with ScriptedBackend([]) as backend:
        agent = Agent(backend, functions=[get_weather], tool_choice=("function", "get_weather"), reasoning="High")
    assert agent.tool_choice == named and agent.reasoning is ReasoningEffort.HIGH


def test_remote_backend_sends_the_conversation_it_was_given() -> None:
    """The structured messages go out, with their own call ids; the tokens are not decoded back."""
    backend = RemoteBackend("http://127.0.0.1:9/v1", "m")
    call = Msg("assistant", '{"city":"X"}', recipient="functions.get_weather", channel="commentary",
               content_type="<|constrain|>json", meta={"call_id": "call_abc"})
    answer = tool_result("functions.get_weather", "rain", channel="commentary", call_id="call_abc")
    prompt = Prompt([], PromptConfig(reasoning=ReasoningEffort.LOW, function_tools=(FN,)),
                    (Msg("user", "hi"), call, answer), ToolChoice("required"))
    body = backend.request_body(prompt, GenerationParams())
    assert body["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"X"}'}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "rain"}]
    assert body["tool_choice"] == "required" and body["reasoning_effort"] == "low"
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather"]
