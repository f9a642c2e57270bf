"""The narrow protocol between the agent and a model: harmony tokens in, harmony tokens out.

The local engine, a remote OpenAI-compatible server and the scripted test backend all implement
:class:`Backend`, so the agent loop cannot tell them apart.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ossagent.agent.harmony.tokens import STOPS

if TYPE_CHECKING:
    from ossagent.model.hooks import StepHook


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 4096
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop_tokens: frozenset[int] = field(default_factory=lambda: frozenset(STOPS))
    # The structured form of the prompt's system and developer messages (an
    # ``ossagent.agent.prompt.PromptConfig``) and the run's tool choice, for backends that speak another
    # protocol (RemoteBackend); token backends ignore them.
    prompt_config: Any = field(default=None, compare=False)
    tool_choice: Any = field(default="auto", compare=False)


def default_encoding() -> Any:
    """o200k_harmony from the vocabulary shipped with ossagent: for a backend built without an encoding."""
    from ossagent.model.tokenizer import o200k_harmony

    return o200k_harmony()


class Backend(Protocol):
    def generate(
        self, prompt: Sequence[int], params: GenerationParams, hook: StepHook | None = None
    ) -> Iterator[int]:
        """Yield sampled tokens after ``prompt``; the stop token that ended generation is yielded last."""
        ...
