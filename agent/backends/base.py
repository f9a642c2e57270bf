"""The narrow protocol between the agent and a model: a typed prompt in, harmony tokens out.

The local engine, a remote OpenAI-compatible server and the scripted test backend all implement
:class:`Backend`, so the agent loop cannot tell them apart. The protocol is everything the loop uses:

* ``generate(prompt, params, hook)``: the tokens the model writes after ``prompt.tokens``. A
  :class:`~ossagent.agent.prompt.Prompt` carries the harmony tokens and the conversation they render
  (config, messages, tool choice), so a backend that speaks another protocol (``RemoteBackend``) sends the
  conversation it was given instead of decoding tokens back into messages.
* ``encoding``: the o200k_harmony tokenizer the backend's tokens are in (the loop renders and parses with it).
* ``vocab_size``: the model's vocabulary (grammar masks are this long), or None for the encoding's.
* ``takes_hooks``: whether ``generate`` applies a step hook, so the loop constrains decoding by default.
* ``takes_raw_prompts()``: whether ``generate`` continues any token sequence (``Prompt(tokens=...)`` with no
  conversation), as the server's ``/v1/completions`` needs; a backend that sends the conversation instead
  (``RemoteBackend``) cannot.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ossagent.agent.harmony.tokens import STOPS
from ossagent.agent.prompt import Prompt

if TYPE_CHECKING:
    from ossagent.model.hooks import StepHook

__all__ = ["Backend", "GenerationParams", "HarnessError", "Prompt", "default_encoding"]


class HarnessError(Exception):
    """The harness around a backend is wrong (a test or demo script that does not fit the run), not the model
    nor the connection: the loop re-raises it instead of reporting a backend failure, and the CLI says so."""


@dataclass(frozen=True)
class GenerationParams:
    """How to sample one model call."""

    max_tokens: int = 4096
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop_tokens: frozenset[int] = field(default_factory=lambda: frozenset(STOPS))


def default_encoding() -> Any:
    """o200k_harmony from the vocabulary shipped with ossagent: for a backend built without an encoding."""
    from ossagent.model.tokenizer import o200k_harmony

    return o200k_harmony()


class Backend(Protocol):
    @property
    def encoding(self) -> Any:
        """The o200k_harmony encoding (a ``tiktoken.Encoding``) of this backend's tokens."""
        ...

    @property
    def vocab_size(self) -> int | None:
        """Rows of the model's vocabulary (the length of a grammar mask); None: the encoding's size."""
        ...

    @property
    def takes_hooks(self) -> bool:
        """``generate`` applies a step hook (constrained decoding) instead of ignoring it."""
        ...

    def takes_raw_prompts(self) -> bool:
        """``generate`` continues ``prompt.tokens`` as they stand (raw text, not a rendered conversation)."""
        ...

    def generate(self, prompt: Prompt, params: GenerationParams, hook: StepHook | None = None) -> Iterator[int]:
        """Yield sampled tokens after ``prompt.tokens``; the stop token that ended generation is yielded last.

        A caller that stops reading early (a stop sequence, a timeout) calls the iterator's ``close()`` when it has
        one (generators, engine streams, HTTP streams), so the sequence or connection is freed at once."""
        ...


@runtime_checkable
class Closable(Protocol):
    """Anything with ``close()``: what a caller releases when it stops reading a token stream early."""

    def close(self) -> None: ...
