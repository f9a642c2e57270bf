"""Run one agent stream on a worker thread and hand its events to the event loop.

The model and the tools block, so each admitted request gets a thread; events cross to asyncio through a
queue. When the client goes away the async side sets ``cancelled``; the thread stops at the next event,
closes the run (which closes the backend's generator, so the engine stops computing) and only then frees
the scheduler slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable

from ossagent.agent.events import ErrorEvent, Event, Stopped
from ossagent.agent.loop import RunStream
from ossagent.agent.server.scheduler import FairScheduler

_END = object()


class ClientGone(Exception):
    """The client disconnected before its request got a slot."""


class Job:
    def __init__(
        self, make_stream: Callable[[], RunStream], scheduler: FairScheduler, client: str,
        cleanup: Callable[[], None] | None = None,
    ) -> None:
        self.make_stream = make_stream
        self.cleanup = cleanup
        self.scheduler = scheduler
        self.client = client
        self.cancelled = threading.Event()
        self.stream: RunStream | None = None
        self.finished = threading.Event()

    async def admit(self, is_disconnected: Callable[[], Awaitable[bool]] | None = None) -> None:
        """Wait for a slot; give up (and leave the queue) if the client disconnects meanwhile."""
        task = asyncio.ensure_future(self.scheduler.acquire(self.client))
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                task.result()
                return
            if is_disconnected is not None and await is_disconnected():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise ClientGone()

    async def events(self) -> AsyncIterator[Event]:
        """Yield the run's events (call :meth:`admit` first); closing this iterator cancels the run."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        thread = threading.Thread(target=self._work, args=(loop, queue), name="ossagent-run", daemon=True)
        try:
            thread.start()
        except BaseException:
            self.scheduler.release()
            raise
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                assert isinstance(item, Event)
                yield item
        finally:
            self.cancelled.set()

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
