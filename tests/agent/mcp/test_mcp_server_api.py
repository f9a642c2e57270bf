"""The official openai client drives an MCP tool with ``require_approval`` on ossagent's Responses API: the run
pauses with an ``mcp_approval_request``, the client approves (or refuses) with an ``mcp_approval_response``."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from ossagent.agent.backends.scripted import ScriptedBackend, Step
from ossagent.agent.server import ServerConfig, create_app
from ossagent.agent.server.serve import RunningServer, start_in_thread

CALL = ("<|channel|>analysis<|message|>Look it up.<|end|><|start|>assistant<|channel|>commentary to=words.lookup "
        "<|constrain|>json<|message|>{\"word\":\"cat\"}<|call|>")


def final(text: str) -> str:
    return f"<|channel|>final<|message|>{text}<|return|>"


@pytest.fixture()
def running() -> Iterator[RunningServer]:
    app = create_app(ServerConfig(backend=ScriptedBackend([]), model_id="gpt-oss-test", allow_mcp=True))
    server = start_in_thread(app)
    server.app = app  # type: ignore[attr-defined]
    yield server
    server.stop()


def use(server: RunningServer, steps: list[object]) -> None:
    server.app.state.server.config.backend = ScriptedBackend(steps, constrained=True)  # type: ignore[attr-defined]


@pytest.mark.parametrize("approve", [True, False])
def test_openai_client_approves_an_mcp_call(running: RunningServer, mcp_url: str, approve: bool) -> None:
    client = openai.OpenAI(base_url=running.url, api_key="unused", max_retries=0)
    tool = {"type": "mcp", "server_label": "words", "server_url": mcp_url, "require_approval": "always",
            "allowed_tools": ["lookup"]}
    use(running, [CALL, Step(final("Done."), expect="cat: a word" if approve else "not approved")])
    first = client.responses.create(model="gpt-oss-test", input="Define cat.", tools=[tool])  # type: ignore[list-item]
    [request] = [i for i in first.output if i.type == "mcp_approval_request"]
    assert (request.server_label, request.name, request.arguments) == ("words", "lookup", '{"word":"cat"}')
    second = client.responses.create(
        model="gpt-oss-test", previous_response_id=first.id, tools=[tool],  # type: ignore[list-item]
        input=[{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": approve}])
    [done] = [i for i in second.output if i.type == "mcp_call"]
    assert done.name == "lookup" and done.server_label == "words"
    assert (done.output, done.error) == (("cat: a word", None) if approve else (None, done.error))
    assert approve or "not approved" in (done.error or "")
    assert second.output_text == "Done."


def test_mcp_needs_the_server_to_allow_it(mcp_url: str) -> None:
    app = create_app(ServerConfig(backend=ScriptedBackend([]), model_id="gpt-oss-test"))
    server = start_in_thread(app)
    try:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="allow-mcp"):
            client.responses.create(model="gpt-oss-test", input="x", tools=[  # type: ignore[list-item]
                {"type": "mcp", "server_label": "w", "server_url": mcp_url, "require_approval": "never"}])
    finally:
        server.stop()
