"""Adversarial requests to ``ossagent serve`` (issue 25), all on loopback: what a web page, a malformed client or
one heavy request can do to the server. Every refusal is an OpenAI-shaped error, never a plain-text 500.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ossagent.agent.backends.scripted import ScriptedBackend
from ossagent.agent.functions import FunctionTool
from ossagent.agent.server import ServerConfig, create_app, guard
from ossagent.agent.server.guard import host_allowed
from ossagent.agent.server.serve import RunningServer, start_in_thread

ANSWER = "<|channel|>analysis<|message|>Ok.<|end|><|start|>assistant<|channel|>final<|message|>hi<|return|>"
CHAT = {"model": "gpt-oss-test", "messages": [{"role": "user", "content": "hi"}]}


def _start(**config: Any) -> RunningServer:
    app = create_app(ServerConfig(backend=ScriptedBackend([ANSWER] * 50), model_id="gpt-oss-test", **config))
    running = start_in_thread(app)
    running.app = app  # type: ignore[attr-defined]
    return running


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = _start(max_body_bytes=1 << 20, allowed_hosts=("ossagent.test",), api_key="k3y")
    yield running
    running.stop()


def _post(server: RunningServer, body: Any = None, **kw: Any) -> httpx.Response:
    headers = {"authorization": "Bearer k3y", **kw.pop("headers", {})}
    return httpx.post(server.url + "/chat/completions", json=body, headers=headers, timeout=30, **kw)


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert "Traceback" not in err["message"] and "panicked" not in err["message"]
    return err


# -- a web page driving the server (CSRF, DNS rebinding) -------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None,
                                          "multipart/form-data; boundary=x"])
def test_a_cross_origin_simple_post_is_refused(server: RunningServer, content_type: str | None) -> None:
    headers = {"authorization": "Bearer k3y", "origin": "http://evil.example"}
    if content_type:
        headers["content-type"] = content_type
    r = httpx.post(server.url + "/chat/completions", content=b'{"model": "gpt-oss-test", "messages": []}',
                   headers=headers)
    assert _error(r, 415)["code"] == "unsupported_media_type"


def test_json_with_a_charset_is_accepted(server: RunningServer) -> None:
    r = httpx.post(server.url + "/chat/completions", content=b'{"model": 1}',
                   headers={"authorization": "Bearer k3y", "content-type": "Application/JSON; charset=utf-8"})
    assert _error(r, 400)["param"] == "model"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.nip.io", "[::1]x", "localhost.evil"])
def test_dns_rebinding_host_names_are_refused(server: RunningServer, host: str) -> None:
    for r in (httpx.get(server.url + "/models", headers={"host": host, "authorization": "Bearer k3y"}),
              httpx.get(server.url.removesuffix("/v1") + "/health", headers={"host": host}),
              _post(server, CHAT, headers={"host": host})):
        assert _error(r, 400)["code"] == "host_not_allowed"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:1234", "localhost", "LOCALHOST:80", "ossagent.test",
                                  "ossagent.test.", "[::1]:8000"])
def test_the_bound_address_loopback_names_and_allowed_hosts_are_served(server: RunningServer, host: str) -> None:
    r = httpx.get(server.url + "/models", headers={"host": host, "authorization": "Bearer k3y"})
    assert r.status_code == 200, r.text


def test_host_policy() -> None:
    assert host_allowed("10.1.2.3:80", "0.0.0.0") and host_allowed("localhost", "::")  # all interfaces
    assert host_allowed("192.168.1.5", "192.168.1.5") and not host_allowed("192.168.1.6", "192.168.1.5")
    assert not host_allowed("localhost", "192.168.1.5")  # a LAN-bound server is not reached as localhost
    assert not host_allowed("printer.lan", "0.0.0.0") and host_allowed("printer.lan", "0.0.0.0", ("printer.lan",))
    assert host_allowed("anything", "127.0.0.1", ("*",)) and host_allowed(None, "127.0.0.1")


def test_the_api_key_is_compared_in_constant_time(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = guard.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(guard.hmac, "compare_digest", spy)
    assert httpx.get(server.url + "/models", headers={"authorization": "Bearer k3y"}).status_code == 200
    assert _error(httpx.get(server.url + "/models", headers={"authorization": "Bearer k3x"}), 401)
    assert _error(httpx.get(server.url + "/models", headers={"authorization": b"Bearer \xe9\xff"}), 401)
    assert _error(httpx.get(server.url + "/models"), 401)
    assert len(calls) == 4


# -- one request holding the server ----------------------------------------------------------------------------


def test_bodies_over_the_limit_get_413(server: RunningServer) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * (1100 << 10)}]}
    assert _error(_post(server, big), 413)["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while the body streams in
        yield b'{"model": "gpt-oss-test", "messages": [{"role": "user", "content": "'
        for _ in range(1100):
            yield b"x" * 1024
        yield b'"}]}'

    r = httpx.post(server.url + "/chat/completions", content=chunks(),
                   headers={"authorization": "Bearer k3y", "content-type": "application/json"})
    assert _error(r, 413)["code"] == "request_too_large"
    assert _post(server, CHAT).status_code == 200  # the server still answers


def test_health_answers_while_a_request_compiles_its_schemas(server: RunningServer,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the run (schema compilation) is held until /health has answered: on the event loop it never would."""
    inner = server.app.state.server  # type: ignore[attr-defined]
    health_answered, compiling = threading.Event(), threading.Event()
    real = inner.agent

    def slow_agent(req: Any, *args: Any) -> Any:
        compiling.set()
        assert health_answered.wait(30), "/health did not answer while the schemas compiled"
        return real(req, *args)

    monkeypatch.setattr(inner, "agent", slow_agent)
    result: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: result.append(_post(server, CHAT)))
    worker.start()
    assert compiling.wait(30)
    health = httpx.get(server.url.removesuffix("/v1") + "/health", timeout=10)
    health_answered.set()
    worker.join(60)
    assert health.status_code == 200 and result and result[0].status_code == 200, result


class PanicException(BaseException):  # a real llguidance panic could not be provoked here
    """Stands in for pyo3_runtime.PanicException (also a BaseException), matched by name."""


def test_a_grammar_compiler_panic_is_a_400_without_backtrace(server: RunningServer,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def panic(*args: Any, **kwargs: Any) -> Any:
        raise PanicException("called `Option::unwrap()` on a `None` value\nstack backtrace:\n  0: rust_begin_unwind")

    monkeypatch.setattr(FunctionTool, "from_schema", panic)
    body = {**CHAT, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}
    err = _error(_post(server, body), 400)
    assert err["param"] == "tools" and "backtrace" not in err["message"] and "unwrap" in err["message"]


# -- malformed fields: OpenAI-shaped 400s, never a plain-text 500 -------------------------------------------------


def _deep_schema(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def _tool(parameters: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "f", "parameters": parameters}}


@pytest.mark.parametrize("body", [
    {**CHAT, "reasoning": "high"},
    {**CHAT, "reasoning": ["high"]},
    {**CHAT, "reasoning_effort": 3},
    {**CHAT, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": 5}]},
    {**CHAT, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [7]}]},
    {**CHAT, "messages": [{"role": "user", "content": "hi"},
                          {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}]},
    {**CHAT, "messages": [{"role": "user", "content": {"text": "hi"}}]},
    {**CHAT, "messages": "hi"},
    {**CHAT, "tools": {"type": "function"}},
    {**CHAT, "tools": [_tool(_deep_schema(300))]},
    {**CHAT, "tools": [{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)]},
    {**CHAT, "tools": [_tool({"type": "object", "properties": {"a": {"$ref": "http://127.0.0.1:9/s.json"}}})]},
    {**CHAT, "tools": [_tool({"type": "string", "pattern": "(a)\\1"})]},
    {**CHAT, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": _deep_schema(300)}}},
    {**CHAT, "stream_options": "yes"},
    {**CHAT, "stop": [1, 2]},
    {**CHAT, "max_tokens": "10"},
    {**CHAT, "temperature": "hot"},
    {**CHAT, "model": ["gpt-oss-test"]},
])
def test_malformed_chat_fields_are_openai_shaped_400s(server: RunningServer, body: dict[str, Any]) -> None:
    _error(_post(server, body), 400)


@pytest.mark.parametrize("body", [
    {"model": "gpt-oss-test", "input": "hi", "reasoning": "high"},
    {"model": "gpt-oss-test", "input": 5},
    {"model": "gpt-oss-test", "input": [{"type": "function_call", "name": "f", "arguments": 1}]},
    {"model": "gpt-oss-test", "input": "hi", "text": {"format": {"type": "json_schema", "schema": _deep_schema(300)}}},
    {"model": "gpt-oss-test", "input": "hi", "tools": [{"type": "function", "name": "f", "parameters": 5}]},
])
def test_malformed_responses_fields_are_openai_shaped_400s(server: RunningServer, body: dict[str, Any]) -> None:
    r = httpx.post(server.url + "/responses", json=body, headers={"authorization": "Bearer k3y"}, timeout=30)
    _error(r, 400)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_bodies_are_400s(server: RunningServer, depth: int) -> None:
    for path in ("/chat/completions", "/responses"):
        nested = b'{"model": "gpt-oss-test", "x": ' + b"[" * depth + b"]" * depth + b"}"
        r = httpx.post(server.url + path, content=nested,
                       headers={"authorization": "Bearer k3y", "content-type": "application/json"})
        _error(r, 400)
