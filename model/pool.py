"""A pool of cached sequences under one memory budget, found by their longest common prefix with a prompt.

Each entry is one KV cache and the tokens it holds. A new prompt takes the entry sharing the longest prefix
with it: an idle entry whose tokens all lead the prompt (the same conversation, one turn later) is taken over
and extended; any other match is *forked* (its prefix copied into a new entry, the original kept for its own
conversation), so a system prompt and tools shared by many conversations are computed once. Entries in use
are never evicted; idle ones go least recently used first when the pool is over its budget.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ossagent.model.cache import CacheStats, KVCache


@dataclass
class PoolStats(CacheStats):
    """Prefix reuse across the pool (reused: found in any entry), plus the pool's own counters."""

    requests: int = 0
    hits: int = 0  # requests that reused at least one token
    forks: int = 0  # requests that copied another entry's prefix
    evictions: int = 0
    entries: int = 0  # now
    nbytes: int = 0  # now, all entries

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    @property
    def token_hit_rate(self) -> float:
        total = self.total_reused + self.total_computed
        return self.total_reused / total if total else 0.0


@dataclass
class Entry:
    cache: KVCache
    tokens: list[int] = field(default_factory=list)  # exactly what the cache holds
    busy: bool = False
    last_used: int = 0


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class CachePool:
    """Entries of ``make_cache()`` caches, at most ``budget`` bytes of them idle-or-busy (busy ones may exceed it).

    Not thread-safe: the batch engine calls it under its own lock."""

    def __init__(self, make_cache: Callable[[], KVCache], budget: int) -> None:
        if budget < 0:
            raise ValueError(f"the KV memory budget must be >= 0 bytes, got {budget}")
        self.make_cache = make_cache
        self.budget = budget
        self.reserved = 0  # bytes the batch engine set aside for its active sequences (their caches will grow)
        self.entries: list[Entry] = []
        self.stats = PoolStats()
        self._clock = itertools.count(1)

    def acquire(self, prompt: Sequence[int]) -> Entry:
        """A busy entry holding the longest prefix of ``prompt`` the pool can give (never all of it: the last
        prompt token is fed again for its logits). The caller feeds ``prompt[len(entry.tokens):]``."""
        want = len(prompt) - 1
        best, lcp = None, 0
        for e in self.entries:
            n = min(common_prefix(e.tokens, prompt), want)
            # longest match first; among equals an idle one that can be taken over, then the most recent
            if best is None or (n, self._takeable(e, n), e.last_used) > (lcp, self._takeable(best, lcp), best.last_used):
                best, lcp = e, n
        if best is not None and self._takeable(best, lcp):
            del best.tokens[best.cache.truncate(lcp):]
            entry = best
        elif best is not None and lcp > 0:
            entry = Entry(best.cache.fork(lcp))
            entry.tokens = best.tokens[: entry.cache.length]
            self.entries.append(entry)
            self.stats.forks += 1
        else:
            entry = Entry(self.make_cache())
            self.entries.append(entry)
        entry.busy, entry.last_used = True, next(self._clock)
        self._count(len(entry.tokens), len(prompt) - len(entry.tokens))
        self.trim()
        return entry

    @staticmethod
    def _takeable(e: Entry, lcp: int) -> bool:
        """Idle, and nothing of it is lost but what the prompt changes at its very end (its own continuation)."""
        return not e.busy and lcp >= len(e.tokens) - 1

    def _count(self, reused: int, computed: int) -> None:
        s = self.stats
        s.count(reused, computed)
        s.requests += 1
        s.hits += reused > 0

    def release(self, entry: Entry) -> None:
        """The sequence is done with ``entry``; it stays cached for a later prompt until evicted."""
        entry.busy, entry.last_used = False, next(self._clock)
        self.trim()

    def discard(self, entry: Entry) -> None:
        """Drop an entry whose cache can no longer be trusted (a forward failed half-way)."""
        if entry in self.entries:
            self.entries.remove(entry)
        self.trim()

    def nbytes(self) -> int:
        return sum(e.cache.nbytes() for e in self.entries)

    def trim(self) -> None:
        """Evict idle entries, least recently used first, until they fit beside the busy ones (counted at the
        larger of their size now and what was reserved for them) within the budget, or none is idle."""
        busy = sum(e.cache.nbytes() for e in self.entries if e.busy)
        idle = sorted((e for e in self.entries if not e.busy), key=lambda e: e.last_used)
        room = self.budget - max(busy, self.reserved)
        kept = sum(e.cache.nbytes() for e in idle)
        while kept > room and idle:
            victim = idle.pop(0)
            kept -= victim.cache.nbytes()
            self.entries.remove(victim)
            self.stats.evictions += 1
        self.stats.entries, self.stats.nbytes = len(self.entries), busy + kept
