"""Built-in tools the server runs (python in the bwrap sandbox, the browser over an offline folder) as Responses
items, citations as annotations: parsed by the official openai client into its typed objects."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.responses import (
    ResponseCodeInterpreterToolCall,
    ResponseFunctionWebSearch,
    ResponseOutputMessage,
    ResponseReasoningItem,
)
from openai.types.responses.response_function_web_search import (
    ActionFind,
    ActionOpenPage,
    ActionSearch,
    ActionSearchSource,
)
from openai.types.responses.response_output_text import AnnotationURLCitation

from ossagent.agent import events
from ossagent.agent.backends.scripted import ScriptedBackend, Step
from ossagent.agent.server import ServerConfig, create_app
from ossagent.agent.server.responses import ResponsesFormatter
from ossagent.agent.server.responses_request import parse_responses
from ossagent.agent.server.serve import RunningServer, start_in_thread
from ossagent.tools.base import Tool

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="python runs in bubblewrap")

PAGE = """# Sliding windows

gpt-oss alternates full attention with a sliding window of 128 tokens.
Attention sinks keep the first tokens in view.
"""
BASE = "https://offline.invalid/"
ANSWER = "The window is 128 tokens 【1†L3】, sinks help 【2†L1】 (see 【0†L1】 and 【9†L1】)."


def call(recipient: str, body: str, think: str) -> str:
    return (f"<|channel|>analysis<|message|>{think}<|end|><|start|>assistant to={recipient}<|channel|>analysis"
            f"<|message|>{body}<|call|>")


def steps() -> list[Step]:
    return [
        Step(call("python", "print(6 * 7)", "Compute first.")),
        Step(call("browser.search", '{"query": "sliding window"}', "Now search."),
             expect="<|start|>python to=assistant<|channel|>analysis<|message|>42"),
        Step(call("browser.open", '{"id": 0, "cursor": 0}', "Open it."), expect="Sliding windows"),
        Step(call("browser.find", '{"pattern": "sinks"}', "Find sinks."), expect="128 tokens"),
        Step(f"<|channel|>analysis<|message|>Done.<|end|><|start|>assistant<|channel|>final<|message|>{ANSWER}"
             "<|return|>", expect="Attention sinks"),
    ]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Any]]:
    from ossagent.tools.browser import Browser, BrowserConfig, OfflineBackend, browser_tools
    from ossagent.tools.python import PythonTool

    root = tmp_path_factory.mktemp("builtin")
    (root / "docs").mkdir()
    (root / "work").mkdir()
    (root / "docs" / "sliding_windows.md").write_text(PAGE)

    def tools() -> list[Tool]:
        browser = Browser(OfflineBackend(root / "docs", base_url=BASE), BrowserConfig(render="never"))
        return [PythonTool(root / "work", timeout=20), *browser_tools(browser)]

    app = create_app(ServerConfig(backend=ScriptedBackend([]), model_id="m", tools_factory=tools))
    running = start_in_thread(app)
    yield running, app.state.server.config
    running.stop()


def client_for(served: tuple[RunningServer, Any]) -> openai.OpenAI:
    running, config = served
    config.backend = ScriptedBackend(steps())
    return openai.OpenAI(base_url=running.url, api_key="x", max_retries=0)


def check_output(output: list[Any]) -> None:
    kinds = [type(i) for i in output]
    assert kinds == [ResponseReasoningItem, ResponseCodeInterpreterToolCall, ResponseReasoningItem,
                     ResponseFunctionWebSearch, ResponseReasoningItem, ResponseFunctionWebSearch,
                     ResponseReasoningItem, ResponseFunctionWebSearch, ResponseReasoningItem, ResponseOutputMessage]
    code = output[1]
    assert code.code == "print(6 * 7)" and code.status == "completed" and code.container_id.startswith("cntr_")
    assert code.outputs is not None and "42" in code.outputs[0].logs and code.outputs[0].type == "logs"
    search, opened, found = output[3], output[5], output[7]
    assert isinstance(search.action, ActionSearch) and search.action.query == "sliding window"
    url = BASE + "sliding_windows.md"
    assert search.action.sources == [ActionSearchSource(type="url", url=url)]  # the results the search listed
    assert isinstance(opened.action, ActionOpenPage) and opened.action.url == url
    assert isinstance(found.action, ActionFind) and found.action.pattern == "sinks" and found.action.url == url
    assert all(i.status == "completed" for i in (search, opened, found))
    (text,) = output[-1].content
    assert text.text == ANSWER
    notes = text.annotations
    assert all(isinstance(a, AnnotationURLCitation) for a in notes)
    assert [(ANSWER[a.start_index:a.end_index], a.url, a.title) for a in notes] == [  # type: ignore[union-attr]
        ("【1†L3】", url, "sliding windows"),  # the title of a .md file is its name
        ("【2†L1】", url, "sliding windows"),  # a find-results page cites the page searched
    ]  # 【0†…】 is the search-results page (no URL), 【9†…】 no page at all: no annotation


def test_builtin_calls_are_typed_items_with_citations(served: tuple[RunningServer, Any]) -> None:
    client = client_for(served)
    r = client.responses.create(model="m", input="How wide is the window?")
    assert r.status == "completed"
    check_output(r.output)
    assert client.responses.retrieve(r.id).output == r.output  # stored as answered
    served[1].backend.assert_consumed()


def test_builtin_calls_stream_their_progress(served: tuple[RunningServer, Any]) -> None:
    client = client_for(served)
    evs = list(client.responses.create(model="m", input="How wide is the window?", stream=True))
    assert [e.sequence_number for e in evs] == list(range(len(evs)))
    final = evs[-1]
    assert final.type == "response.completed"
    check_output(final.response.output)
    ids = {i.id: n for n, i in enumerate(final.response.output)}

    def of(item_id: str) -> list[str]:
        return [e.type for e in evs if getattr(e, "item_id", None) == item_id or
                getattr(getattr(e, "item", None), "id", None) == item_id]

    code = final.response.output[1]
    python_events = [t for t in of(code.id) if t != "response.code_interpreter_call_code.delta"]
    assert python_events == [
        "response.output_item.added", "response.code_interpreter_call.in_progress",
        "response.code_interpreter_call_code.done", "response.code_interpreter_call.interpreting",
        "response.code_interpreter_call.completed", "response.output_item.done"]
    deltas = [e.delta for e in evs if e.type == "response.code_interpreter_call_code.delta"]
    assert "".join(deltas) == "print(6 * 7)"
    for item in final.response.output[3:8:2]:
        assert of(item.id) == ["response.output_item.added", "response.web_search_call.in_progress",
                               "response.web_search_call.searching", "response.web_search_call.completed",
                               "response.output_item.done"]
        added = next(e for e in evs if e.type == "response.output_item.added" and e.item.id == item.id)
        assert added.output_index == ids[item.id] and added.item.status == "in_progress"
    notes = [e for e in evs if e.type == "response.output_text.annotation.added"]
    assert [(e.annotation_index, e.annotation.model_dump()) for e in notes] == list(enumerate(
        a.model_dump() for a in final.response.output[-1].content[0].annotations))
    last_delta = max(n for n, e in enumerate(evs) if e.type == "response.output_text.delta")
    first_note = evs.index(notes[0])
    assert first_note < last_delta  # announced as soon as the marker is complete, not at the end


def test_a_failed_call_says_so(served: tuple[RunningServer, Any]) -> None:
    running, config = served
    config.backend = ScriptedBackend([
        Step(call("browser.open", '{"id": "https://offline.invalid/missing.md"}', "Open.")),
        Step("<|channel|>final<|message|>Not found.<|return|>", expect="no such document"),
    ])
    client = openai.OpenAI(base_url=running.url, api_key="x", max_retries=0)
    r = client.responses.create(model="m", input="x")
    failed = r.output[1]
    assert isinstance(failed, ResponseFunctionWebSearch) and failed.status == "failed"
    assert isinstance(failed.action, ActionOpenPage) and failed.action.url == "https://offline.invalid/missing.md"
    assert r.output_text == "Not found."


def test_a_call_the_run_stopped_before_answering_is_incomplete() -> None:
    fmt = ResponsesFormatter("m", set(), {})
    for ev in (events.ToolCallStarted("c1", "python"), events.ToolCallDelta("c1", "while True: pass"),
               events.ToolCall("c1", "python", "while True: pass"), events.Stopped("timeout")):
        out = fmt.on_event(ev)
    assert [e["type"] for e in out] == ["response.output_item.done", "response.incomplete"]
    item = ResponseCodeInterpreterToolCall.model_validate(fmt.response()["output"][0])
    assert item.status == "incomplete" and item.code == "while True: pass" and item.outputs is None


def test_items_sent_back_as_input_continue_the_conversation(served: tuple[RunningServer, Any]) -> None:
    client = client_for(served)
    first = client.responses.create(model="m", input="How wide is the window?")
    config = served[1]
    config.backend = ScriptedBackend([Step("<|channel|>final<|message|>Yes.<|return|>",
                                           expect=["How wide", "128 tokens 【1†L3】", "Thanks"])])
    items: list[Any] = [{"role": "user", "content": "How wide is the window?"},
                        *[i.model_dump(exclude_none=True) for i in first.output],
                        {"role": "user", "content": "Thanks"}]
    r = client.responses.create(model="m", input=items)
    assert r.output_text == "Yes."
    # the python call comes back as the call and its logs (the prompt drops it with the finished turn's reasoning)
    msgs = parse_responses({"model": "m", "input": items}).messages
    call, answer = [m for m in msgs if m.recipient == "python" or m.name == "python"]
    assert call.text == "print(6 * 7)" and "42" in answer.text and call.meta == answer.meta
    assert not any("sliding window" in m.text for m in msgs if m.role != "assistant")  # web_search_call: skipped
