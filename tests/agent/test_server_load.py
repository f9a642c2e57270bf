"""The server under load on loopback: 50 concurrent streaming clients, disconnects, fair admission."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ossagent.agent.backends.base import GenerationParams, Prompt
from ossagent.agent.backends.scripted import ScriptedBackend
from ossagent.agent.server import ServerConfig, create_app
from ossagent.agent.server.scheduler import FairScheduler
from ossagent.agent.server.serve import RunningServer, start_in_thread
from ossagent.model.tokenizer import o200k_harmony

REPLY = ("<|channel|>analysis<|message|>Counting.<|end|><|start|>assistant<|channel|>final<|message|>"
         "one two three four five<|return|>")


class SlowBackend:
    """Thinks forever, one token per 20 ms; records when its generator is closed."""

    vocab_size, takes_hooks = None, False

    def __init__(self) -> None:
        self.encoding = o200k_harmony()
        self.closed = threading.Event()
        self.started = threading.Event()

    def generate(self, prompt: Prompt, params: GenerationParams, hook: Any = None) -> Iterator[int]:
        head = self.encoding.encode("<|channel|>analysis<|message|>", allowed_special="all")
        word = self.encoding.encode_ordinary(" hmm")
        try:
            yield from head
            self.started.set()
            for _ in range(5000):
                time.sleep(0.02)
                yield from word
        finally:
            self.closed.set()


@dataclass
class SlowServer:
    """``serve`` with one slot over a :class:`SlowBackend`."""

    slow: SlowBackend
    app: FastAPI
    running: RunningServer


@pytest.fixture()
def slow_server() -> Iterator[SlowServer]:
    slow = SlowBackend()
    app = create_app(ServerConfig(backend=slow, model_id="m", slots=1))
    running = start_in_thread(app)
    yield SlowServer(slow, app, running)
    running.stop()


def wait_until(done: Callable[[], bool], seconds: float = 5) -> None:
    """Poll ``done`` until it holds or ``seconds`` pass (the test's own assertion then says what did not)."""
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_fifty_concurrent_streaming_clients() -> None:
    backend = ScriptedBackend([REPLY] * 50)
    app = create_app(ServerConfig(backend=backend, model_id="m", slots=4))
    server = start_in_thread(app)
    threads_before = threading.active_count()

    async def one(client: httpx.AsyncClient, i: int) -> str:
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": f"count {i}"}]}
        text, done = [], False
        async with client.stream("POST", server.url + "/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    import json

                    for c in json.loads(line[6:])["choices"]:
                        text.append(c["delta"].get("content") or "")
        assert done
        return "".join(text)

    async def all_clients() -> list[str]:
        limits = httpx.Limits(max_connections=60)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            return await asyncio.gather(*(one(client, i) for i in range(50)))

    try:
        started = time.monotonic()
        answers = asyncio.run(all_clients())
        elapsed = time.monotonic() - started
        assert answers == ["one two three four five"] * 50
        backend.assert_consumed()
        sched = app.state.server.scheduler
        wait_until(lambda: not (sched.active or threading.active_count() > threads_before))
        assert sched.active == 0 and sched.waiting == 0
        assert threading.active_count() <= threads_before  # every run's worker thread ended
        assert len(sched.granted_order) == 50
        assert elapsed < 60
    finally:
        server.stop()


def test_disconnect_frees_the_slot(slow_server: SlowServer) -> None:
    slow, app, server = slow_server.slow, slow_server.app, slow_server.running
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "think"}]}
    with httpx.Client(timeout=30) as client, client.stream("POST", server.url + "/chat/completions",
                                                            json=body) as resp:
        lines = resp.iter_lines()
        got = [next(lines) for _ in range(6)]
        assert any("reasoning_content" in ln for ln in got)
    assert slow.closed.wait(5), "the generation kept running after the client left"
    sched = app.state.server.scheduler
    wait_until(lambda: not sched.active)
    assert sched.active == 0
    # The slot is usable again: a normal request goes through.
    app.state.server.config.backend = ScriptedBackend([REPLY])
    r = httpx.post(server.url + "/chat/completions", timeout=30,
                   json={"model": "m", "messages": [{"role": "user", "content": "again"}]})
    assert r.json()["choices"][0]["message"]["content"] == "one two three four five"


def test_fair_admission_round_robin_across_clients() -> None:
    async def scenario() -> list[str]:
        sched = FairScheduler(slots=1)
        await sched.acquire("a")  # a holds the slot
        waiters = [asyncio.create_task(sched.acquire(c)) for c in ("a", "a", "a", "b", "c")]
        await asyncio.sleep(0)
        cancelled = asyncio.create_task(sched.acquire("d"))
        await asyncio.sleep(0)
        cancelled.cancel()  # d's client went away while waiting
        await asyncio.sleep(0)
        for _ in waiters:
            sched.release()
            await asyncio.sleep(0)
        await asyncio.gather(*waiters)
        assert sched.waiting == 0 and sched.active == 1
        return sched.granted_order

    assert asyncio.run(scenario()) == ["a", "a", "b", "c", "a", "a"]


def test_disconnect_of_a_non_streaming_request_frees_the_slot(slow_server: SlowServer) -> None:
    slow, app, server = slow_server.slow, slow_server.app, slow_server.running
    body = {"model": "m", "messages": [{"role": "user", "content": "think"}]}
    try:
        httpx.post(server.url + "/chat/completions", json=body, timeout=1.0)
        raise AssertionError("the slow model answered")
    except httpx.ReadTimeout:
        pass  # the client gave up and closed its connection
    assert slow.closed.wait(10), "the generation kept running after the client left"
    sched = app.state.server.scheduler
    wait_until(lambda: not sched.active)
    assert sched.active == 0


def test_a_client_leaving_the_queue_is_forgotten(slow_server: SlowServer) -> None:
    slow, app, server = slow_server.slow, slow_server.app, slow_server.running
    sched = app.state.server.scheduler
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "think"}]}
    with httpx.Client(timeout=30) as client, client.stream("POST", server.url + "/chat/completions",
                                                            json=body) as resp:
        lines = resp.iter_lines()  # kept: dropping the iterator would close the connection
        next(lines)  # the first client holds the only slot
        assert slow.started.wait(10)
        for stream in (False, True):  # a queued client gives up, non-streaming and streaming
            try:
                with httpx.stream("POST", server.url + "/chat/completions", json={**body, "stream": stream},
                                  timeout=1.0) as queued:
                    queued.read()
            except httpx.ReadTimeout:
                pass
            wait_until(lambda: not sched.waiting)
            assert sched.waiting == 0 and sched.active == 1
    wait_until(lambda: not sched.active)
    assert sched.active == 0 and slow.closed.is_set()
