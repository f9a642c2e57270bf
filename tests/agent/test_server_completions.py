"""``/v1/completions`` (raw prompts) with the official openai client: a scripted model, then the tiny real one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from ossagent.agent.backends.remote import RemoteBackend
from ossagent.agent.backends.scripted import ScriptedBackend, Step
from ossagent.agent.server import ServerConfig, create_app
from ossagent.agent.server.serve import RunningServer, start_in_thread
from tests.agent import scripted_server
from tests.agent.scripted_server import use

server, client = scripted_server.server, scripted_server.client  # the fixtures: a scripted model served on loopback


def script(server: RunningServer, steps: list[Any], **kw: Any) -> ScriptedBackend:
    return scripted_server.script(server, steps, constrained=False, **kw)


def test_a_raw_prompt_is_continued_as_it_stands(server: RunningServer, client: openai.OpenAI) -> None:
    backend = script(server, [" Paris.<|return|>"])
    r = client.completions.create(model="gpt-oss-test", prompt="The capital of France is", max_tokens=20)
    (choice,) = r.choices
    assert r.object == "text_completion" and r.id.startswith("cmpl-") and r.model == "gpt-oss-test"
    assert choice.text == " Paris." and choice.finish_reason == "stop" and choice.index == 0
    assert choice.logprobs is None
    enc = backend.encoding
    assert backend.prompts == [enc.encode("The capital of France is")]  # no harmony rendering around it
    assert r.usage is not None and r.usage.prompt_tokens == len(backend.prompts[0])
    assert r.usage.completion_tokens == len(backend.outputs[0]) and r.usage.total_tokens == (
        r.usage.prompt_tokens + r.usage.completion_tokens)
    backend.assert_consumed()


def test_special_token_spellings_are_those_tokens(server: RunningServer, client: openai.OpenAI) -> None:
    harmony = "<|start|>user<|message|>Hi<|end|><|start|>assistant<|channel|>final<|message|>"
    backend = script(server, ["Hello<|end|><|start|>user<|return|>"])
    r = client.completions.create(model="gpt-oss-test", prompt=harmony, max_tokens=20)
    assert backend.prompts[0] == backend.encoding.encode(harmony, allowed_special="all")
    assert backend.prompts[0][0] == 200006  # <|start|>
    assert r.choices[0].text == "Hello<|end|><|start|>user"  # written special tokens stay; the stop does not


def test_max_tokens_cuts_with_length(server: RunningServer, client: openai.OpenAI) -> None:
    backend = script(server, ["one two three four five six seven eight<|return|>"])
    r = client.completions.create(model="gpt-oss-test", prompt="count:", max_tokens=3)
    assert r.choices[0].finish_reason == "length" and r.choices[0].text == "one two three"
    assert r.usage is not None and r.usage.completion_tokens == 3 == len(backend.outputs[0])


def test_default_max_tokens_is_sixteen(server: RunningServer, client: openai.OpenAI) -> None:
    script(server, [" a" * 40 + "<|return|>"])
    r = client.completions.create(model="gpt-oss-test", prompt="a")
    assert r.choices[0].text == " a" * 16 and r.choices[0].finish_reason == "length"


def test_stop_sequence_ends_the_choice_without_it(server: RunningServer, client: openai.OpenAI) -> None:
    script(server, ["1, 2, 3, 4, 5<|return|>"])
    r = client.completions.create(model="gpt-oss-test", prompt="count:", stop=[", 3", "9"], max_tokens=50)
    assert r.choices[0].text == "1, 2" and r.choices[0].finish_reason == "stop"


def test_stream_matches_the_object(server: RunningServer, client: openai.OpenAI) -> None:
    script(server, [" Berlin is big.<|return|>", " Berlin is big.<|return|>"])
    whole = client.completions.create(model="gpt-oss-test", prompt="Germany:", max_tokens=30)
    chunks = list(client.completions.create(model="gpt-oss-test", prompt="Germany:", max_tokens=30, stream=True,
                                            stream_options={"include_usage": True}))
    assert all(c.object == "text_completion" and c.id == chunks[0].id for c in chunks)
    texts = [ch.text for c in chunks for ch in c.choices]
    assert len([t for t in texts if t]) > 2  # streamed piece by piece
    assert "".join(texts) == whole.choices[0].text == " Berlin is big."
    finishes = [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


def test_several_prompts_and_n_choices(server: RunningServer, client: openai.OpenAI) -> None:
    backend = script(server, [" A1<|return|>", " A2<|return|>", " B1<|return|>", " B2<|return|>"])
    r = client.completions.create(model="gpt-oss-test", prompt=["first", "second"], n=2, max_tokens=5)
    assert [(c.index, c.text) for c in r.choices] == [(0, " A1"), (1, " A2"), (2, " B1"), (3, " B2")]
    enc = backend.encoding
    assert backend.prompts == [enc.encode("first")] * 2 + [enc.encode("second")] * 2
    assert r.usage is not None and r.usage.prompt_tokens == sum(len(p) for p in backend.prompts)


def test_streamed_choices_carry_their_index(server: RunningServer, client: openai.OpenAI) -> None:
    script(server, [" x<|return|>", " y<|return|>"])
    chunks = list(client.completions.create(model="gpt-oss-test", prompt=["p", "q"], max_tokens=5, stream=True))
    by_index: dict[int, str] = {}
    for c in chunks:
        for ch in c.choices:
            by_index[ch.index] = by_index.get(ch.index, "") + ch.text
    assert by_index == {0: " x", 1: " y"}


def test_token_id_prompts_and_echo(server: RunningServer, client: openai.OpenAI) -> None:
    backend = script(server, [" there<|return|>", Step(" you<|return|>")])
    ids = backend.encoding.encode("Hello")
    r = client.completions.create(model="gpt-oss-test", prompt=[ids, ids + ids], max_tokens=5, echo=True)
    assert backend.prompts == [ids, ids + ids]
    assert [c.text for c in r.choices] == ["Hello there", "HelloHello you"]


def test_unsupported_parameters_are_a_400_naming_them(server: RunningServer, client: openai.OpenAI) -> None:
    script(server, [])
    for kw, param in (({"logprobs": 2}, "logprobs"), ({"logprobs": 0}, "logprobs"), ({"suffix": "end"}, "suffix"),
                      ({"best_of": 3}, "best_of"), ({"n": 0}, "n"), ({"temperature": 3}, "temperature")):
        with pytest.raises(openai.BadRequestError) as info:
            client.completions.create(model="gpt-oss-test", prompt="x", **kw)
        assert info.value.body["param"] == param, kw  # type: ignore[index]
    for prompt in ("", [], [[]], [1.5], [10**9]):
        with pytest.raises(openai.BadRequestError) as info:
            client.completions.create(model="gpt-oss-test", prompt=prompt)  # type: ignore[arg-type]
        assert info.value.body["param"].startswith("prompt"), prompt  # type: ignore[index]


def test_unknown_model_is_the_same_404_as_chat(server: RunningServer, client: openai.OpenAI) -> None:
    script(server, [])
    with pytest.raises(openai.NotFoundError) as raw:
        client.completions.create(model="nope", prompt="x")
    with pytest.raises(openai.NotFoundError) as chat:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert raw.value.body == chat.value.body  # one check for every endpoint
    assert "this server serves 'gpt-oss-test'" in raw.value.message
    script(server, [" ok<|return|>"])
    r = client.completions.create(model="openai/gpt-oss-test", prompt="x")  # an alias works as in chat
    assert r.choices[0].text == " ok" and r.model == "gpt-oss-test"


def test_a_remote_backend_cannot_take_raw_prompts(server: RunningServer, client: openai.OpenAI) -> None:
    use(server, RemoteBackend("http://127.0.0.1:9/v1", "gpt-oss-20b"))  # never contacted
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="gpt-oss-test", prompt="x")
    assert "cannot continue raw prompts" in info.value.message and info.value.code == "unsupported_endpoint"

    class Older:  # a backend written before takes_raw_prompts(): refused the same way, not a 500
        encoding, vocab_size, takes_hooks = ScriptedBackend([]).encoding, None, False

    use(server, Older())
    with pytest.raises(openai.BadRequestError, match="cannot continue raw prompts"):
        client.completions.create(model="gpt-oss-test", prompt="x")


def test_prompt_and_completion_must_fit_the_context(server: RunningServer, client: openai.OpenAI) -> None:
    script(server, [], context_window=20)
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="gpt-oss-test", prompt="word " * 10, max_tokens=15)
    assert info.value.code == "context_length_exceeded" and "maximum context length is 20 tokens" in info.value.message


def test_a_backend_failure_is_a_500_not_an_empty_choice(server: RunningServer, client: openai.OpenAI) -> None:
    script(server, [])  # the script is exhausted at once
    with pytest.raises(openai.InternalServerError) as info:
        client.completions.create(model="gpt-oss-test", prompt="x")
    assert "script exhausted" in info.value.message
    script(server, [])
    with pytest.raises(openai.APIError, match="script exhausted"):
        list(client.completions.create(model="gpt-oss-test", prompt="x", stream=True))


# -- the real engine (a tiny random gpt-oss) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_client(tiny_backend: Any) -> Iterator[openai.OpenAI]:
    running = start_in_thread(create_app(ServerConfig(backend=tiny_backend, model_id="tiny",
                                                      encoding=tiny_backend.encoding)))
    yield openai.OpenAI(base_url=running.url, api_key="x", max_retries=0)
    running.stop()


def test_the_engine_continues_raw_prompts_streamed_or_not(tiny_client: openai.OpenAI) -> None:
    kw: Any = {"model": "tiny", "prompt": "Once upon a time", "max_tokens": 12, "seed": 7, "temperature": 0.8}
    whole = tiny_client.completions.create(**kw)
    again = tiny_client.completions.create(**kw)
    streamed = list(tiny_client.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    (choice,) = whole.choices
    assert choice == again.choices[0]  # seeded: the same text
    assert "".join(ch.text for c in streamed for ch in c.choices) == choice.text
    assert [ch.finish_reason for c in streamed for ch in c.choices if ch.finish_reason] == [choice.finish_reason]
    assert streamed[-1].usage == whole.usage
    assert whole.usage is not None and whole.usage.prompt_tokens == 4
    if choice.finish_reason == "length":
        assert whole.usage.completion_tokens == 12
    else:
        assert choice.finish_reason == "stop" and whole.usage.completion_tokens <= 12
    two = tiny_client.completions.create(**{**kw, "n": 2})
    assert two.choices[0].text == choice.text  # choice i is seeded with seed + i
    with pytest.raises(openai.BadRequestError):
        tiny_client.completions.create(model="tiny", prompt="x", logprobs=1)
