"""Compute threads from the machine's load.

Every parallel region (a native kernel, a oneDNN matmul) ends when its slowest thread is done. When other
processes keep the cores busy, a second thread is often not scheduled for a whole time slice, and a decode
step with hundreds of regions waits that long many times: on a 2-core machine at load 10, a tiny model decoded
at 3-5 tok/s with 2 threads and at 70-90 tok/s with 1. So the thread count follows the load: all cores while
they are free, one thread while other work already occupies them.
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn


def cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def pick_threads(n_cores: int, load: float, ours: int) -> int:
    """Threads for the next steps: ``n_cores`` when the other work (``load`` minus our own ``ours`` running
    threads) leaves at least all but one core free, else 1."""
    others = max(0.0, load - ours)
    return n_cores if others <= n_cores - 1 else 1


class LoadAwareThreads:
    """A forward pre-hook that re-picks ``torch``'s thread count from the 1-minute load at most every
    ``interval`` seconds (reading the load costs microseconds; a model call costs milliseconds or more)."""

    def __init__(self, interval: float = 2.0, max_threads: int | None = None) -> None:
        self.interval = interval
        self.max_threads = max_threads or cores()
        self._next = 0.0
        self._busy = False  # our own threads count in the load only while we run

    def __call__(self, module: nn.Module, args: object) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval
        ours = torch.get_num_threads() if self._busy else 0
        self._busy = True
        threads = pick_threads(self.max_threads, os.getloadavg()[0], ours)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)


def follow_load(model: nn.Module, interval: float = 2.0, max_threads: int | None = None) -> LoadAwareThreads:
    """Make ``model``'s calls pick the thread count from the load (see :class:`LoadAwareThreads`)."""
    hook = LoadAwareThreads(interval, max_threads)
    model.register_forward_pre_hook(hook)
    return hook
