"""litellm against ``ossagent serve`` on loopback, as its users point it at any OpenAI-compatible server:
``litellm.completion(model="openai/<id>", api_base=...)``: a plain answer, a stream, and a tool-call round trip.

litellm fetches a model cost map from the internet at import unless told otherwise; the module fixture sets its
offline switches before importing it, and a guard fails the test on any connection that leaves loopback."""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from ossagent.agent.backends.scripted import Step
from ossagent.agent.server.serve import RunningServer
from tests.agent import scripted_server
from tests.agent.scripted_server import MODEL, script
from tests.agent.test_server import CALL, WEATHER, answer

if importlib.util.find_spec("litellm") is None:
    pytest.skip("litellm is not installed (pip install -e '.[test]')", allow_module_level=True)

pytestmark = pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning")

OFFLINE = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_OFFLINE_MODE": "true", "LITELLM_TELEMETRY": "False"}
THOUGHT = "Need the weather."  # in test_server.CALL
server = scripted_server.server  # the fixture: a real server on loopback with a scripted model, one per module


class LoopbackOnly:
    """Wraps ``socket.connect`` and ``getaddrinfo``: anything but a loopback address is refused and recorded."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self._connect = socket.socket.connect
        self._getaddrinfo = socket.getaddrinfo

    @staticmethod
    def _loopback(host: Any) -> bool:
        if host in ("localhost", "localhost.", None):
            return True
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False

    def connect(self, sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not self._loopback(address[0]):
            self.refused.append(f"connect {address[0]}")
            raise OSError(f"test guard: connection to {address[0]} refused (loopback only)")
        return self._connect(sock, address)

    def getaddrinfo(self, host: Any, *args: Any, **kwargs: Any) -> Any:
        if not self._loopback(host.decode() if isinstance(host, bytes) else host):
            self.refused.append(f"resolve {host}")
            raise socket.gaierror(f"test guard: {host} is not loopback")
        return self._getaddrinfo(host, *args, **kwargs)


@pytest.fixture(scope="module")
def guard() -> Iterator[LoopbackOnly]:
    g = LoopbackOnly()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", lambda sock, address: g.connect(sock, address))
        mp.setattr(socket, "getaddrinfo", g.getaddrinfo)
        yield g


@pytest.fixture(scope="module")
def litellm(guard: LoopbackOnly) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in OFFLINE.items():
            mp.setenv(k, v)
        import litellm as lib

        mp.setattr(lib, "telemetry", False, raising=False)
        mp.setattr(lib, "suppress_debug_info", True, raising=False)
        yield lib
    assert guard.refused == [], f"litellm tried to leave loopback: {guard.refused}"


def complete(litellm: Any, server: RunningServer, **kw: Any) -> Any:
    return litellm.completion(model=f"openai/{MODEL}", api_base=server.url, api_key="unused", timeout=60,
                              num_retries=0, **kw)


def test_guard_refuses_what_leaves_loopback(guard: LoopbackOnly) -> None:
    """The guard itself: a name that is not loopback is refused (nothing is sent: the lookup never happens)."""
    before = len(guard.refused)
    with pytest.raises(OSError):
        socket.getaddrinfo("example.com", 443)
    assert guard.refused[before:] == ["resolve example.com"]
    del guard.refused[before:]


def test_plain_completion(litellm: Any, server: RunningServer) -> None:
    backend = script(server, [Step(answer("Hello!"), expect=["Be brief.", "Hi there"])])
    r = complete(litellm, server, messages=[{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": "Hi there"}])
    assert r.choices[0].message.content == "Hello!"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == len(backend.prompts[0])
    assert r.usage.completion_tokens == len(backend.outputs[0])
    backend.assert_consumed()


def test_streaming_completion(litellm: Any, server: RunningServer) -> None:
    backend = script(server, [answer("one two three four")])
    stream = complete(litellm, server, stream=True, messages=[{"role": "user", "content": "count"}])
    pieces, finish = [], None
    for chunk in stream:
        for c in chunk.choices:
            if c.delta.content:
                pieces.append(c.delta.content)
            finish = c.finish_reason or finish
    assert len(pieces) > 1 and "".join(pieces) == "one two three four"
    assert finish == "stop"
    backend.assert_consumed()


def test_tool_call_round_trip(litellm: Any, server: RunningServer) -> None:
    backend = script(server, [
        Step(CALL, expect=["type get_weather = (_: {", "Weather in Paris?"]),
        Step(answer("It is sunny in Paris."),
             expect=[THOUGHT, "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>sunny"]),
    ])
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    r = complete(litellm, server, messages=messages, tools=[WEATHER])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [{"role": "assistant", "content": None, "tool_calls": [
                     {"id": call.id, "type": "function",
                      "function": {"name": "get_weather", "arguments": call.function.arguments}}]},
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    r2 = complete(litellm, server, messages=messages, tools=[WEATHER])
    assert r2.choices[0].message.content == "It is sunny in Paris."
    assert r2.choices[0].finish_reason == "stop"
    backend.assert_consumed()


def test_streamed_tool_call(litellm: Any, server: RunningServer) -> None:
    backend = script(server, [CALL])
    stream = complete(litellm, server, stream=True, tools=[WEATHER],
                      messages=[{"role": "user", "content": "Weather in Paris?"}])
    chunks = list(stream)
    built = litellm.stream_chunk_builder(chunks)
    (call,) = built.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert built.choices[0].finish_reason == "tool_calls"
    backend.assert_consumed()
