"""``POST /v1/completions``: the legacy Completions API, for raw prompts.

The prompt is not a conversation: it is tokenized as it stands (no harmony rendering; the spelling of a special
token such as ``<|start|>`` reads as that token, so a hand-written harmony prompt works) and the backend continues
it. ``prompt`` is a string, a list of strings, a list of token ids, or a list of such lists; each prompt gets ``n``
choices (at most :data:`MAX_CHOICES` in all), generated one after another in the request's slot, choice ``i`` of a
seeded request with ``seed + i``. ``max_tokens`` defaults to 16 as in OpenAI's API. A choice ends with
``finish_reason`` ``stop`` (the model wrote ``<|return|>``, ``<|call|>`` or ``<|endoftext|>``, or a ``stop``
sequence matched; neither is in the text) or ``length`` (``max_tokens`` or the server's time limit). Other
special tokens the model writes stay in the text as their spellings. ``echo`` puts the prompt before its text.

Refused with a 400 naming the parameter: ``logprobs`` (backends hand over tokens, not their probabilities),
``suffix`` (no insertion), ``best_of`` other than ``n``, and a backend that cannot continue raw text (a remote
server speaks chat, see :meth:`~ossagent.agent.backends.base.Backend.takes_raw_prompts`).
"""

from __future__ import annotations

import codecs
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator

from ossagent.agent import events
from ossagent.agent.backends.base import Backend, GenerationParams, Prompt
from ossagent.agent.harmony.tokens import CALL, ENDOFTEXT, RETURN
from ossagent.agent.limits import StopMatcher
from ossagent.agent.server.chat import usage_dict
from ossagent.agent.server.errors import APIError, bad_request
from ossagent.agent.server.requests import Count, Flag, Stop, _Common, _invalid, _validate

RAW_STOPS = frozenset({RETURN, CALL, ENDOFTEXT})  # gpt-oss's end-of-sequence tokens (its generation config)
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for this API
MAX_CHOICES = 128  # prompts x n


@dataclass(frozen=True)
class ChoiceText(events.Event):
    """New text of choice ``index``."""

    type: ClassVar[str] = "choice_text"
    index: int
    text: str


@dataclass(frozen=True)
class ChoiceEnd(events.Event):
    """Choice ``index`` is done; ``reason`` is its ``finish_reason`` (``stop`` or ``length``)."""

    type: ClassVar[str] = "choice_end"
    index: int
    reason: str


# ------------------------------------------------------------------------------ the request
def _prompt(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(t, int) and not isinstance(t, bool) for t in value):
            return [value]
        if all(isinstance(p, str) for p in value):
            return value
        if all(isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p)
               for p in value):
            return value
    raise _invalid("prompt must be a string, a list of strings, a list of token ids or a list of such lists")


def _one_or_more(value: Any) -> Any:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid("n must be an integer >= 1")
    return value


class CompletionRequest(_Common):
    prompt: Annotated[list[str | list[int]], BeforeValidator(_prompt)]
    max_tokens: Count = None
    stop: Stop = ()
    n: Annotated[int, BeforeValidator(_one_or_more)] = 1
    best_of: Any = None
    echo: Flag = False
    logprobs: Any = None
    suffix: Any = None
    stream_options: Any = None

    @property
    def include_usage(self) -> bool:
        return isinstance(self.stream_options, dict) and bool(self.stream_options.get("include_usage"))


def parse_completion(body: dict[str, Any]) -> CompletionRequest:
    if body.get("prompt") is None:
        raise bad_request("you must provide a prompt", "prompt")
    req: CompletionRequest = _validate(CompletionRequest, body)
    if req.logprobs is not None:
        raise bad_request("logprobs are not supported by this server (its backends do not return token "
                          "probabilities); leave logprobs unset", "logprobs", "unsupported_parameter")
    if req.suffix:
        raise bad_request("suffix is not supported by this server (it continues prompts, it does not insert)",
                          "suffix", "unsupported_parameter")
    if req.best_of not in (None, req.n):
        raise bad_request("best_of is not supported by this server (it has no log probabilities to rank "
                          "choices); leave it unset or equal to n", "best_of", "unsupported_parameter")
    if len(req.prompt) * req.n > MAX_CHOICES:
        raise bad_request(f"at most {MAX_CHOICES} choices (prompts x n) per request, got "
                          f"{len(req.prompt) * req.n}", "n")
    return req


def prompt_tokens(req: CompletionRequest, encoding: Any, vocab: int) -> list[list[int]]:
    """Each prompt as token ids: text tokenized as it stands (special-token spellings as those tokens)."""
    out: list[list[int]] = []
    for i, p in enumerate(req.prompt):
        param = "prompt" if len(req.prompt) == 1 else f"prompt[{i}]"
        tokens = list(encoding.encode(p, allowed_special="all")) if isinstance(p, str) else list(p)
        if not tokens:
            raise bad_request("the prompt is empty", param)
        bad = [t for t in tokens if not 0 <= t < vocab]
        if bad:
            raise bad_request(f"token ids outside the model's vocabulary (0..{vocab - 1}): {bad[:5]}", param)
        out.append(tokens)
    return out


def check_context(prompts: list[list[int]], max_tokens: int, window: int | None) -> None:
    """A 400 (OpenAI's code) when a prompt and its completion do not fit the model's context."""
    longest = max(len(p) for p in prompts)
    if window is not None and longest + max_tokens > window:
        raise APIError(400, f"This model's maximum context length is {window} tokens, however you requested "
                            f"{longest + max_tokens} tokens ({longest} in your prompt; {max_tokens} for the "
                            "completion). Please reduce your prompt; or completion length.",
                       param="prompt", code="context_length_exceeded")


# ------------------------------------------------------------------------------ the run
class RawRun:
    """The choices of one request as events, generated one after another (iterate on a worker thread)."""

    def __init__(self, backend: Backend, prompts: list[list[int]], req: CompletionRequest, *,
                 max_tokens: int, max_time: float | None) -> None:
        self.backend, self.prompts, self.req = backend, prompts, req
        self.max_tokens, self.max_time = max_tokens, max_time
        self.usage = events.Usage()
        self._tokens: Iterator[int] | None = None

    def __iter__(self) -> Iterator[events.Event]:
        deadline = time.monotonic() + self.max_time if self.max_time else None
        try:
            for p, tokens in enumerate(self.prompts):
                for k in range(self.req.n):
                    yield from self._choice(p * self.req.n + k, tokens, k, deadline)
        except Exception as exc:  # the backend failed (the engine or its inputs)
            yield events.ErrorEvent("backend", f"{type(exc).__name__}: {exc}")
            yield events.Stopped("error")
            return
        yield events.Stopped("final")

    def _choice(self, index: int, prompt: list[int], k: int, deadline: float | None) -> Iterator[events.Event]:
        req, enc = self.req, self.backend.encoding
        seed = None if req.seed is None else req.seed + k
        params = GenerationParams(max_tokens=self.max_tokens, temperature=req.temperature, top_p=req.top_p,
                                  seed=seed, stop_tokens=RAW_STOPS)
        if req.echo:
            yield ChoiceText(index, enc.decode(prompt))
        matcher = StopMatcher(req.stop)
        utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        reason, count = "length", 0
        self._tokens = self.backend.generate(Prompt(tokens=list(prompt)), params)
        try:
            for tok in self._tokens:
                count += 1
                if tok in RAW_STOPS:
                    reason = "stop"
                    break
                text = matcher.feed(utf8.decode(enc.decode_single_token_bytes(tok)))
                if text:
                    yield ChoiceText(index, text)
                if matcher.hit:
                    reason = "stop"
                    break
                if deadline is not None and time.monotonic() > deadline:
                    break
        finally:
            self.close()
        if not matcher.hit:
            rest = matcher.feed(utf8.decode(b"", final=True))
            rest += "" if matcher.hit else matcher.flush()
            reason = "stop" if matcher.hit else reason
            if rest:
                yield ChoiceText(index, rest)
        u = self.usage
        self.usage = events.Usage(prompt_tokens=u.prompt_tokens + len(prompt),
                                  completion_tokens=u.completion_tokens + count, turns=u.turns + 1)
        yield self.usage
        yield ChoiceEnd(index, reason)

    def close(self) -> None:
        """Stop the choice in progress (the backend frees its sequence)."""
        tokens, self._tokens = self._tokens, None
        close = getattr(tokens, "close", None)
        if close is not None:
            close()


# ------------------------------------------------------------------------------ the answer
class CompletionFormatter:
    """Events -> a ``text_completion`` object, or its chunks for SSE."""

    def __init__(self, model: str, choices: int) -> None:
        self.id = "cmpl-" + uuid.uuid4().hex
        self.created = int(time.time())
        self.model = model
        self.texts: list[list[str]] = [[] for _ in range(choices)]
        self.finish: list[str | None] = [None] * choices
        self.usage = events.Usage()
        self.errors: list[events.ErrorEvent] = []

    def _object(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": choices}

    def _choice(self, index: int, text: str, finish: str | None) -> dict[str, Any]:
        return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}

    def on_event(self, ev: events.Event) -> list[dict[str, Any]]:
        """Fold one event in; return the chunks to stream for it."""
        if isinstance(ev, ChoiceText):
            self.texts[ev.index].append(ev.text)
            return [self._object([self._choice(ev.index, ev.text, None)])]
        if isinstance(ev, ChoiceEnd):
            self.finish[ev.index] = ev.reason
            return [self._object([self._choice(ev.index, "", ev.reason)])]
        if isinstance(ev, events.Usage):
            self.usage = ev
        elif isinstance(ev, events.ErrorEvent):
            self.errors.append(ev)  # the openai client raises on an "error" chunk
            return [{"error": {"message": ev.message, "type": "server_error", "param": None, "code": None}}]
        return []

    def usage_chunk(self) -> dict[str, Any]:
        return {**self._object([]), "usage": usage_dict(self.usage)}

    def completion(self) -> dict[str, Any]:
        choices = [self._choice(i, "".join(t), self.finish[i] or "stop") for i, t in enumerate(self.texts)]
        return {**self._object(choices), "usage": usage_dict(self.usage)}
