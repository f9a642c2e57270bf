"""KV cache: full-attention layers keep every position, sliding layers a ring.

Keys and values are stored head-major, ``[nkv, positions, d]``: each KV head's keys are one contiguous matrix,
so decode attention multiplies them in place (a position-major store made every step copy all of them, 50 ms a
layer at 8k on 2 cores instead of 2). ``update`` returns ``[S, nkv, d]`` views of them.

Full layers: ``k, v [nkv, capacity, d]`` grown on demand (doubling, up to ``max_len``).

Sliding layers: a ring of ``window + max(max_chunk, rollback)`` slots; position p lives in slot ``p % slots``
and each slot remembers its position (-1 = empty). New keys are written before attending, which is safe because
a chunk of at most ``max_chunk`` tokens never overwrites a key that one of its own queries still needs. Attention
gets only the slots of positions ``[start - window + 1, start + T)``, so the ring's size costs memory
(12 layers x 2 KiB per slot at 20b: ~53 MB for rollback 2048), not attention time.

Cutting back (``truncate(n)``) is exact for full layers at any n. A ring still holds the ``window`` keys before n
when at most ``rollback`` (or ``max_chunk``) positions are removed: that covers a chat client dropping the last
turn's reasoning. For deeper cuts the cache falls back to the latest ring snapshot at or before n (taken every
``snapshot_every`` positions, ``window`` keys each) and reports the shorter length it kept, so the caller
re-feeds the tokens after it. ``truncate`` returns the length actually kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from ossagent.model.config import GptOssConfig


@dataclass
class CacheStats:
    """Prompt tokens found in a cache (reused) and fed through the model (computed)."""

    HISTORY = 1024  # requests remembered in ``history``: a long-running server must not grow it forever

    reused_tokens: int = 0  # last request
    computed_tokens: int = 0  # last request
    total_reused: int = 0
    total_computed: int = 0
    history: list[tuple[int, int]] = field(default_factory=list)  # (reused, computed) of the latest requests

    def count(self, reused: int, computed: int) -> None:
        self.reused_tokens, self.computed_tokens = reused, computed
        self.total_reused += reused
        self.total_computed += computed
        self.history.append((reused, computed))
        del self.history[: -self.HISTORY]


class KeyView(NamedTuple):
    """Where one decode query's keys live, read in place (:func:`ossagent.model.kernels.attention.decode_attention`):
    positions ``first .. first + length - 1`` in slots ``position % k.shape[1]`` of ``k``/``v`` [nkv, slots, d];
    ``pos`` [slots] gives a ring's slot positions (-1 = empty), an empty tensor for a full layer (slot = position)."""

    k: torch.Tensor
    v: torch.Tensor
    pos: torch.Tensor
    first: int
    length: int


_NO_POS = torch.empty(0, dtype=torch.long)


class FullLayer:
    def __init__(self, nkv: int, d: int, max_len: int, device: torch.device | str | None, dtype: torch.dtype):
        self.max_len = max_len
        self.length = 0
        self.k = torch.zeros(nkv, 0, d, device=device, dtype=dtype)  # head-major (see the module docstring)
        self.v = torch.zeros(nkv, 0, d, device=device, dtype=dtype)

    def _reserve(self, n: int) -> None:
        if n > self.max_len:
            raise ValueError(f"context of {n} tokens exceeds the cache's max_len {self.max_len}")
        cap = self.k.shape[1]
        if n <= cap:
            return
        new_cap = min(self.max_len, max(n, 2 * cap, 256))
        for name in ("k", "v"):
            old = getattr(self, name)
            new = old.new_zeros(old.shape[0], new_cap, old.shape[2])
            new[:, : self.length] = old[:, : self.length]
            setattr(self, name, new)

    def update(
        self, k: torch.Tensor, v: torch.Tensor, start: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if start != self.length:
            raise ValueError(f"cache holds {self.length} positions, got new keys at {start}")
        end = start + k.shape[0]
        self._reserve(end)
        self.k[:, start:end] = k.transpose(0, 1)
        self.v[:, start:end] = v.transpose(0, 1)
        self.length = end
        pos = torch.arange(end, device=k.device)
        return self.k[:, :end].transpose(0, 1), self.v[:, :end].transpose(0, 1), pos

    def update_one(self, k: torch.Tensor, v: torch.Tensor, start: int) -> KeyView:
        """Store one token's k/v [nkv, d] at ``start`` (slice writes); its keys: positions [0, start]."""
        if start != self.length:
            raise ValueError(f"cache holds {self.length} positions, got new keys at {start}")
        self._reserve(start + 1)
        self.k[:, start] = k
        self.v[:, start] = v
        self.length = start + 1
        return KeyView(self.k, self.v, _NO_POS, 0, start + 1)

    def truncate(self, n: int) -> None:
        self.length = min(self.length, n)

    def copy_prefix(self, n: int) -> FullLayer:
        """A new layer holding this one's first n positions (its own memory, sized to them)."""
        n = min(n, self.length)
        new = FullLayer.__new__(FullLayer)
        new.max_len, new.length = self.max_len, n
        new.k, new.v = self.k[:, :n].clone(), self.v[:, :n].clone()
        return new

    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2


class RingLayer:
    def __init__(
        self, nkv: int, d: int, window: int, max_chunk: int, rollback: int, snapshot_every: int,
        device: torch.device | str | None, dtype: torch.dtype,
    ) -> None:
        self.window, self.max_chunk, self.snapshot_every = window, max_chunk, snapshot_every
        self.slots = window + max(max_chunk, rollback)
        self.length = 0
        self.k = torch.zeros(nkv, self.slots, d, device=device, dtype=dtype)  # head-major
        self.v = torch.zeros(nkv, self.slots, d, device=device, dtype=dtype)
        self.pos = torch.full((self.slots,), -1, dtype=torch.long, device=device)
        # position m -> the keys of positions [m - window, m), as (k, v, pos)
        self.snapshots: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def update(
        self, k: torch.Tensor, v: torch.Tensor, start: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = k.shape[0]
        if start != self.length:
            raise ValueError(f"cache holds {self.length} positions, got new keys at {start}")
        if t > self.max_chunk:
            raise ValueError(f"chunk of {t} tokens exceeds the cache's max_chunk {self.max_chunk}; feed it in parts")
        new_pos = torch.arange(start, start + t, device=k.device)
        slot = new_pos % self.slots
        self.k[:, slot] = k.transpose(0, 1)
        self.v[:, slot] = v.transpose(0, 1)
        self.pos[slot] = new_pos
        self.length = start + t
        self._snapshot(start)
        # the slots this chunk's queries can see: positions [start - window + 1, start + t)
        idx = torch.arange(max(0, start - self.window + 1), start + t, device=k.device) % self.slots
        return self.k[:, idx].transpose(0, 1), self.v[:, idx].transpose(0, 1), self.pos[idx]

    def update_one(self, k: torch.Tensor, v: torch.Tensor, start: int) -> KeyView:
        """Store one token's k/v [nkv, d] at ``start`` (slice writes, no index tensors); its keys: the slots of
        positions [start - window + 1, start], as :meth:`update` gives them."""
        if start != self.length:
            raise ValueError(f"cache holds {self.length} positions, got new keys at {start}")
        slot = start % self.slots
        self.k[:, slot] = k
        self.v[:, slot] = v
        self.pos[slot] = start
        self.length = start + 1
        self._snapshot(start)
        first = max(0, start - self.window + 1)
        return KeyView(self.k, self.v, self.pos, first, start + 1 - first)

    def _snapshot(self, start: int) -> None:
        """Snapshots at the multiples of ``snapshot_every`` in (start, length]."""
        first = (start // self.snapshot_every + 1) * self.snapshot_every
        for m in range(first, self.length + 1, self.snapshot_every):
            keep = (self.pos >= m - self.window) & (self.pos < m) & (self.pos >= 0)
            self.snapshots[m] = (self.k[:, keep], self.v[:, keep], self.pos[keep].clone())  # indexing copies

    def can_truncate_exactly(self, n: int) -> bool:
        need = max(0, n - self.window)
        return n >= self.length or int(((self.pos >= need) & (self.pos < n)).sum()) == n - need

    def truncate(self, n: int) -> None:
        """Cut to n; the caller has checked ``can_truncate_exactly(n)`` or picked a snapshot position."""
        if n >= self.length:
            return
        if self.can_truncate_exactly(n):
            self.pos[self.pos >= n] = -1
        elif n == 0:
            self.pos.fill_(-1)
        else:
            k, v, pos = self.snapshots[n]
            self.pos.fill_(-1)
            slot = pos % self.slots
            self.k[:, slot], self.v[:, slot], self.pos[slot] = k, v, pos
        self.length = n
        for m in [m for m in self.snapshots if m > n]:
            del self.snapshots[m]

    def copy_prefix(self, n: int) -> RingLayer:
        """A new ring cut to n (the caller has checked as for :meth:`truncate`); snapshots up to n come along."""
        new = RingLayer.__new__(RingLayer)
        new.window, new.max_chunk, new.snapshot_every = self.window, self.max_chunk, self.snapshot_every
        new.slots, new.length = self.slots, self.length
        new.k, new.v, new.pos = self.k.clone(), self.v.clone(), self.pos.clone()
        new.snapshots = {m: snap for m, snap in self.snapshots.items() if m <= n}  # never written in place
        new.truncate(n)
        return new

    def nbytes(self) -> int:
        snaps = sum(k.numel() * k.element_size() * 2 for k, _, _ in self.snapshots.values())
        return self.k.numel() * self.k.element_size() * 2 + snaps


def planned_nbytes(
    config: GptOssConfig, tokens: int, *, max_chunk: int = 512, rollback: int = 2048, snapshot_every: int = 1024,
    itemsize: int = 2,
) -> int:
    """Bytes a :class:`KVCache` holding ``tokens`` positions takes, without building one: each full layer its
    keys and values per position, each ring its fixed slots plus the ``tokens // snapshot_every`` snapshots of
    ``window`` positions it keeps (a full layer's doubling headroom, at most 2x, is not counted)."""
    per_position = 2 * config.num_key_value_heads * config.head_dim * itemsize  # one layer's k and v
    window = config.sliding_window
    ring = (window + max(max_chunk, rollback)) * per_position + tokens // snapshot_every * window * per_position
    return sum(
        ring if config.is_sliding(i) else tokens * per_position for i in range(config.num_hidden_layers)
    )


class KVCache:
    """Per-layer caches of one sequence. ``length`` = positions stored (all layers agree)."""

    def __init__(
        self,
        config: GptOssConfig,
        max_len: int | None = None,
        max_chunk: int = 512,
        rollback: int = 2048,
        snapshot_every: int = 1024,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        if max_chunk < 1 or snapshot_every < 1 or rollback < 0:
            raise ValueError("max_chunk and snapshot_every must be positive, rollback >= 0")
        self.max_len = max_len or config.max_context
        self.max_chunk = max_chunk
        nkv, d = config.num_key_value_heads, config.head_dim
        self.layers: list[FullLayer | RingLayer] = [
            RingLayer(nkv, d, config.sliding_window, max_chunk, rollback, snapshot_every, device, dtype)
            if config.is_sliding(i)
            else FullLayer(nkv, d, self.max_len, device, dtype)
            for i in range(config.num_hidden_layers)
        ]
        self.length = 0

    def advance(self, t: int) -> None:
        """Called by the model after all layers stored t new positions."""
        self.length += t
        bad = [i for i, layer in enumerate(self.layers) if layer.length != self.length]
        if bad:
            raise RuntimeError(f"cache layers {bad} out of step with length {self.length}")

    def _reachable(self, n: int) -> int:
        """The longest length <= n this cache can be cut back to exactly."""
        n = max(0, min(n, self.length))
        rings = [layer for layer in self.layers if isinstance(layer, RingLayer)]
        if all(r.can_truncate_exactly(n) for r in rings):
            return n
        snaps = set.intersection(*(set(r.snapshots) for r in rings)) if rings else set()
        return max((m for m in snaps if m <= n), default=0)

    def truncate(self, n: int) -> int:
        """Keep the first n positions if possible; returns the length actually kept (<= n)."""
        keep = self._reachable(n)
        for layer in self.layers:
            layer.truncate(keep)
        self.length = keep
        return keep

    def fork(self, n: int) -> KVCache:
        """A new cache holding this one's first n positions, or fewer (see :meth:`truncate`); this one is
        unchanged. Costs a copy of the kept keys and values, no model compute."""
        keep = self._reachable(n)
        new = KVCache.__new__(KVCache)
        new.max_len, new.max_chunk, new.length = self.max_len, self.max_chunk, keep
        new.layers = [layer.copy_prefix(keep) for layer in self.layers]
        return new

    def reset(self) -> None:
        self.truncate(0)

    def nbytes(self) -> int:
        return sum(layer.nbytes() for layer in self.layers)
