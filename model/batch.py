"""Continuous batching: many sequences decoded together, one forward pass per step, over a pool of caches.

``BatchEngine.generate`` returns a :class:`Stream` at once; iterating it (from any thread) yields that
sequence's tokens exactly as ``Engine.generate`` would (own sampling parameters, own seed, own step hook).
Whichever consumer needs a token and finds nobody stepping runs one step for *all* active sequences, so no
background thread exists: an idle engine costs nothing and a process never has to stop one. A step:

1. admits waiting streams (up to ``max_batch`` active, and as many as the KV budget holds at their full length), each taking the pool entry with its longest cached
   prefix (:class:`~ossagent.model.pool.CachePool`); one whose prefix another stream is computing right now
   waits for it, so many requests with one system prompt compute it once;
2. asks each decoding sequence's hook, samples its next token from the last logits (or takes forced tokens);
3. runs one :meth:`GptOss.forward_packed` over every sequence's new tokens: one sampled token each, forced
   chunks, and prompt chunks of at most ``prefill_tokens`` tokens in all per step, so new requests' prefill is
   interleaved with the others' decode steps. Every weight matrix, and each expert used, is read once per step.

A stream that runs ``max_ahead`` tokens ahead of its reader waits (a slow client does not hold tokens it has
not read); ``close()`` frees its sequence at the next step. A failing hook fails its own stream only; a failing
forward fails the streams in it and drops their caches.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Sequence

import torch

from ossagent.model.engine import Engine, SamplingParams, check_prompt, sample
from ossagent.model.hooks import StepHook
from ossagent.model.pool import CachePool, Entry, PoolStats, common_prefix


class _Seq:
    """The engine's side of one sequence (the caller holds a :class:`Stream`)."""

    def __init__(self, prompt: list[int], params: SamplingParams, hook: StepHook | None) -> None:
        self.prompt, self.params, self.hook = prompt, params, hook
        self.stops = set(params.stop_tokens)
        self.generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        self.generated: list[int] = []
        self.queue: deque[int] = deque()  # produced, not yet read
        self.entry: Entry | None = None
        self.to_feed: list[int] = []  # tokens the model has not seen yet
        self.prefilling = True  # to_feed is (the rest of) the prompt
        self.logits: torch.Tensor | None = None  # after the last fed token
        self.reused = 0  # prompt tokens found in the pool
        self.reserve = 0  # KV bytes set aside for it at admission: its prompt and max_tokens, cached
        self.finished = False  # no more tokens will be produced
        self.closed = False  # set by the reader (or when its Stream is dropped): free it at the next step
        self.error: BaseException | None = None


class Stream(Iterator[int]):
    """One sequence of a :class:`BatchEngine`: iterate for its tokens (a stop token comes last); ``close()``
    frees it. A stream dropped without ``close()`` is closed when it is garbage-collected."""

    def __init__(self, owner: BatchEngine, seq: _Seq) -> None:
        self._owner, self._seq = owner, seq

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> int:
        return self._owner._next(self._seq)

    def close(self) -> None:
        """Stop generating; the sequence's cache goes back to the pool at once (or when the step in progress
        ends)."""
        self._owner._close(self._seq)

    def __del__(self) -> None:
        self._seq.closed = True  # no lock here: the stepping thread retires it

    @property
    def generated(self) -> list[int]:
        """Every token produced so far (read or not)."""
        return list(self._seq.generated)

    @property
    def finished(self) -> bool:
        return self._seq.finished

    @property
    def reused(self) -> int:
        """Prompt tokens found in the pool."""
        return self._seq.reused

    @property
    def computed(self) -> int:
        """Prompt tokens fed through the model."""
        return len(self._seq.prompt) - self._seq.reused


class BatchEngine:
    """Serves many sequences at once from one :class:`Engine`'s model (its own single cache is not used).

    ``kv_memory``: bytes of KV cache for active sequences and the pool's idle ones: a request is admitted when
    the active ones, each counted at its full length (prompt plus ``max_tokens``), fit it (one always runs);
    idle caches are evicted least recently used first to keep the total within it. ``prefill_tokens``: prompt tokens fed per step across all new requests
    (default: the engine's ``chunk_size``)."""

    def __init__(
        self, engine: Engine, kv_memory: int, max_batch: int = 8, max_ahead: int = 64,
        prefill_tokens: int | None = None,
    ) -> None:
        if max_batch < 1 or max_ahead < 1:
            raise ValueError("max_batch and max_ahead must be at least 1")
        self.engine = engine
        self.model = engine.model
        self.max_batch, self.max_ahead = max_batch, max_ahead
        self.chunk_size = engine.chunk_size
        self.prefill_tokens = max(1, prefill_tokens or engine.chunk_size)
        self.pool = CachePool(engine.new_cache, kv_memory)
        self._cv = threading.Condition()
        self._waiting: deque[_Seq] = deque()
        self._active: list[_Seq] = []
        self._stepping = False
        self._emitted = False  # the step in progress produced or ended something
        self.steps = 0

    @property
    def cache_stats(self) -> PoolStats:
        return self.pool.stats

    @property
    def active(self) -> int:
        return len(self._active) + len(self._waiting)

    def generate(self, prompt: Sequence[int], params: SamplingParams, hook: StepHook | None = None) -> Stream:
        """Queue a sequence; thread-safe. Bad prompts and parameters raise ValueError here."""
        params.validate()
        seq = _Seq(check_prompt(prompt, self.model.config.vocab_size), params, hook)
        with self._cv:
            self._waiting.append(seq)
            self._cv.notify_all()
        return Stream(self, seq)

    def run(self, streams: Sequence[Stream]) -> list[list[int]]:
        """Step until every stream is finished; their tokens (one thread drives several streams)."""
        out: list[list[int]] = [[] for _ in streams]
        seqs = [s._seq for s in streams]
        while True:
            for i, s in enumerate(seqs):
                while s.queue:
                    out[i].append(s.queue.popleft())
                if s.error is not None:
                    raise s.error
            if all(s.finished and not s.queue for s in seqs):
                return out
            self.step()

    def step(self) -> bool:
        """One step for every active sequence (waits while another thread steps); False when nothing happened
        (no sequence, or every one waiting for its reader)."""
        with self._cv:
            while self._stepping:
                self._cv.wait()
            self._stepping = True
        try:
            return self._step()
        finally:
            with self._cv:
                self._stepping = False
                self._cv.notify_all()

    # ------------------------------------------------------------------------------------------- readers
    def _next(self, stream: _Seq) -> int:
        while True:
            with self._cv:
                while True:
                    if stream.closed:
                        raise StopIteration
                    if stream.queue:
                        self._cv.notify_all()  # room again under max_ahead
                        return stream.queue.popleft()
                    if stream.error is not None:
                        raise stream.error
                    if stream.finished:
                        raise StopIteration
                    if not self._stepping:
                        self._stepping = True
                        break
                    self._cv.wait()
            worked = False
            try:
                worked = self._step()
            finally:
                with self._cv:
                    self._stepping = False
                    self._cv.notify_all()
                    if not worked and not stream.queue and not stream.finished and not stream.closed:
                        self._cv.wait(timeout=1.0)  # every sequence waits for its reader: no busy loop

    def _close(self, stream: _Seq) -> None:
        with self._cv:
            stream.closed = True
            if stream in self._waiting:
                self._waiting.remove(stream)
                stream.finished = True
            elif stream in self._active and not self._stepping:  # else the step in progress frees it
                self._retire(stream)
            self._cv.notify_all()

    # ------------------------------------------------------------------------------------------- stepping
    def _step(self) -> bool:
        """Run by the one thread holding the stepping role."""
        with self._cv:
            self._admit()
            active = list(self._active)
        self._emitted = False
        work: list[tuple[_Seq, list[int]]] = []
        budget = self.prefill_tokens
        for s in active:
            if s.closed or s.finished or len(s.queue) >= self.max_ahead:
                continue
            try:
                chunk = self._next_input(s, budget)
            except Exception as exc:  # the hook, the mask or the context limit: this stream's fault only
                s.error, s.finished, self._emitted = exc, True, True
                continue
            if chunk:
                work.append((s, chunk))
                budget -= len(chunk) if s.prefilling else 0
        if work:
            self._forward(work)
        with self._cv:
            for s in [s for s in self._active if s.finished or s.closed]:
                self._retire(s)
                self._emitted = True
            self.pool.trim()
            self.steps += 1
            self._cv.notify_all()
        return bool(work) or self._emitted

    def _retire(self, s: _Seq) -> None:
        """Under the lock: ``s`` leaves the batch; its cache stays in the pool for a later prompt."""
        s.finished = True
        self._active.remove(s)
        self.pool.reserved = sum(a.reserve for a in self._active)
        if s.entry is not None and s.entry in self.pool.entries:
            self.pool.release(s.entry)

    def _admit(self) -> None:
        """First come first served, while the KV budget holds every active sequence at its full length (prompt
        plus ``max_tokens``; one sequence always runs, alone if it alone exceeds the budget). A stream whose
        prompt shares a prefix that an active stream is still computing waits until it is in the pool (requests
        arriving together with one system prompt compute it once)."""
        waiting, self._waiting = self._waiting, deque()
        full = False  # a stream waits for memory: the ones behind it wait too
        for s in waiting:
            if s.closed:  # its reader left before it started
                s.finished = True
                continue
            if full or len(self._active) >= self.max_batch or self._prefix_in_progress(s):
                self._waiting.append(s)
                continue
            need = self.engine.kv_bytes(len(s.prompt) + s.params.max_tokens)
            if self._active and self.pool.reserved + need > self.pool.budget:
                full = True
                self._waiting.append(s)
                continue
            s.reserve = need
            self.pool.reserved += need  # idle caches are evicted to make room for it
            s.entry = self.pool.acquire(s.prompt)
            s.reused = len(s.entry.tokens)
            s.to_feed = s.prompt[s.reused :]
            self._active.append(s)

    def _prefix_in_progress(self, s: _Seq) -> bool:
        return any(
            a.prefilling and a.entry is not None and common_prefix(a.prompt, s.prompt) > len(a.entry.tokens)
            for a in self._active
        )

    def _next_input(self, s: _Seq, budget: int) -> list[int]:
        """Tokens to feed for ``s`` this step; samples (and publishes) its next token when it is decoding."""
        assert s.entry is not None
        if not s.to_feed:
            self._decide(s)
            if s.finished:
                return []
        if s.prefilling:
            if budget <= 0:
                return []
            chunk = s.to_feed[: min(self.chunk_size, budget)]
        else:
            chunk = s.to_feed[: self.chunk_size]
        limit = s.entry.cache.max_len
        if len(s.entry.tokens) + len(chunk) > limit:
            raise ValueError(f"context of {len(s.entry.tokens) + len(chunk)} tokens exceeds the cache's max_len {limit}")
        return chunk

    def _decide(self, s: _Seq) -> None:
        """The next token(s) of a decoding stream from its logits, as ``Engine.generate`` decides them."""
        assert s.logits is not None
        params, mask = s.params, None
        if s.hook is not None:
            action = s.hook.step(s.generated)
            if action.stop:
                s.finished = True
                return
            if action.forced:
                forced = [int(t) for t in action.forced][: params.max_tokens - len(s.generated)]
                for j, t in enumerate(forced):
                    if t in s.stops:
                        forced = forced[: j + 1]
                        break
                self._emit(s, forced)
                if not s.finished:
                    s.to_feed, s.prefilling = forced, False  # fed in one chunk; then the hook is asked again
                return
            mask = action.mask
        token = sample(s.logits, params, s.generator, mask)
        self._emit(s, [token])
        if not s.finished:
            s.to_feed, s.prefilling = [token], False

    def _emit(self, s: _Seq, tokens: list[int]) -> None:
        self._emitted = True
        s.generated.extend(tokens)
        with self._cv:
            s.queue.extend(tokens)
            self._cv.notify_all()
        if tokens[-1] in s.stops or len(s.generated) >= s.params.max_tokens:
            s.finished = True

    def _forward(self, work: list[tuple[_Seq, list[int]]]) -> None:
        caches = [s.entry.cache for s, _ in work if s.entry is not None]
        try:
            logits = self.model.forward_packed([c for _, c in work], caches)
        except Exception as exc:  # caches may be half-written: drop them, fail these streams
            with self._cv:
                for s, _ in work:
                    s.error, s.finished = exc, True
                    if s.entry is not None:
                        self.pool.discard(s.entry)
            return
        for (s, chunk), row in zip(work, logits, strict=True):
            assert s.entry is not None
            s.entry.tokens.extend(chunk)
            del s.to_feed[: len(chunk)]
            s.logits = row.float() if not s.to_feed else None
