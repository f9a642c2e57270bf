"""Many conversations on one local engine: the server's slots decode together, agents share one backend in
threads, a client that leaves frees its sequence. The tiny random gpt-oss, greedy, so each conversation's
text is fixed: batched or alone, it must be the same."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import httpx
import openai
import pytest
import torch

from ossagent.agent.backends.local import LocalBackend, conversation_bytes, default_slots
from ossagent.agent.limits import Limits
from ossagent.agent.loop import Agent
from ossagent.agent.server import ServerConfig, create_app
from ossagent.agent.server.serve import RunningServer, start_in_thread
from ossagent.model.hooks import StepAction
from tests.agent.conftest import VOCAB

pytestmark = pytest.mark.slow


def shared(tiny_backend: Any, slots: int) -> LocalBackend:
    """A backend with its own batch engine over the session's tiny model (one engine at a time runs)."""
    return LocalBackend(tiny_backend.engine, tiny_backend.encoding, slots=slots)


def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    return cond()


@pytest.fixture(scope="module")
def eight_slots(tiny_backend: Any) -> Iterator[tuple[LocalBackend, RunningServer]]:
    backend = shared(tiny_backend, 8)
    config = ServerConfig(backend=backend, model_id="tiny", encoding=backend.encoding, slots=8,
                          reasoning_budget=6, default_max_tokens=40)
    running = start_in_thread(create_app(config))
    yield backend, running
    running.stop()


def ask(url: str, i: int) -> tuple[str, str | None]:
    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=120)
    text, finish = [], None
    stream = client.chat.completions.create(
        model="tiny", stream=True, temperature=0,
        messages=[{"role": "system", "content": "You answer briefly."},
                  {"role": "user", "content": f"Question number {i}: what is {i} + {i}?" + " why" * i}])
    for chunk in stream:
        for c in chunk.choices:
            text.append(c.delta.content or "")
            finish = c.finish_reason or finish
    return "".join(text), finish


def test_eight_concurrent_client_streams_equal_eight_sequential_ones(
    eight_slots: tuple[LocalBackend, RunningServer],
) -> None:
    backend, server = eight_slots
    batch = backend.batch
    steps0 = batch.steps
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda i: ask(server.url, i), range(8)))
    steps_together = batch.steps - steps0
    assert wait_until(lambda: batch.active == 0)
    steps0 = batch.steps
    alone = [ask(server.url, i) for i in range(8)]
    steps_alone = batch.steps - steps0
    assert together == alone
    assert all(finish is not None for _, finish in together)
    assert len({text for text, _ in together}) > 1, "different questions, different random answers"
    # the streams progressed together: far fewer engine steps than one stream after another
    assert steps_together < steps_alone * 0.6, (steps_together, steps_alone)


class EndlessThought:
    """Opens the analysis channel, then allows one word forever (the run ends only by its limits or a close)."""

    def __init__(self, enc: Any) -> None:
        self.head = enc.encode("<|channel|>analysis<|message|>", allowed_special="all")
        self.mask = torch.zeros(VOCAB, dtype=torch.bool)
        self.mask[enc.encode_ordinary(" hmm")[0]] = True

    def step(self, generated: Sequence[int]) -> StepAction:
        return StepAction(forced=list(self.head)) if not generated else StepAction(mask=self.mask)


def test_a_disconnect_frees_its_sequence_while_the_other_stream_goes_on(tiny_backend: Any) -> None:
    backend = shared(tiny_backend, 2)
    config = ServerConfig(backend=backend, model_id="tiny", encoding=backend.encoding, slots=2,
                          hook_factory=lambda _req: EndlessThought(backend.encoding), default_max_tokens=100_000,
                          max_time=120)
    server = start_in_thread(create_app(config))
    body = {"model": "tiny", "stream": True, "messages": [{"role": "user", "content": "think"}]}
    try:
        with httpx.Client(timeout=30) as client, \
                client.stream("POST", server.url + "/chat/completions", json=body) as staying:
            kept = staying.iter_lines()
            with client.stream("POST", server.url + "/chat/completions", json=body) as leaving:
                lines = leaving.iter_lines()
                assert any("reasoning_content" in next(lines) for _ in range(8))
                assert wait_until(lambda: backend.active == 2)
            # the client left: its sequence leaves the batch at once, the other one keeps streaming
            assert wait_until(lambda: backend.active == 1, 5), "the sequence kept running after its client left"
            got = [next(kept) for _ in range(200)]
            assert sum("hmm" in ln for ln in got) > 50
            assert backend.active == 1
        assert wait_until(lambda: backend.active == 0, 5), "the last sequence kept running after its client left"
        steps = backend.batch.steps
        time.sleep(0.3)
        assert backend.batch.steps == steps, "nobody is left to step for"
    finally:
        server.stop()


def test_two_agents_on_one_engine_in_threads_get_what_each_gets_alone(tiny_backend: Any) -> None:
    backend = shared(tiny_backend, 2)

    def set_unit(unit: Literal["celsius", "fahrenheit"]) -> str:
        """Set the temperature unit."""
        return f"unit set to {unit}"

    def run(task: str) -> tuple[str, list[Any]]:
        agent = Agent(backend, functions=[set_unit], temperature=0.0, reasoning_budget=5, tool_choice="required",
                      limits=Limits(max_turns=3, max_turn_tokens=48))
        try:
            result = agent.run(task)
        finally:
            agent.close()
        return result.text, [(m.role, m.recipient, m.text) for m in result.transcript]

    tasks = ["Celsius, please.", "Switch to fahrenheit and say so in one word, please."]
    alone = [run(t) for t in tasks]
    steps0 = backend.batch.steps
    results: list[Any] = [None, None]

    def worker(i: int) -> None:
        results[i] = run(tasks[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == alone
    assert alone[0] != alone[1]
    assert any(role == "tool" for role, _, _ in alone[0][1]), "the agent called its tool"
    assert backend.batch.steps - steps0 > 0 and backend.active == 0


def test_default_slots_follow_the_kv_budget(tiny_backend: Any) -> None:
    engine = tiny_backend.engine
    per = conversation_bytes(engine)
    cfg = engine.model.config
    full_layers = sum(not cfg.is_sliding(i) for i in range(cfg.num_hidden_layers))
    assert conversation_bytes(engine, 8192 + 1) - per == full_layers * 2 * cfg.num_key_value_heads * cfg.head_dim * 2
    assert default_slots(engine, 100 * per / 1e9) == 4
    assert default_slots(engine, 2.5 * per / 1e9) == 2
    assert default_slots(engine, 0.1 * per / 1e9) == 1
    assert LocalBackend(engine, tiny_backend.encoding, slots=None, kv_memory_gb=2.5 * per / 1e9).slots == 2
