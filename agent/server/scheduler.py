"""Fair admission to the model: a fixed number of slots, granted round-robin across clients.

Each client (its API key, else its address) has a FIFO of waiting requests; when a slot frees, the next
client in rotation gets it, so one client flooding the server cannot starve the others. A request that
is cancelled while waiting (its client disconnected) leaves the queue; one that holds a slot frees it
when its generation has really stopped.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque

from ossagent.agent.server.errors import overloaded


class FairScheduler:
    def __init__(self, slots: int = 1, max_waiting: int = 256) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self.max_waiting = max_waiting
        self.active = 0
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self.granted_order: list[str] = []  # which client got each slot, for tests and metrics

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    async def acquire(self, client: str) -> None:
        if self.active < self.slots and not self._waiting:
            self.active += 1
            self.granted_order.append(client)
            return
        if self.waiting >= self.max_waiting:
            raise overloaded(f"the server has {self.waiting} requests waiting; try again later")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(client, deque()).append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # granted and cancelled at once: hand the slot on
            else:
                self._forget(client, fut)
            raise

    def _forget(self, client: str, fut: asyncio.Future[None]) -> None:
        queue = self._waiting.get(client)
        if queue is not None and fut in queue:
            queue.remove(fut)
            if not queue:
                del self._waiting[client]

    def release(self) -> None:
        """Free a slot (call on the event loop's thread) and grant it to the next client in rotation."""
        self.active -= 1
        while self._waiting and self.active < self.slots:
            client, queue = next(iter(self._waiting.items()))
            fut = queue.popleft()
            del self._waiting[client]
            if queue:
                self._waiting[client] = queue  # back of the rotation
            if fut.cancelled():
                continue
            self.active += 1
            self.granted_order.append(client)
            fut.set_result(None)
