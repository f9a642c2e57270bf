"""The Responses API's remote MCP tools on this server: ``{"type": "mcp", "server_label", "server_url",
"allowed_tools", "require_approval", "headers"}`` tools, ``mcp_approval_response`` input items, and the
``mcp_call`` / ``mcp_approval_request`` output items.

A request's MCP servers are connected for that request (streamable HTTP only: a client cannot make this server
start processes) and only when the server was started with ``allow_mcp``, since the server, not the client,
opens the connection. ``require_approval``: ``"always"`` (the default, as OpenAI's API has it) pauses the run
on each call with an ``mcp_approval_request``; ``"never"`` runs them; ``{"never": {"tool_names": [...]}}`` runs
those and asks for the rest. The client answers with ``previous_response_id`` and an ``mcp_approval_response``
item (``approval_request_id``, ``approve``, ``reason``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from ossagent.agent.approvals import Decision, Policy
from ossagent.agent.mcp import MCPServerConfig
from ossagent.agent.server.errors import bad_request
from ossagent.tools.base import UserError

ITEM_TYPES = ("mcp_approval_response", "mcp_approval_request", "mcp_call", "mcp_list_tools")


@dataclass
class MCPRequest:
    servers: list[MCPServerConfig] = field(default_factory=list)
    rules: dict[str, str] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)

    @property
    def labels(self) -> set[str]:
        return {s.name for s in self.servers}

    def policy(self) -> Policy:
        return Policy(self.rules)


def _names(value: Any, param: str) -> list[str]:
    names = value.get("tool_names") if isinstance(value, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise bad_request("expected {\"tool_names\": [...]}", param)
    return names


def parse_tool(tool: dict[str, Any], param: str, out: MCPRequest) -> None:
    label, url = tool.get("server_label"), tool.get("server_url")
    if not isinstance(label, str) or not isinstance(url, str):
        raise bad_request("mcp tools need server_label and server_url", param)
    allowed = tool.get("allowed_tools")
    if isinstance(allowed, dict):
        allowed = allowed.get("tool_names")
    require = tool.get("require_approval", "always")
    approval = "ask"
    if require == "never":
        approval = "allow"
    elif isinstance(require, dict):
        for key, verdict in (("never", "allow"), ("always", "ask")):
            if key in require:
                out.rules.update({f"{label}.{n}": verdict for n in _names(require[key], f"{param}.require_approval")})
        approval = "ask" if "never" in require else "allow"
    elif require != "always":
        raise bad_request("require_approval must be always, never, or {never|always: {tool_names}}",
                          f"{param}.require_approval")
    try:
        out.servers.append(MCPServerConfig(
            label, url=url, headers={str(k): str(v) for k, v in (tool.get("headers") or {}).items()},
            allowed_tools=tuple(allowed) if isinstance(allowed, list) else None, approval=approval))
    except UserError as exc:
        raise bad_request(str(exc), param) from exc


def take_items(items: Any, out: MCPRequest) -> Any:
    """The input without MCP items; approval responses become decisions."""
    if not isinstance(items, list):
        return items
    rest = []
    for i, item in enumerate(items):
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "mcp_approval_response":
            rid, approve = item.get("approval_request_id"), item.get("approve")
            if not isinstance(rid, str) or not isinstance(approve, bool):
                raise bad_request("mcp_approval_response needs approval_request_id and approve", f"input[{i}]")
            reason = item.get("reason")
            out.decisions.append(Decision(rid, approve, reason if isinstance(reason, str) else None, by="client"))
        elif kind not in ITEM_TYPES:
            rest.append(item)
    return rest


def split_body(body: dict[str, Any], out: MCPRequest) -> tuple[dict[str, Any], bool]:
    """The request without its MCP tools and items (those go to ``out``), and whether its input held only
    approval responses (a resumed run with nothing new to say)."""
    tools = body.get("tools")
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            if isinstance(tool, dict) and tool.get("type") == "mcp":
                parse_tool(tool, f"tools[{i}]", out)
        tools = [t for t in tools if not (isinstance(t, dict) and t.get("type") == "mcp")]
    items = take_items(body.get("input"), out)
    only_decisions = items == [] and bool(out.decisions)
    placeholder = [{"type": "message", "role": "user", "content": "-"}]  # validated, then not used
    return {**body, "tools": tools, "input": placeholder if only_decisions else items}, only_decisions


def call_item(label: str, name: str, arguments: str, call_id: str, output: str | None = None,
              error: str | None = None, *, pending: bool = False) -> dict[str, Any]:
    if pending:
        return {"type": "mcp_approval_request", "id": call_id, "server_label": label, "name": name,
                "arguments": arguments}
    return {"type": "mcp_call", "id": f"mcp_{uuid.uuid4().hex}", "server_label": label, "name": name,
            "arguments": arguments, "output": output, "error": error, "status": "completed"}
