"""Several LoRA adapters served from one model: a :class:`~ossagent.model.batch.BatchEngine` per adapter name.

The base weights are loaded once; each adapter stays unmerged (:class:`~ossagent.model.lora.LoraAdapters`: its
hooks add ``scale * B (A x)`` to the projections it covers) and is chosen per request by name. Each name (None:
the base model) has its own batch engine: sequences of one name decode together in one forward pass, and their
prefix caches never mix with another name's (the keys and values of a prompt depend on the adapter). The engines
take turns on the model: a forward pass holds :attr:`AdapterEngines.lock` with its adapter active, so the
adapters' shared state (which one is active) and the native kernels' shared buffers are used by one pass at a
time. Requests of different names therefore are not batched together (per-row LoRA inside one pass would need
the batch engine and the cache pool to key sequences by adapter).

Memory: the base weights once, each adapter's ``A`` and ``B`` (rank x (in + out) per projection, in the model's
dtype), and the KV budget split evenly between the names, so the caches of all of them together stay within it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, cast

import torch

from ossagent.model.batch import BatchEngine
from ossagent.model.cache import KVCache
from ossagent.model.engine import Engine
from ossagent.model.gpt_oss import GptOss
from ossagent.model.lora import AdapterError, LoraAdapters


class _AdapterModel:
    """The model as one batch engine sees it: each packed forward runs under the shared lock with this engine's
    adapter active; everything else is the model's own."""

    def __init__(self, model: GptOss, adapters: LoraAdapters, name: str | None, lock: threading.Lock) -> None:
        self._model, self._adapters, self._name, self._lock = model, adapters, name, lock

    def forward_packed(self, chunks: Sequence[Sequence[int]], caches: Sequence[KVCache]) -> torch.Tensor:
        with self._lock, self._adapters.using(self._name):
            return self._model.forward_packed(chunks, caches)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._model, attr)


class AdapterEngines:
    """One batch engine per name in ``adapters`` plus one for the base model (``None``), over ``engine``'s model.

    ``kv_memory`` (bytes) is split evenly between them; ``max_batch``: sequences each engine decodes at once."""

    def __init__(self, engine: Engine, adapters: LoraAdapters, kv_memory: int, max_batch: int) -> None:
        if adapters.model is not engine.model:
            raise ValueError("the adapters must be attached to the engine's own model")
        self.adapters = adapters
        self.lock = threading.Lock()
        names: list[str | None] = [None, *adapters.names()]
        share = max(1, kv_memory // len(names))
        self.engines: dict[str | None, BatchEngine] = {}
        for name in names:
            batch = BatchEngine(engine, kv_memory=share, max_batch=max_batch)
            batch.model = cast(GptOss, _AdapterModel(engine.model, adapters, name, self.lock))
            self.engines[name] = batch

    @property
    def names(self) -> list[str]:
        """The adapters' names (the base model not included)."""
        return [n for n in self.engines if n is not None]

    def __getitem__(self, name: str | None) -> BatchEngine:
        if name not in self.engines:
            raise AdapterError(f"no adapter named {name!r} (served: {', '.join(self.names) or 'none'})")
        return self.engines[name]

    @property
    def active(self) -> int:
        """Sequences in all the engines now."""
        return sum(b.active for b in self.engines.values())
