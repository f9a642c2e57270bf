"""The server and the context window, with the official openai client on loopback: a conversation longer than
the window gets a 400 ``context_length_exceeded`` naming the sizes, unless a Responses request asks for
``truncation: "auto"``, which compacts it (the scripted model writes the summary, its grammar checked)."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from ossagent.agent.backends.scripted import ScriptedBackend, Step
from ossagent.agent.server.serve import RunningServer
from tests.agent import scripted_server

server, client = scripted_server.server, scripted_server.client  # the fixtures: a scripted model on loopback
WINDOW = 1024
SUMMARY = json.dumps({"facts": ["the user's dog is called Biscuit"], "open_tasks": ["answer the question"],
                      "citations": []}, separators=(",", ":"))


def answer(text: str) -> str:
    return f"<|channel|>analysis<|message|>Ok.<|end|><|start|>assistant<|channel|>final<|message|>{text}<|return|>"


def history(rounds: int = 5, words: int = 120) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [{"role": "user", "content": "My dog is called Biscuit. " + "blah " * words}]
    for i in range(rounds):
        items += [{"role": "assistant", "content": f"Noted, part {i}."},
                  {"role": "user", "content": f"Part {i}: " + "more words here " * (words // 3)}]
    return [*items, {"role": "user", "content": "What is my dog called?"}]


def script(server: RunningServer, steps: list[Any]) -> ScriptedBackend:
    return scripted_server.script(server, steps, context_window=WINDOW)


def test_chat_request_longer_than_the_window_is_a_400_naming_the_sizes(
    server: RunningServer, client: openai.OpenAI
) -> None:
    backend = script(server, [])
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-oss-test", messages=history())  # type: ignore[arg-type]
    err = info.value
    assert err.code == "context_length_exceeded" and err.param == "messages"
    assert f"maximum context length is {WINDOW} tokens" in err.message and "at most 768 fit" in err.message
    assert backend.prompts == []  # the model never saw it


def test_responses_request_longer_than_the_window_is_a_400_without_truncation(
    server: RunningServer, client: openai.OpenAI
) -> None:
    script(server, [])
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-oss-test", input=history())  # type: ignore[arg-type]
    assert info.value.code == "context_length_exceeded" and info.value.param == "input"
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-oss-test", input="hi", truncation="sometimes")  # type: ignore[arg-type]
    assert info.value.param == "truncation"


def test_responses_truncation_auto_compacts_and_answers(server: RunningServer, client: openai.OpenAI) -> None:
    backend = script(server, [
        Step(answer(SUMMARY), expect=["Your context is full.", "My dog is called Biscuit."]),
        Step(answer("Your dog is called Biscuit."), expect=["[Context summary]", "Biscuit", "What is my dog called?"]),
    ])
    r = client.responses.create(model="gpt-oss-test", input=history(), truncation="auto")  # type: ignore[arg-type]
    assert r.status == "completed" and r.output_text == "Your dog is called Biscuit."
    backend.assert_consumed()
    summary_prompt, answer_prompt = backend.prompts
    assert "My dog is called Biscuit." not in backend.encoding.decode(answer_prompt)
    assert len(answer_prompt) <= WINDOW - WINDOW // 4
    # the usage counts the summary's prompt and completion too
    assert r.usage is not None
    assert r.usage.input_tokens == len(summary_prompt) + len(answer_prompt)
    assert r.usage.output_tokens == sum(len(o) for o in backend.outputs)
