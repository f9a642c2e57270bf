"""Stored responses (SQLite): retrieve, delete, store=false, previous_response_id across a restart, background
requests polled to completion, and cancel (official openai client, ``serve`` on loopback)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from ossagent.agent.backends.scripted import ScriptedBackend, Step
from ossagent.agent.server import ServerConfig, create_app
from ossagent.agent.server.serve import RunningServer, start_in_thread


def answer(text: str, think: str = "Ok.") -> str:
    return f"<|channel|>analysis<|message|>{think}<|end|><|start|>assistant<|channel|>final<|message|>{text}<|return|>"


class SlowBackend(ScriptedBackend):
    def generate(self, *args: Any, **kwargs: Any) -> Iterator[int]:
        for tok in super().generate(*args, **kwargs):
            time.sleep(0.02)
            yield tok


def serve(path: Path, backend: ScriptedBackend) -> tuple[RunningServer, openai.OpenAI]:
    running = start_in_thread(create_app(ServerConfig(backend=backend, model_id="m", store_path=path)))
    return running, openai.OpenAI(base_url=running.url, api_key="x", max_retries=0)


def test_store_retrieve_delete_and_store_false(tmp_path: Path) -> None:
    running, client = serve(tmp_path / "r.sqlite3", ScriptedBackend([answer("One."), answer("Two.")]))
    try:
        r = client.responses.create(model="m", input="first")
        got = client.responses.retrieve(r.id)
        assert got.output_text == "One." and got.status == "completed" and got.store is True
        with pytest.raises(openai.BadRequestError, match="only background responses"):
            client.responses.cancel(r.id)
        client.responses.delete(r.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(r.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.delete(r.id)
        r2 = client.responses.create(model="m", input="second", store=False)
        assert r2.output_text == "Two." and r2.store is False
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(r2.id)
    finally:
        running.stop()


def test_previous_response_id_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    running, client = serve(path, ScriptedBackend([answer("Paris.")]))
    try:
        first = client.responses.create(model="m", input="Capital of France?")
    finally:
        running.stop()
    backend = ScriptedBackend([Step(answer("Berlin."), expect=["Capital of France?", "Paris.", "And Germany?"])])
    running, client = serve(path, backend)
    try:
        second = client.responses.create(model="m", input="And Germany?", previous_response_id=first.id)
        assert second.output_text == "Berlin." and second.previous_response_id == first.id
        backend.assert_consumed()
    finally:
        running.stop()


def poll(client: openai.OpenAI, response_id: str, until: tuple[str, ...], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = client.responses.retrieve(response_id)
        if got.status in until or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_background_is_polled_to_completion_and_can_be_cancelled(tmp_path: Path) -> None:
    long = answer("never", think="thinking " * 400)
    running, client = serve(tmp_path / "r.sqlite3", SlowBackend([answer("Done."), long]))
    try:
        r = client.responses.create(model="m", input="work", background=True)
        assert r.status in ("queued", "in_progress") and r.background is True
        done = poll(client, r.id, ("completed", "failed"))
        assert done.status == "completed" and done.output_text == "Done."
        slow = client.responses.create(model="m", input="think long", background=True)
        assert poll(client, slow.id, ("in_progress",)).status == "in_progress"
        cancelled = client.responses.cancel(slow.id)
        assert cancelled.status == "cancelled"
        assert client.responses.retrieve(slow.id).status == "cancelled"
        with pytest.raises(openai.BadRequestError, match="need store"):
            client.responses.create(model="m", input="x", background=True, store=False)
    finally:
        running.stop()


def test_deleting_a_running_background_response_stops_it_first(tmp_path: Path) -> None:
    long = answer("never", think="thinking " * 400)
    running, client = serve(tmp_path / "r.sqlite3", SlowBackend([long]))
    try:
        slow = client.responses.create(model="m", input="think long", background=True)
        assert poll(client, slow.id, ("in_progress",)).status == "in_progress"
        client.responses.delete(slow.id)
        with pytest.raises(openai.NotFoundError):  # not written back as "cancelled" after the delete
            client.responses.retrieve(slow.id)
        time.sleep(0.3)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(slow.id)
        health = httpx.get(running.url.removesuffix("/v1") + "/health").json()
        assert health["active"] == 0 and health["waiting"] == 0  # its slot is free
    finally:
        running.stop()
