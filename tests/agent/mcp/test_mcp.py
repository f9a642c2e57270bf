"""MCP servers as tools: a real MCPServer (the SDK's FastMCP) over stdio (sandboxed and trusted) and over
streamable HTTP on loopback, driven by scripted models under the turn grammar."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ossagent.agent import prompt as hp
from ossagent.agent.approvals import Policy
from ossagent.agent.backends.scripted import ScriptedBackend, ScriptError, Step
from ossagent.agent.harmony.tokens import START
from ossagent.agent.loop import Agent
from ossagent.agent.mcp import MCPServerConfig, MCPTool, load_config, parse_spec
from ossagent.agent.transcript import user
from ossagent.tools.base import UserError

SERVER = Path(__file__).with_name("server.py")
ALLOW = Policy({"trips": "allow"})


def call(fn: str, args: dict[str, Any] | str, ns: str = "trips") -> str:
    body = args if isinstance(args, str) else json.dumps(args, separators=(",", ":"))
    return (f"<|channel|>analysis<|message|>Use the tool.<|end|>"
            f"<|start|>assistant<|channel|>commentary to={ns}.{fn} <|constrain|>json<|message|>{body}<|call|>")


def final(text: str) -> str:
    return f"<|channel|>final<|message|>{text}<|return|>"


def stdio(name: str = "trips", *extra: str, **kw: Any) -> MCPServerConfig:
    return MCPServerConfig(name, command=(sys.executable, str(SERVER), "stdio", *extra), **kw)


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MCPTool]:
    tool = MCPTool(stdio(allowed_tools=("plan_trip", "fail", "slow", "lookup", "where")), tmp_path_factory.mktemp("ws"))
    yield tool
    tool.close()


def test_stdio_server_in_the_sandbox_through_the_agent(sandboxed: MCPTool) -> None:
    trip = {"stops": [{"city": "Oslo", "nights": 2}, {"city": "Bergen", "nights": 1}], "travellers": [{"name": "Ada"}]}
    with ScriptedBackend([
        call("plan_trip", trip),
        Step(call("fail", {"reason": "no"}), expect="3 nights through Oslo -> Bergen for Ada"),
        Step(call("slow", {"seconds": 0.2}), expect="refused: no"),
        Step(final("Done."), expect="slept 0.2"),
    ], constrained=True) as backend:
        agent = Agent(backend, tools=[sandboxed], approvals=ALLOW)
        result = agent.run("Plan it.")
    assert result.stop_reason == "final", result.errors
    answers = [m for m in result.transcript if m.role == "tool"]
    assert [m.meta["is_error"] for m in answers] == [False, True, False]
    assert answers[1].meta["metadata"]["fault"] == "tool"
    assert "namespace trips {" in backend.encoding.decode(backend.prompts[0])


def test_the_grammar_keeps_arguments_to_the_schema(sandboxed: MCPTool) -> None:
    bad = call("plan_trip", {"stops": [{"city": "Oslo", "nights": 2, "extra": 1}], "travellers": []})
    with ScriptedBackend([bad], constrained=True) as backend:
        agent = Agent(backend, tools=[sandboxed], approvals=ALLOW)
        with pytest.raises(ScriptError, match="constraints forbid"):  # the scripted model is held to the grammar
            agent.run("Plan it.")


def test_invalid_arguments_without_the_grammar_go_back_to_the_model(sandboxed: MCPTool) -> None:
    from ossagent.tools.base import ModelError

    with pytest.raises(ModelError, match="nights"):
        sandboxed.call("trips.plan_trip", '{"stops": [{"city": "Oslo", "nights": 99}], "travellers": []}')


def test_sandboxed_server_has_no_network_and_sees_the_workspace(sandboxed: MCPTool, tmp_path: Path) -> None:
    from ossagent.agent.mcp.launch import server_argv

    seen = json.loads(sandboxed.call("trips.where", "{}").text)
    assert seen["hostname"] == "sandbox" and seen["interfaces"] == ["lo"]
    assert seen["cwd"] == str(sandboxed.workspace.resolve()) and seen["home_files"] is None

    argv, _ = server_argv(stdio(), tmp_path)
    assert argv[0].endswith("bwrap") and "--unshare-all" in argv and "--share-net" not in argv
    assert ["--bind", str(tmp_path.resolve()), str(tmp_path.resolve())] == argv[argv.index("--bind"):][:3]
    argv, _ = server_argv(stdio(network=True), tmp_path)
    assert "--share-net" in argv
    argv, _ = server_argv(stdio(trusted=True), tmp_path)
    assert argv[0] == sys.executable


def test_a_server_that_dies_mid_call_is_restarted_once(tmp_path: Path) -> None:
    tool = MCPTool(stdio(trusted=True), tmp_path)
    try:
        with ScriptedBackend([
            call("crash", {}),
            Step(call("lookup", {"word": "ok"}), expect="The server was restarted; trips.crash did not finish"),
            Step(call("crash", {}), expect="ok: a word"),
            Step(final("Gave up."), expect="stays down"),
        ], constrained=True) as backend:
            result = Agent(backend, tools=[tool], approvals=ALLOW).run("Go.")
        assert result.stop_reason == "final" and tool.restarts == 1
    finally:
        tool.close()


def test_descriptions_are_untrusted_no_markup_passes(tmp_path: Path, enc: Any) -> None:
    tool = MCPTool(stdio("evil", "--evil", trusted=True), tmp_path)
    try:
        agent = Agent(ScriptedBackend([]), tools=[tool])
        tokens = hp.render_prompt(agent.config, [user("hi")], enc)
    finally:
        tool.close()
    text = enc.decode(tokens)
    body = text.split("namespace evil {", 1)[1].split("} // namespace evil", 1)[0]
    assert "Ignore all previous instructions" in body  # shown, as text
    assert "<|" not in body and "|>" not in body
    starts = [t for t in tokens if t == START]
    assert len(starts) == 4  # system, developer, user, and the assistant's turn: nothing else opens a message
    golden = Path(__file__).parent / "golden" / "mcp_namespace.txt"
    if not golden.exists():  # pragma: no cover - written once, then reviewed and committed
        golden.write_text(body, encoding="utf-8")
    assert body == golden.read_text(encoding="utf-8")
    injected = [ln for ln in body.splitlines() if "Instructions" in ln or "namespace x" in ln or "call crash" in ln]
    assert injected and all(ln.startswith("// ") for ln in injected)  # the server's lines stay comments


def test_http_server_on_loopback(mcp_url: str, tmp_path: Path) -> None:
    config = parse_spec(f"web={mcp_url}", approval="allow")
    with ScriptedBackend([call("lookup", {"word": "mcp"}, ns="web"), Step(final("ok"), expect="mcp: a word")],
                         constrained=True) as backend:
        agent = Agent(backend, mcp=[config], workspace=str(tmp_path))
        try:
            result = agent.run("Look it up.")
        finally:
            agent.close()
    assert result.stop_reason == "final", result.errors


def test_config_file_and_specs(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {
        "a": {"command": "python", "args": ["s.py"], "env": {"K": "v"}, "trusted": True},
        "b": {"url": "http://127.0.0.1:9/mcp", "approval": "allow", "allowed_tools": ["x"]},
    }}))
    a, b = load_config(path)
    assert a.command == ("python", "s.py") and a.trusted and a.approval == "ask"
    assert b.url and b.approval == "allow" and b.allowed_tools == ("x",)
    assert parse_spec("x=npx -y 'some server'").command == ("npx", "-y", "some server")
    for bad in ("nothing", "functions=cmd", "a b=cmd", "x=", "x=http://"):
        with pytest.raises(UserError):
            parse_spec(bad)


def test_inline_refs_shows_nested_shapes_and_leaves_recursion_alone() -> None:
    from ossagent.agent.mcp.tool import inline_refs

    flat = {"type": "object", "$defs": {"P": {"type": "object", "properties": {"x": {"type": "integer"}}}},
            "properties": {"p": {"$ref": "#/$defs/P", "description": "a point"}}}
    assert inline_refs(flat) == {"type": "object", "properties": {"p": {
        "type": "object", "properties": {"x": {"type": "integer"}}, "description": "a point"}}}
    tree = {"type": "object", "$defs": {"T": {"type": "object", "properties": {"kids": {
        "type": "array", "items": {"$ref": "#/$defs/T"}}}}}, "properties": {"root": {"$ref": "#/$defs/T"}}}
    assert inline_refs(tree) is tree


def test_a_bad_agent_closes_the_servers_it_connected(tmp_path: Path) -> None:
    tool = MCPTool(stdio(trusted=True, allowed_tools=("lookup",)), tmp_path)
    with pytest.raises(UserError, match="tool_choice"):
        Agent(ScriptedBackend([]), mcp=[tool], tool_choice={"type": "function", "name": "nope"})
    assert tool._conn is None  # closed (the server process is gone with it)
