"""Thread count from the machine's load."""

from __future__ import annotations

import pytest
import torch

from ossagent.model.kernels import threads


def test_pick_threads() -> None:
    assert threads.pick_threads(2, load=0.3, ours=0) == 2
    assert threads.pick_threads(2, load=2.9, ours=2) == 2  # the load is mostly our own two threads
    assert threads.pick_threads(2, load=3.5, ours=2) == 1
    assert threads.pick_threads(2, load=10.0, ours=0) == 1
    assert threads.pick_threads(8, load=6.0, ours=0) == 8  # 7 cores still free
    assert threads.pick_threads(1, load=5.0, ours=1) == 1


def test_hook_follows_the_load(monkeypatch: pytest.MonkeyPatch) -> None:
    saved = torch.get_num_threads()
    load = [10.0]
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (load[0], 0.0, 0.0))
    model = torch.nn.Linear(4, 4)
    hook = threads.follow_load(model, interval=0.0, max_threads=2)
    try:
        model(torch.zeros(1, 4))
        assert torch.get_num_threads() == 1
        load[0] = 1.0  # our one thread and nothing else
        model(torch.zeros(1, 4))
        assert torch.get_num_threads() == 2
        hook.interval = 3600.0
        load[0] = 10.0
        model(torch.zeros(1, 4))  # read now, next in an hour
        assert torch.get_num_threads() == 1
        load[0] = 0.0
        model(torch.zeros(1, 4))  # not re-read within the interval
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(saved)
