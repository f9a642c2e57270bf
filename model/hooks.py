"""The engine's per-step hook: how callers steer decoding without the model knowing why.

The constrained-decoding layer (``ossagent.agent.constrain``) implements :class:`StepHook`; the engine
calls it before every sampled token. ``model`` defines the contract and knows nothing of grammars.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


@dataclass
class StepAction:
    """What the hook wants at this step.

    forced: tokens to append without sampling (fast-forward). The engine feeds them through the model
        with the next forward pass (one chunk), and calls the hook again afterwards.
    mask: a bool tensor of shape [vocab] (True = allowed) applied to the logits before sampling;
        None leaves the step free.
    stop: the hook declares the generation finished (for example the grammar accepted a stop token).
    """

    forced: list[int] = field(default_factory=list)
    mask: torch.Tensor | None = None
    stop: bool = False


class StepHook(Protocol):
    def step(self, generated: Sequence[int]) -> StepAction:
        """Called before each token; ``generated`` holds every token produced so far in this call."""
        ...
