"""Server conventions: CORS (off by default), /health /version /metrics, a log line per request, model aliases,
logprobs refused, serve's defaults reaching requests, streams ended on shutdown, and ``ossagent serve --port 0``
printing the bound address and stopping on Ctrl-C."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from ossagent.agent.backends.scripted import ScriptedBackend, Step
from ossagent.agent.server import ServerConfig, create_app
from ossagent.agent.server.serve import RunningServer, start_in_thread

ANSWER = "<|channel|>analysis<|message|>Fine.<|end|><|start|>assistant<|channel|>final<|message|>Hi!<|return|>"
ORIGIN = "http://localhost:3000"


@pytest.fixture(scope="module")
def running() -> Iterator[RunningServer]:
    app = create_app(ServerConfig(backend=ScriptedBackend([]), model_id="gpt-oss-20b", cors_origins=(ORIGIN,),
                                  instructions="Answer in French.", default_temperature=0.0))
    server = start_in_thread(app)
    server.app = app  # type: ignore[attr-defined]
    yield server
    server.stop()


def root(server: RunningServer) -> str:
    return server.url.removesuffix("/v1")


def use(server: RunningServer, steps: Sequence[Any]) -> ScriptedBackend:
    backend = ScriptedBackend(list(steps), constrained=True)
    server.app.state.server.config.backend = backend  # type: ignore[attr-defined]
    return backend


def test_cors_preflight_for_a_configured_origin_only(running: RunningServer) -> None:
    headers = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization,content-type"}
    r = httpx.options(f"{running.url}/chat/completions", headers=headers)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in r.headers["access-control-allow-methods"]
    r = httpx.options(f"{running.url}/chat/completions", headers={**headers, "Origin": "http://evil.example"})
    assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
    plain = start_in_thread(create_app(ServerConfig(backend=ScriptedBackend([]))))
    try:  # off by default: no CORS headers at all
        r = httpx.options(f"{plain.url}/chat/completions", headers=headers)
        assert "access-control-allow-origin" not in r.headers
        assert "access-control-allow-origin" not in httpx.get(f"{plain.url}/models", headers=headers).headers
    finally:
        plain.stop()


def test_health_version_metrics_and_a_log_line(running: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    use(running, [ANSWER])
    base = root(running)
    assert httpx.get(f"{base}/health").json() == {"status": "ok", "model": "gpt-oss-20b", "active": 0, "waiting": 0}
    version = httpx.get(f"{base}/version").json()
    assert version["ossagent"] and version["model"] == "gpt-oss-20b" and "gpt-oss:20b" in version["aliases"]
    before = httpx.get(f"{base}/metrics").text
    client = openai.OpenAI(base_url=running.url, api_key="x", max_retries=0)
    with caplog.at_level(logging.INFO, logger="ossagent.server"):
        r = client.chat.completions.create(model="gpt-oss-20b", messages=[{"role": "user", "content": "hi"}])
    assert r.usage is not None
    line = next(rec.getMessage() for rec in caplog.records if "/v1/chat/completions" in rec.getMessage())
    assert re.fullmatch(rf"POST /v1/chat/completions 200 [\d.]+s prompt={r.usage.prompt_tokens} cached=0 "
                        rf"completion={r.usage.completion_tokens} reasoning=\d+ [\d.]+ tok/s", line), line
    after = httpx.get(f"{base}/metrics")
    assert after.headers["content-type"].startswith("text/plain; version=0.0.4")

    def value(text: str, name: str) -> float:
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    assert value(after.text, "ossagent_completion_tokens_total") - value(
        before, "ossagent_completion_tokens_total") == r.usage.completion_tokens
    assert value(after.text, 'ossagent_requests_total{path="/v1/chat/completions",status="200"}') >= 1
    for name in ("ossagent_queue_depth", "ossagent_active_requests", "ossagent_cached_tokens_total",
                 "ossagent_last_tokens_per_second", "ossagent_generation_seconds_total"):
        assert re.search(rf"^# TYPE {name} (gauge|counter)$", after.text, re.M), name


def test_aliases_answer_with_the_served_name(running: RunningServer) -> None:
    use(running, [ANSWER])
    client = openai.OpenAI(base_url=running.url, api_key="x", max_retries=0)
    assert [m.id for m in client.models.list()] == ["gpt-oss-20b"]
    assert client.models.retrieve("gpt-oss:20b").id == "gpt-oss-20b"
    r = client.chat.completions.create(model="openai/gpt-oss-20b", messages=[{"role": "user", "content": "hi"}])
    assert r.model == "gpt-oss-20b" and r.choices[0].message.content == "Hi!"
    with pytest.raises(openai.NotFoundError, match="serves 'gpt-oss-20b'"):
        client.chat.completions.create(model="gpt-oss-120b", messages=[{"role": "user", "content": "hi"}])


def test_logprobs_are_refused_not_silently_null(running: RunningServer) -> None:
    client = openai.OpenAI(base_url=running.url, api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="logprobs are not supported") as exc:
        client.chat.completions.create(model="gpt-oss-20b", messages=[{"role": "user", "content": "hi"}],
                                       logprobs=True, top_logprobs=2)
    assert exc.value.body["param"] == "logprobs"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError, match="not supported"):
        client.responses.create(model="gpt-oss-20b", input="hi", include=["message.output_text.logprobs"])


def test_server_defaults_reach_requests_that_give_none(running: RunningServer) -> None:
    backend = use(running, [Step(ANSWER, expect=["Answer in French.", "Be short."])])
    client = openai.OpenAI(base_url=running.url, api_key="x", max_retries=0)
    client.chat.completions.create(model="gpt-oss-20b", messages=[
        {"role": "system", "content": "Be short."}, {"role": "user", "content": "hi"}])
    backend.assert_consumed()


class SlowBackend(ScriptedBackend):
    """Yields one token every 50 ms, so a stream is still open when the server shuts down."""

    def generate(self, *args: Any, **kwargs: Any) -> Iterator[int]:
        for tok in super().generate(*args, **kwargs):
            time.sleep(0.05)
            yield tok


def test_shutdown_ends_open_streams_with_their_tail(running: RunningServer) -> None:
    long = "<|channel|>analysis<|message|>" + "thinking " * 400 + "<|end|><|start|>assistant<|channel|>final" \
           "<|message|>done<|return|>"
    running.app.state.server.config.backend = SlowBackend([long])  # type: ignore[attr-defined]
    lines: list[str] = []
    body = {"model": "gpt-oss-20b", "stream": True, "messages": [{"role": "user", "content": "think"}]}

    def read() -> None:
        with httpx.stream("POST", f"{running.url}/chat/completions", json=body, timeout=30) as r:
            lines.extend(line for line in r.iter_lines() if line)

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.monotonic() + 20
    while running.app.state.server.scheduler.active == 0 and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.02)
    time.sleep(0.3)
    running.app.state.server.close_streams()  # type: ignore[attr-defined]
    reader.join(timeout=10)
    assert not reader.is_alive() and lines[-1] == "data: [DONE]"
    assert len(lines) < 300  # it stopped well before the 400-word thought was done


def test_serve_port_0_prints_the_bound_address_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    script = tmp_path / "s.json"
    script.write_text(json.dumps([ANSWER]))
    proc = subprocess.Popen([sys.executable, "-m", "ossagent.agent.cli", "serve", "--scripted", str(script),
                             "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        found = re.search(r"serving gpt-oss-20b on (http://127\.0\.0\.1:(\d+)/v1)", line)
        assert found and found.group(2) != "0", line
        assert httpx.get(found.group(1).removesuffix("/v1") + "/health").status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) in (0, 130)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_metrics_count_routes_by_template_not_raw_path(running: RunningServer) -> None:
    for rid in ("resp_aaa", "resp_bbb"):
        assert httpx.get(f"{running.url}/responses/{rid}").status_code == 404
    assert httpx.get(f"{root(running)}/no/such/path").status_code == 404
    text = httpx.get(f"{root(running)}/metrics").text
    assert 'ossagent_requests_total{path="/v1/responses/{response_id}",status="404"} 2' in text
    assert "resp_aaa" not in text and "/no/such/path" not in text
    assert re.search(r'^ossagent_requests_total\{path="other",status="404"\} \d+$', text, re.M)


def test_metrics_need_the_api_key_when_one_is_set() -> None:
    keyed = start_in_thread(create_app(ServerConfig(backend=ScriptedBackend([]), api_key="k3y")))
    try:
        base = keyed.url.removesuffix("/v1")
        assert httpx.get(f"{base}/metrics").status_code == 401
        assert httpx.get(f"{base}/metrics", headers={"authorization": "Bearer nope"}).status_code == 401
        assert httpx.get(f"{base}/metrics", headers={"authorization": "Bearer k3y"}).status_code == 200
        assert httpx.get(f"{base}/health").status_code == 200  # liveness probes need no key
    finally:
        keyed.stop()


def test_a_post_without_a_body_needs_no_content_type(running: RunningServer) -> None:
    r = httpx.post(f"{running.url}/responses/resp_missing/cancel")  # the SDK's cancel sends no body
    assert r.status_code == 404 and r.json()["error"]["code"] == "response_not_found"
    r = httpx.post(f"{running.url}/responses/resp_missing/cancel", content=b"{}",
                   headers={"content-type": "text/plain"})
    assert r.status_code == 415  # a body still must be JSON
