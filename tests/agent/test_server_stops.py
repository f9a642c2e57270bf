"""Honest stop reasons and usage, and reasoning restored for clients that drop it (official openai client,
``serve`` on loopback, a scripted model checked against the grammar where it says so)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import openai
import pytest

from ossagent.agent.backends.base import default_encoding
from ossagent.agent.backends.scripted import ScriptedBackend, Step
from ossagent.agent.constrain import TurnConstraints
from ossagent.agent.functions import FunctionTool
from ossagent.agent.harmony.tokens import END, RETURN
from ossagent.agent.server.reasoning_memory import ReasoningMemory
from ossagent.agent.server.serve import RunningServer
from ossagent.agent.server.stops import finish_reason, incomplete_reason
from ossagent.agent.transcript import Msg
from tests.agent import scripted_server

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
THOUGHT = "The user wants Paris weather; call get_weather."
CALL = (f"<|channel|>analysis<|message|>{THOUGHT}<|end|><|start|>assistant to=functions.get_weather"
        "<|channel|>commentary <|constrain|>json<|message|>{\"city\":\"Paris\"}<|call|>")
ANSWER = "<|channel|>analysis<|message|>Sunny it is.<|end|><|start|>assistant<|channel|>final<|message|>Sunny.<|return|>"


def n_tokens(text: str) -> int:
    return len(default_encoding().encode(text))


server, client = scripted_server.server, scripted_server.client  # the fixtures: a scripted model on loopback


@dataclass
class Served:
    """``serve`` on loopback whose scripted model each test replaces."""

    running: RunningServer
    client: openai.OpenAI

    def script(self, steps: list[Any], constrained: bool = True) -> ScriptedBackend:
        return scripted_server.script(self.running, steps, constrained=constrained)


@pytest.fixture()
def served(server: RunningServer, client: openai.OpenAI) -> Served:
    return Served(server, client)


@pytest.mark.parametrize(("reason", "chat", "responses"), [
    ("final", "stop", None), ("stop", "stop", None), ("incomplete", "stop", None), ("error", "stop", None),
    ("tool_calls", "tool_calls", None), ("max_tokens", "length", "max_output_tokens"),
    ("max_turns", "length", "max_output_tokens"), ("timeout", "length", "max_output_tokens"),
    ("context", "length", "max_output_tokens"), ("something new", "stop", None),
])
def test_every_stop_maps_to_an_honest_field(reason: str, chat: str, responses: str | None) -> None:
    assert finish_reason(reason) == chat
    assert incomplete_reason(reason) == responses


def test_return_cannot_close_reasoning_or_a_preamble_in_any_mode() -> None:
    """The cause of runs reported as cut off after a few tokens: with tool_choice=auto the grammar let
    <|return|> close an analysis message. Now only a final answer may end with it."""
    enc = default_encoding()
    functions = [FunctionTool.from_schema("get_weather", WEATHER["function"]["parameters"])]  # type: ignore[index]
    for choice in ("auto", "none", "required"):
        tc = TurnConstraints(functions, encoding=enc, tool_choice=choice)
        for channel in ("analysis", "commentary"):
            mask = tc.hook().step(enc.encode(f"<|channel|>{channel}<|message|>x", allowed_special="all")).mask
            assert mask is not None and not bool(mask[RETURN]) and bool(mask[END]), (choice, channel)
    final = TurnConstraints(functions, encoding=enc, tool_choice="auto").hook()
    mask = final.step(enc.encode("<|channel|>final<|message|>x", allowed_special="all")).mask
    assert mask is not None and bool(mask[RETURN])


def test_usage_counts_reasoning_tokens_in_both_apis(served: Served) -> None:
    served.script([ANSWER, ANSWER])
    expected = n_tokens("Sunny it is.") + 1  # the body and its <|end|>
    r = served.client.chat.completions.create(
        model="gpt-oss-test", messages=[{"role": "user", "content": "Weather?"}])
    assert r.usage is not None and r.usage.completion_tokens_details is not None
    assert r.usage.completion_tokens_details.reasoning_tokens == expected
    assert r.choices[0].finish_reason == "stop"
    resp = served.client.responses.create(model="gpt-oss-test", input="Weather?")
    assert resp.usage is not None and resp.usage.output_tokens_details.reasoning_tokens == expected
    assert resp.status == "completed"


def test_a_turn_ended_by_return_on_analysis_is_a_stop_not_a_length(served: Served) -> None:
    """An unconstrained (e.g. remote) model may still end on analysis: the model stopped, no limit was hit."""
    served.script(["<|channel|>analysis<|message|>Hmm.<|return|>"] * 2, constrained=False)
    r = served.client.chat.completions.create(
        model="gpt-oss-test", messages=[{"role": "user", "content": "?"}],
                                       max_tokens=4096)
    assert r.choices[0].finish_reason == "stop"
    resp = served.client.responses.create(model="gpt-oss-test", input="?")
    assert resp.status == "completed" and resp.incomplete_details is None


def test_a_token_limit_is_length_and_incomplete(served: Served) -> None:
    served.script(["<|channel|>analysis<|message|>" + "think " * 40 + "<|end|>"] * 2, constrained=False)
    r = served.client.chat.completions.create(
        model="gpt-oss-test", messages=[{"role": "user", "content": "?"}],
                                       max_tokens=8)
    assert r.choices[0].finish_reason == "length"
    resp = served.client.responses.create(model="gpt-oss-test", input="?", max_output_tokens=8)
    assert resp.status == "incomplete" and resp.incomplete_details is not None
    assert resp.incomplete_details.reason == "max_output_tokens"


def test_reasoning_is_restored_when_the_client_drops_it(served: Served) -> None:
    """Like the Agents SDK's chat model: the assistant message goes back without reasoning_content."""
    served.script([CALL, Step(ANSWER, expect=[THOUGHT, "to=functions.get_weather"])])
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    r = served.client.chat.completions.create(
        model="gpt-oss-test", messages=messages, tools=[WEATHER])
    assert r.choices[0].finish_reason == "tool_calls"
    (call,) = r.choices[0].message.tool_calls or []
    messages += [{"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    r2 = served.client.chat.completions.create(
        model="gpt-oss-test", messages=messages, tools=[WEATHER])
    assert r2.choices[0].message.content == "Sunny."


def test_reasoning_memory_is_bounded_and_leaves_client_reasoning_alone() -> None:
    mem = ReasoningMemory(max_calls=2)

    def turn(cid: str, thought: str) -> list[Msg]:
        return [Msg("user", "q"), Msg("assistant", thought, channel="analysis"),
                Msg("assistant", "{}", recipient="functions.f", channel="commentary", meta={"call_id": cid})]

    for i in range(3):
        mem.remember(turn(f"c{i}", f"thought {i}"))
    assert len(mem) == 2
    dropped = [m for m in turn("c0", "") if m.channel != "analysis"]
    assert mem.restore(dropped) == dropped  # c0 was evicted
    restored = mem.restore([m for m in turn("c2", "") if m.channel != "analysis"])
    assert [m.text for m in restored if m.channel == "analysis"] == ["thought 2"]
    own = turn("c2", "my own")
    assert mem.restore(own) == own
    big = ReasoningMemory(max_chars=5)
    big.remember(turn("c9", "far too long"))
    assert len(big) == 0
