"""The agent loop through the scripted backend: chains, errors by fault, limits, CoT, formats, transcripts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from ossagent.agent.backends.scripted import ScriptedBackend, ScriptError, Step
from ossagent.agent.events import FinalDelta, ReasoningDelta, Stopped, ToolCall, ToolResultEvent, Usage
from ossagent.agent.functions import FunctionTool
from ossagent.agent.limits import Limits, StopMatcher
from ossagent.agent.loop import Agent
from ossagent.agent.transcript import Transcript, TranscriptError
from ossagent.tools.base import FunctionDescription, ToolDescription, ToolFailure, ToolResult, UserError

ADD = FunctionDescription("add", "Add two numbers.", {
    "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]})


class Calc:
    """A real tool: adds, fails on demand, or sleeps."""

    name = "calc"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def description(self) -> ToolDescription:
        return ToolDescription("calc", "Arithmetic.", (ADD, FunctionDescription("slow", "Sleeps.")))

    def call(self, recipient: str, content: str) -> ToolResult:
        self.calls.append(content)
        if recipient == "calc.slow":
            time.sleep(2)
            return ToolResult(recipient, "woke up")
        args = json.loads(content)
        if args.get("a") == "boom":
            raise ToolFailure("the calculator is out of batteries", hint="Try again with numbers.")
        return ToolResult(recipient, str(args["a"] + args["b"]))

    def close(self) -> None:
        pass


def call(fn: str, args: str, think: str = "Compute.", channel: str = "analysis") -> str:
    return (f"<|channel|>analysis<|message|>{think}<|end|>"
            f"<|start|>assistant to=calc.{fn}<|channel|>{channel} <|constrain|>json<|message|>{args}<|call|>")


def final(text: str) -> str:
    return f"<|channel|>final<|message|>{text}<|return|>"


def test_multi_step_tool_chain_reuses_the_prompt_prefix() -> None:
    calc = Calc()
    with ScriptedBackend([
        call("add", '{"a":2,"b":3}'),
        Step(call("add", '{"a":5,"b":10}', "Now add 10."), expect="<|message|>5<|end|>"),
        Step("<|channel|>analysis<|message|>Done.<|end|><|start|>assistant" + final("15"), expect="15"),
    ]) as backend:
        result = Agent(backend, tools=[calc]).run("2+3, then +10?")
    assert result.ok and result.text == "15" and result.stop_reason == "final"
    assert calc.calls == ['{"a":2,"b":3}', '{"a":5,"b":10}']
    # Each prompt extends the previous prompt plus exactly what the model generated (KV prefix reuse).
    for i in (1, 2):
        before = backend.prompts[i - 1] + backend.outputs[i - 1]
        assert backend.prompts[i][: len(before)] == before
    assert result.usage.turns == 3
    assert result.usage.completion_tokens == sum(len(o) for o in backend.outputs)
    assert result.usage.prompt_tokens == sum(len(p) for p in backend.prompts)
    assert result.usage.cached_tokens == sum(len(backend.prompts[i] + backend.outputs[i]) for i in (0, 1))
    roles = [(m.role, m.channel) for m in result.transcript]
    assert roles == [("user", None), ("assistant", "analysis"), ("assistant", "analysis"), ("tool", "analysis"),
                     ("assistant", "analysis"), ("assistant", "analysis"), ("tool", "analysis"),
                     ("assistant", "analysis"), ("assistant", "final")]


def test_chain_prompt_equals_a_fresh_render() -> None:
    """Extending tokens during a chain gives the same prompt as rendering the transcript from scratch."""
    with ScriptedBackend([call("add", '{"a":1,"b":1}'), final("2")]) as backend:
        agent = Agent(backend, tools=[Calc()])
        result = agent.run("1+1")
    from ossagent.agent import prompt as hp

    fresh = hp.render_prompt(agent.config, result.transcript.messages[:-1], backend.encoding)
    assert fresh == backend.prompts[1]


def test_tool_failure_goes_back_to_the_model_which_recovers() -> None:
    with ScriptedBackend([
        call("add", '{"a":"boom","b":1}'),
        Step(call("add", '{"a":1,"b":1}', "Retry."), expect="out of batteries\nTry again with numbers."),
        final("2"),
    ]) as backend:
        stream = Agent(backend, tools=[Calc()]).stream("1+1")
        events = list(stream)
    results = [e for e in events if isinstance(e, ToolResultEvent)]
    assert [r.is_error for r in results] == [True, False]
    assert results[0].metadata["fault"] == "tool"
    assert stream.result().text == "2"


def test_unknown_tool_and_bad_arguments_are_the_models_fault() -> None:
    bad = ("<|channel|>analysis<|message|>x<|end|><|start|>assistant to=weather.get<|channel|>analysis"
           "<|message|>{}<|call|>")
    with ScriptedBackend([
        bad,
        Step(call("add", "not json"), expect="Unknown tool 'weather.get'.\nAvailable: calc.add, calc.slow"),
        Step(final("ok"), expect="The tool failed: JSONDecodeError"),
    ]) as backend:
        result = Agent(backend, tools=[Calc()]).run("go")
    tool_msgs = [m for m in result.transcript if m.role == "tool"]
    assert tool_msgs[0].meta["metadata"]["fault"] == "model"
    assert result.text == "ok"


def test_tool_timeout_is_reported_to_the_model() -> None:
    with ScriptedBackend([call("slow", "{}"), Step(final("sorry"), expect="did not answer within 0.2 s")]) as b:
        result = Agent(b, tools=[Calc()], tool_timeout=0.2).run("wait")
    assert result.text == "sorry"


def test_max_turns_stops_and_keeps_the_transcript() -> None:
    with ScriptedBackend([call("add", '{"a":1,"b":1}'), call("add", '{"a":2,"b":2}')]) as backend:
        result = Agent(backend, tools=[Calc()], limits=Limits(max_turns=2)).run("loop")
    assert result.stop_reason == "max_turns"
    assert [e.kind for e in result.errors] == ["limit"]
    assert sum(m.role == "tool" for m in result.transcript) == 2


def test_token_limit_cuts_the_turn() -> None:
    with ScriptedBackend([final("a long answer that will not fit")]) as backend:
        result = Agent(backend, limits=Limits(max_tokens=5)).run("talk")
    assert result.stop_reason == "max_tokens"
    assert result.usage.completion_tokens == 5
    assert result.transcript.messages[-1].channel == "final"  # the partial answer is kept


def test_cot_kept_during_chain_and_dropped_after_final() -> None:
    with ScriptedBackend([
        call("add", '{"a":1,"b":1}', think="SECRET-1", channel="commentary"),
        Step(final("2"), expect="SECRET-1"),
        Step("<|channel|>analysis<|message|>SECRET-2<|end|><|start|>assistant" + final("3"),
             expect=["<|channel|>final<|message|>2<|end|>", "<|message|>2<|end|>"]),
    ]) as backend:
        agent = Agent(backend, tools=[Calc()])
        first = agent.run("1+1")
        second = agent.run("and 1+2?", transcript=first.transcript)
    text = backend.encoding.decode(backend.prompts[2])
    assert "SECRET-1" not in text  # dropped after the final answer
    assert "<|start|>calc.add to=assistant<|channel|>commentary<|message|>2" in text  # call and result stay
    assert second.text == "3"
    assert [m.text for m in second.transcript if m.channel == "analysis"] == ["SECRET-1", "SECRET-2"]  # the transcript keeps everything


def test_structured_final_answer() -> None:
    class Answer(BaseModel):
        city: str
        population: int

    with ScriptedBackend([Step(final('{"city":"Paris","population":2100000}'),
                               expect=["# Response Formats", "## Answer"])]) as backend:
        result = Agent(backend, response_format=Answer).run("Largest French city?")
    assert result.ok and result.output == Answer(city="Paris", population=2100000)

    with ScriptedBackend([final('{"city":"Paris"}')]) as backend:
        bad = Agent(backend, response_format=Answer).run("again")
    assert bad.output is None and not bad.ok and bad.errors[0].kind == "output"


def test_transcript_round_trip_and_resume(tmp_path: Path) -> None:
    with ScriptedBackend([call("add", '{"a":2,"b":2}'), final("4")]) as backend:
        agent = Agent(backend, tools=[Calc()], instructions="Be terse.")
        result = agent.run("2+2")
    path = result.transcript.save(tmp_path / "run.jsonl")
    loaded = Transcript.load(path)
    assert loaded.messages == result.transcript.messages
    assert loaded.settings["instructions"] == "Be terse."
    assert [m.meta for m in loaded] == [m.meta for m in result.transcript]
    # Resuming from a transcript cut after the tool result renders the same prompt as the live chain did.
    cut = Transcript(loaded.messages[:4], loaded.settings)
    with ScriptedBackend([final("4")]) as again:
        resumed = Agent(again, tools=[Calc()], instructions="Be terse.").run(transcript=cut)
    assert again.prompts[0] == backend.prompts[1]
    assert resumed.transcript.messages == result.transcript.messages
    with pytest.raises(TranscriptError, match="not an ossagent transcript"):
        Transcript.loads('{"role": "user"}\n')
    with pytest.raises(TranscriptError, match=":2: unknown role"):
        Transcript.loads('{"format": "ossagent.transcript/1"}\n{"role": "robot", "text": ""}\n')


def test_caller_functions_end_the_run_and_resume_with_outputs() -> None:
    fn_call = ("<|channel|>analysis<|message|>Ask the caller.<|end|><|start|>assistant to=functions.add"
               "<|channel|>commentary <|constrain|>json<|message|>{\"a\":1,\"b\":2}<|call|>")
    with ScriptedBackend([fn_call, Step(final("3"), expect="<|start|>functions.add to=assistant")]) as backend:
        agent = Agent(backend, functions=[FunctionTool.from_schema(ADD.name, ADD.parameters, ADD.description)])
        first = agent.run("1+2")
        assert first.stop_reason == "tool_calls"
        assert [(c.function_name, json.loads(c.arguments)) for c in first.tool_calls] == [("add", {"a": 1, "b": 2})]
        with pytest.raises(UserError, match="pass its output as tool_outputs"):
            agent.run(transcript=first.transcript)
        second = agent.run(transcript=first.transcript, tool_outputs=[("functions.add", "3")])
    assert second.text == "3"


def test_events_stream_in_order_with_usage_and_stop_last() -> None:
    with ScriptedBackend([call("add", '{"a":1,"b":1}'), final("two")]) as backend:
        events = list(Agent(backend, tools=[Calc()]).stream("1+1"))
    kinds = [type(e) for e in events]
    assert kinds[-2:] == [Usage, Stopped]
    assert kinds.index(ReasoningDelta) < kinds.index(ToolCall) < kinds.index(ToolResultEvent) < kinds.index(FinalDelta)
    assert all(e.to_dict()["type"] for e in events)


def test_stop_sequences_cut_the_final_answer() -> None:
    with ScriptedBackend([final("one two STOP three")]) as backend:
        result = Agent(backend, stop=["STOP"]).run("count")
    assert result.text == "one two " and result.stop_reason == "stop"
    assert result.transcript.messages[-1].text == "one two "


class ClosableTokens:
    """A token stream that is not a generator but holds a resource (like an engine sequence or an HTTP stream)."""

    def __init__(self, tokens: Iterator[int]) -> None:
        self.tokens, self.closed = tokens, False

    def __iter__(self) -> ClosableTokens:
        return self

    def __next__(self) -> int:
        return next(self.tokens)

    def close(self) -> None:
        self.closed = True


def test_a_stream_left_early_is_closed_even_when_it_is_not_a_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    with ScriptedBackend([final("one two STOP three")]) as backend:
        streams: list[ClosableTokens] = []
        generate = backend.generate

        def wrapped(*args: Any, **kwargs: Any) -> ClosableTokens:
            streams.append(ClosableTokens(iter(generate(*args, **kwargs))))
            return streams[-1]

        monkeypatch.setattr(backend, "generate", wrapped)
        result = Agent(backend, stop=["STOP"]).run("count")
    assert result.stop_reason == "stop"
    assert len(streams) == 1 and streams[0].closed


def test_stop_matcher_holds_back_partial_matches() -> None:
    m = StopMatcher(("END",))
    assert m.feed("abc E") == "abc " and m.feed("N") == "" and m.feed("X") == "ENX" and m.flush() == ""
    m = StopMatcher(("END",))
    assert m.feed("xE") == "x" and m.feed("ND tail") == "" and m.hit


def test_backend_failure_keeps_the_transcript() -> None:
    class Broken:
        encoding, vocab_size, takes_hooks = ScriptedBackend([]).encoding, None, False

        def generate(self, prompt, params, hook=None):  # type: ignore[no-untyped-def]
            yield from ScriptedBackend(["<|channel|>analysis<|message|>thinking"]).generate(prompt, params)
            raise ConnectionError("server went away")

    result = Agent(Broken()).run("hi")
    assert result.stop_reason == "error" and "server went away" in result.errors[0].message
    assert [m.text for m in result.transcript] == ["hi", "thinking"]


def test_user_errors_at_construction() -> None:
    with ScriptedBackend([]) as backend:
        with pytest.raises(UserError, match="reasoning effort"):
            Agent(backend, reasoning="extreme")
        with pytest.raises(UserError, match="max_turns"):
            Limits(max_turns=0)
        with pytest.raises(UserError, match="not a valid JSON Schema"):
            Agent(backend, response_format={"type": "nonsense"})
        with pytest.raises(UserError, match="two tools share"):
            Agent(backend, tools=[Calc(), Calc()])
        with pytest.raises(UserError, match="nothing to do"):
            Agent(backend).run()


def test_reasoning_effort_per_agent_and_per_run() -> None:
    with ScriptedBackend([Step(final("a"), expect="Reasoning: low"), Step(final("b"), expect="Reasoning: high")]) as b:
        agent = Agent(b, reasoning="low")
        agent.run("x")
        agent.run("y", reasoning="high")


def test_scripted_backend_fails_when_the_script_is_not_followed() -> None:
    backend = ScriptedBackend([final("a"), final("b")])
    Agent(backend).run("x")
    with pytest.raises(ScriptError, match="1 scripted step"):
        backend.assert_consumed()
    Agent(backend).run("x")
    with pytest.raises(ScriptError, match="script exhausted"):
        Agent(backend).run("x")
    with pytest.raises(ScriptError, match="does not contain"):
        Agent(ScriptedBackend([Step(final("a"), expect="nowhere")])).run("x")


def test_closing_the_stream_early_keeps_the_partial_turn() -> None:
    with ScriptedBackend(["<|channel|>analysis<|message|>one two three four five six<|end|>"
                          "<|start|>assistant<|channel|>final<|message|>done<|return|>"]) as backend:
        stream = Agent(backend).stream("go")
        seen = [next(stream) for _ in range(3)]
        stream.close()
    assert all(isinstance(e, ReasoningDelta) for e in seen)
    assert [m.text for m in stream.transcript] == ["go", "one two three"]
    assert stream.transcript.messages[-1].meta.get("truncated") is True
    assert stream.usage.completion_tokens == 6


def test_constrained_scripts_are_checked_against_the_grammar() -> None:
    fn = FunctionTool.from_schema(ADD.name, ADD.parameters, ADD.description)
    good = ('<|channel|>analysis<|message|>Add.<|end|><|start|>assistant to=functions.add<|channel|>commentary'
            ' <|constrain|>json<|message|>{"a":1,"b":2}<|call|>')
    with ScriptedBackend([good], constrained=True) as backend:
        result = Agent(backend, functions=[fn], tool_choice="required").run("1+2")
    assert result.stop_reason == "tool_calls"
    with pytest.raises(ScriptError, match="constraints"):  # a final answer where a call is required
        Agent(ScriptedBackend([final("3")], constrained=True), functions=[fn], tool_choice="required").run("1+2")
    bad_args = good.replace('"b":2', '"c":2')
    with pytest.raises(ScriptError, match="constraints"):  # arguments that break the schema
        Agent(ScriptedBackend([bad_args], constrained=True), functions=[fn]).run("1+2")


def test_resume_answers_a_pending_local_call_first() -> None:
    calc = Calc()
    with ScriptedBackend([call("add", '{"a":2,"b":2}')]) as backend:
        first = Agent(backend, tools=[calc], limits=Limits(max_turns=1)).run("2+2")
    cut = Transcript(first.transcript.messages[:3], first.transcript.settings)  # stopped before the answer
    assert cut.pending_tool_call() is not None
    with pytest.raises(UserError, match="never answered"):
        Agent(ScriptedBackend([]), tools=[calc]).run("new task", transcript=cut)
    with ScriptedBackend([Step(final("4"), expect="<|start|>calc.add to=assistant<|channel|>analysis<|message|>4")]) as b:
        resumed = Agent(b, tools=[calc]).run(transcript=cut)
    assert resumed.text == "4" and calc.calls == ['{"a":2,"b":2}', '{"a":2,"b":2}']
