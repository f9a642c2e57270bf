"""Run one agent stream on a worker thread and hand its events to the event loop.

The model and the tools block, so each admitted request gets a thread; events cross to asyncio through a
queue. When the client goes away the async side calls :meth:`Job.cancel`; the thread stops at the next
event, closes the run (which closes the backend's generator, so the engine stops computing) and only then
frees the scheduler slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Protocol

from ossagent.agent.events import ErrorEvent, Event, Stopped
from ossagent.agent.server.guard import is_panic, panic_summary
from ossagent.agent.server.scheduler import FairScheduler

_END = object()


class EventSource(Protocol):
    """What a job runs: an agent run (:class:`~ossagent.agent.loop.RunStream`) or a raw completion."""

    def __iter__(self) -> Iterator[Event]: ...

    def close(self) -> None: ...


class Job:
    def __init__(
        self, make_stream: Callable[[], EventSource], scheduler: FairScheduler, client: str,
        cleanup: Callable[[], None] | None = None,
    ) -> None:
        self.make_stream = make_stream
        self.cleanup = cleanup
        self.scheduler = scheduler
        self.client = client
        self.cancelled = threading.Event()
        self.finished = threading.Event()
        self.started = False
        self.stream: EventSource | None = None
        self._queue: asyncio.Queue[object] | None = None

    async def admit(self) -> None:
        """Wait for a slot, then start the run's thread. Cancelling the wait leaves the queue."""
        try:
            await self.scheduler.acquire(self.client)
        except BaseException:
            self.discard()
            raise
        loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        thread = threading.Thread(target=self._work, args=(loop, self._queue), name="ossagent-run", daemon=True)
        self.started = True
        try:
            thread.start()
        except BaseException:
            self.scheduler.release()
            raise

    def discard(self) -> None:
        """The request ends without running (refused, or its client left while queued)."""
        if not self.started and self.cleanup is not None:
            with contextlib.suppress(Exception):
                self.cleanup()

    def cancel(self) -> None:
        """Stop the run at its next event (the client is gone or stopped reading)."""
        self.cancelled.set()

    async def events(self) -> AsyncIterator[Event]:
        """The run's events (after :meth:`admit`); closing this iterator cancels the run."""
        assert self._queue is not None, "admit() first"
        try:
            while True:
                item = await self._queue.get()
                if item is _END:
                    return
                assert isinstance(item, Event)
                yield item
        finally:
            self.cancel()

    def _work(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[object]) -> None:
        put = queue.put_nowait
        try:
            self.stream = self.make_stream()
            for ev in self.stream:
                if self.cancelled.is_set():
                    break
                loop.call_soon_threadsafe(put, ev)
        except Exception as exc:  # a bug or a backend failure outside the loop's own handling
            loop.call_soon_threadsafe(put, ErrorEvent("server", f"{type(exc).__name__}: {exc}"))
            loop.call_soon_threadsafe(put, Stopped("error"))
        except BaseException as exc:  # a grammar compiler panic mid-run: reported, without its backtrace
            if not is_panic(exc):
                raise
            loop.call_soon_threadsafe(put, ErrorEvent("server", f"the constrained decoder failed: {panic_summary(exc)}"))
            loop.call_soon_threadsafe(put, Stopped("error"))
        finally:
            if self.stream is not None:
                self.stream.close()
            if self.cleanup is not None:
                with contextlib.suppress(Exception):
                    self.cleanup()
            self.finished.set()
            try:
                loop.call_soon_threadsafe(put, _END)
                loop.call_soon_threadsafe(self.scheduler.release)
            except RuntimeError:  # the event loop is gone (server shutting down)
                pass
