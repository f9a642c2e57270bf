"""A backend that replays a script: for tests, examples and demos without a model.

Each step of the script is one call to :meth:`ScriptedBackend.generate`: the harmony text the "model"
answers with (special tokens written out, e.g. ``<|channel|>final<|message|>Hi<|return|>``), or token ids,
or a function of the prompt. A step may also say what the prompt must contain. The backend fails loudly
when it is called more often than the script allows, when a prompt misses an expectation, and (on
:meth:`assert_consumed` or leaving its ``with`` block) when steps were left over — so a test cannot pass
while the agent silently skipped a turn.

    with ScriptedBackend([
        '<|channel|>analysis<|message|>Need python.<|end|>'
        '<|start|>assistant to=python<|channel|>analysis<|message|>print(6*7)<|call|>',
        Step('<|channel|>final<|message|>42<|return|>', expect="42"),
    ]) as backend:
        Agent(backend, tools=[...]).run("What is 6*7?")
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ossagent.agent.backends.base import GenerationParams, HarnessError, default_encoding
from ossagent.agent.harmony.tokens import GPT_OSS_VOCAB
from ossagent.agent.prompt import Prompt

if TYPE_CHECKING:
    from ossagent.model.hooks import StepHook

Reply = str | Sequence[int] | Callable[[str], str]


class ScriptError(HarnessError):
    """The agent did not follow the script: too many calls, too few, or a prompt without what was expected."""


@dataclass(frozen=True)
class Step:
    reply: Reply
    expect: str | Sequence[str] = ()  # substrings the decoded prompt must contain


class ScriptedBackend:
    """A :class:`~ossagent.agent.backends.base.Backend` that answers from a fixed script."""

    def __init__(self, script: Sequence[Reply | Step], encoding: Any = None, *, constrained: bool = False,
                 context_window: int | None = None) -> None:
        """constrained: take the agent's grammar hook and fail when a scripted token breaks its constraints
        (a forced token differs, a masked token appears), so scripts are checked like a model's output.
        context_window: the context this "model" claims (prompts longer than it fail the script)."""
        self.takes_hooks = constrained
        self.context_window = context_window
        self.vocab_size = GPT_OSS_VOCAB
        if encoding is None:
            encoding = default_encoding()
        self.encoding = encoding
        self._steps = [s if isinstance(s, Step) else Step(s) for s in script]
        self._next = 0
        self._lock = threading.Lock()
        self.prompts: list[list[int]] = []
        self.outputs: list[list[int]] = []

    @property
    def remaining(self) -> int:
        return len(self._steps) - self._next

    def _tokens(self, reply: Reply, prompt_text: str) -> list[int]:
        if callable(reply):
            reply = reply(prompt_text)
        if isinstance(reply, str):
            return list(self.encoding.encode(reply, allowed_special="all"))
        return [int(t) for t in reply]

    def takes_raw_prompts(self) -> bool:
        return True  # the script answers any prompt

    def generate(self, prompt: Prompt, params: GenerationParams, hook: StepHook | None = None) -> Iterator[int]:
        with self._lock:  # the server may call from several threads
            if self._next >= len(self._steps):
                raise ScriptError(
                    f"script exhausted: call {self._next + 1} but the script has {len(self._steps)} step(s)"
                )
            step = self._steps[self._next]
            self._next += 1
        if self.context_window is not None and len(prompt.tokens) + params.max_tokens > self.context_window:
            raise ScriptError(f"step {self._next}: a prompt of {len(prompt.tokens)} tokens plus {params.max_tokens} "
                              f"for the completion exceeds the {self.context_window}-token context")
        prompt_text = self.encoding.decode(list(prompt.tokens))
        expects = [step.expect] if isinstance(step.expect, str) else list(step.expect)
        for want in expects:
            if want not in prompt_text:
                raise ScriptError(
                    f"step {self._next}: prompt does not contain {want!r}; prompt ends with "
                    f"{prompt_text[-400:]!r}"
                )
        tokens = self._tokens(step.reply, prompt_text)
        self.prompts.append(list(prompt.tokens))
        out: list[int] = []
        self.outputs.append(out)
        return self._emit(tokens, params, out, hook)

    def _check(self, hook: StepHook, tokens: list[int], i: int, out: list[int], forced: list[int]) -> None:
        """Hold token ``i`` of the script against the hook, as the engine would have asked it."""
        if forced:
            expect = forced.pop(0)
            if tokens[i] != expect:
                raise ScriptError(f"step {len(self.outputs)}: constraints force token {expect} "
                                  f"({self.encoding.decode([expect])!r}) where the script has "
                                  f"{self.encoding.decode([tokens[i]])!r} after {self.encoding.decode(out)!r}")
            return
        action = hook.step(list(out))
        if action.stop:
            raise ScriptError(f"step {len(self.outputs)}: constraints end the turn after {self.encoding.decode(out)!r}")
        if action.forced:
            forced.extend(int(t) for t in action.forced)
            self._check(hook, tokens, i, out, forced)
        elif action.mask is not None and not bool(action.mask[tokens[i]]):
            raise ScriptError(f"step {len(self.outputs)}: constraints forbid {self.encoding.decode([tokens[i]])!r} "
                              f"after {self.encoding.decode(out)!r}")

    def _emit(
        self, tokens: list[int], params: GenerationParams, out: list[int], hook: StepHook | None = None
    ) -> Iterator[int]:
        forced: list[int] = []
        for i, tok in enumerate(tokens):
            if len(out) >= params.max_tokens:
                return
            if hook is not None and self.takes_hooks:
                self._check(hook, tokens, i, out, forced)
            out.append(tok)
            yield tok
            if tok in params.stop_tokens:
                if i != len(tokens) - 1:
                    rest = self.encoding.decode(tokens[i + 1 :])
                    raise ScriptError(f"step {len(self.outputs)}: text after a stop token: {rest!r}")
                return

    def assert_consumed(self) -> None:
        if self._next != len(self._steps):
            raise ScriptError(f"{self.remaining} scripted step(s) were never used")

    def close(self) -> None:
        self.assert_consumed()

    def __enter__(self) -> ScriptedBackend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.assert_consumed()
