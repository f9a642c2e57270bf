"""An MCP server as a harmony tool namespace: ``NAME.TOOL`` calls with JSON arguments.

The namespace is the server's configured name, so tools with the same name on two servers never collide.
Tool names become harmony-safe function names (``[A-Za-z0-9_-]``, made unique). Input schemas are checked
and compiled by :mod:`ossagent.agent.schema` (leniently: what the decoder cannot enforce is listed in
:attr:`MCPTool.notes` and validated after decoding); a schema that is not valid JSON Schema leaves that
tool out (also noted). Results: text as is, structured content as JSON when there is no text, images and
audio as a short note, resource links and embedded resources by their URI and text; a tool error is a tool
message marked as an error. The server is connected when the tool is first described (the agent is built)
and closed with the agent; one that dies is restarted once and the model is told.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ossagent.agent.mcp.client import Connection, ServerDied
from ossagent.agent.mcp.config import MCPServerConfig
from ossagent.agent.mcp.text import inert, inert_schema
from ossagent.agent.schema import CompiledSchema, compile_schema, loads_strict, validation_errors
from ossagent.tools.base import (
    FunctionDescription,
    ModelError,
    Tool,
    ToolDescription,
    ToolFailure,
    ToolResult,
    UserError,
)

EMPTY = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class _Function:
    remote: str  # the server's name for the tool
    description: FunctionDescription
    compiled: CompiledSchema | None


def inline_refs(schema: dict[str, Any], depth: int = 8) -> dict[str, Any]:
    """``schema`` with local ``#/$defs/NAME`` references replaced by their definitions, so the model sees the
    nested shape (the harmony rendering shows a reference as ``any``); unchanged when a reference is recursive,
    external or unknown."""
    defs = schema.get("$defs") or schema.get("definitions") or {}

    class Unresolved(Exception):
        pass

    def walk(node: Any, level: int) -> Any:
        if isinstance(node, list):
            return [walk(v, level) for v in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if level >= depth or not ref.startswith(("#/$defs/", "#/definitions/")) or name not in defs:
                raise Unresolved(ref)
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {**walk(defs[name], level + 1), **walk(rest, level)}
        return {k: walk(v, level) for k, v in node.items() if k not in ("$defs", "definitions")}

    if not defs:
        return schema
    try:
        out: dict[str, Any] = walk(schema, 0)
        return out
    except Unresolved:
        return schema


def function_name(name: str, taken: set[str]) -> str:
    """A harmony-safe, unique function name for the server's tool ``name``."""
    base = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "tool"
    if not re.match(r"[A-Za-z_]", base):
        base = "_" + base[:63]
    out, n = base, 2
    while out in taken:
        out, n = f"{base[:60]}_{n}", n + 1
    taken.add(out)
    return out


class MCPTool:
    """:class:`~ossagent.tools.base.Tool` for one MCP server."""

    def __init__(self, config: MCPServerConfig, workspace: str | Path = ".") -> None:
        self.config = config
        self.workspace = Path(workspace)
        self.notes: list[str] = []
        self.restarts = 0
        self._conn: Connection | None = None
        self._functions: dict[str, _Function] | None = None
        self._description: ToolDescription | None = None

    @property
    def name(self) -> str:
        return self.config.name

    def default_approval(self, recipient: str, content: str) -> str:
        """The approval this server's calls get when no rule names them (the config's, ``ask`` by default)."""
        return self.config.approval

    def _connect(self) -> Connection:
        if self._conn is None:
            self._conn = Connection(self.config, self.workspace)
        return self._conn

    def _load(self) -> dict[str, _Function]:
        if self._functions is not None:
            return self._functions
        conn = self._connect()
        taken: set[str] = set()
        functions: dict[str, _Function] = {}
        for tool in conn.tools:
            if self.config.allowed_tools is not None and tool.name not in self.config.allowed_tools:
                continue
            fname = function_name(tool.name, taken)
            schema = inline_refs(inert_schema(tool.input_schema or EMPTY))
            compiled = None
            try:
                compiled = compile_schema(schema, where=f"{self.name}.{fname}", lenient=True)
                self.notes += [f"{self.name}.{fname}: {n}" for n in compiled.notes]
            except UserError as exc:
                self.notes.append(f"{self.name}.{fname} left out: {exc}")
                continue
            desc = inert(tool.description or "", limit=2000)
            functions[fname] = _Function(tool.name, FunctionDescription(fname, desc, schema), compiled)
        self._functions = functions
        return functions

    def description(self) -> ToolDescription:
        if self._description is None:
            functions = self._load()
            about = inert(self._connect().instructions or "", limit=2000)
            text = f"Tools of the MCP server `{self.name}`." + (f"\n{about}" if about else "")
            self._description = ToolDescription(self.name, text, tuple(f.description for f in functions.values()))
        return self._description

    def _parse(self, recipient: str, content: str) -> tuple[_Function, dict[str, Any]]:
        functions = self._load()
        fname = recipient.split(".", 1)[1] if recipient.startswith(f"{self.name}.") else ""
        fn = functions.get(fname)
        if fn is None:
            raise ModelError(f"Unknown function `{recipient}`.",
                             hint=f"The {self.name} tool has " + ", ".join(f"{self.name}.{n}" for n in functions)
                             + ".")
        try:
            args = loads_strict(content) if content.strip() else {}
        except ValueError as exc:
            raise ModelError(f"The arguments of {recipient} are not JSON: {exc}.",
                             hint="Send one JSON object that follows the function's parameters.") from None
        if not isinstance(args, dict):
            raise ModelError(f"The arguments of {recipient} must be a JSON object.")
        errors = validation_errors(fn.compiled, args) if fn.compiled is not None else []
        if errors:
            raise ModelError(f"Invalid arguments for {recipient}: " + "; ".join(errors) + ".",
                             hint="Fix them and call again.")
        return fn, args

    def call(self, recipient: str, content: str) -> ToolResult:
        fn, args = self._parse(recipient, content)
        try:
            result = self._connect().call(fn.remote, args)
        except ServerDied as exc:
            return self._restart(recipient, str(exc))
        except TimeoutError as exc:
            raise ToolFailure(f"{recipient}: {exc}.", hint="Try a smaller request, or do without it.") from None
        except Exception as exc:  # a protocol error (unknown tool, bad params) the server reported
            raise ToolFailure(f"The MCP server {self.name} answered {recipient} with an error: {exc}.") from None
        text = render_result(result, self.config.max_output)
        return ToolResult(recipient, text, is_error=bool(result.is_error),
                          metadata={"mcp_server": self.name, "mcp_tool": fn.remote,
                                    **({"fault": "tool"} if result.is_error else {})})

    def _restart(self, recipient: str, why: str) -> ToolResult:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self.restarts >= 1:
            raise ToolFailure(f"{why}. It already restarted once, so it stays down.",
                              hint=f"Do without the {self.name} tools.")
        self.restarts += 1
        try:
            conn = self._connect()
        except UserError as exc:
            raise ToolFailure(f"{why}. Restarting it failed: {exc}.", hint=f"Do without the {self.name} tools.") from None
        known = {t.name for t in conn.tools}
        gone = [f.remote for f in (self._functions or {}).values() if f.remote not in known]
        note = f" These tools are gone now: {', '.join(gone)}." if gone else ""
        raise ToolFailure(f"{why}. The server was restarted; {recipient} did not finish and was not retried.{note}",
                          hint="Call it again if it is safe to repeat.")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def connect(servers: Sequence[MCPServerConfig | MCPTool], workspace: str | Path) -> list[Tool]:
    """MCP servers (configs or ready tools) as tools, connected now (their tools listed); all closed if one
    cannot be."""
    tools = [s if isinstance(s, MCPTool) else MCPTool(s, workspace) for s in servers
             if isinstance(s, MCPServerConfig | MCPTool)]
    if len(tools) != len(servers):
        raise UserError("mcp= takes MCPServerConfig or MCPTool objects (see ossagent.agent.mcp)")
    try:
        for t in tools:
            t.description()
    except BaseException:
        for t in tools:
            t.close()
        raise
    return list(tools)


def render_result(result: Any, limit: int) -> str:
    """A ``CallToolResult`` as the text of a tool message."""
    parts: list[str] = []
    for block in result.content or ():
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind in ("image", "audio"):
            size = len(block.data) * 3 // 4
            parts.append(f"[{kind} {block.mime_type}, {size // 1024 or 1} KB, not shown]")
        elif kind == "resource_link":
            parts.append(f"[resource {block.uri}" + (f" {block.name}" if block.name else "") + "]")
        elif kind == "resource":
            res = block.resource
            text = getattr(res, "text", None)
            parts.append(f"[resource {res.uri}]" + (f"\n{text}" if text is not None else " (binary, not shown)"))
    if result.structured_content is not None and not any(getattr(b, "type", "") == "text" for b in result.content):
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    text = "\n".join(parts) if parts else ("(the tool failed without a message)" if result.is_error else "(no output)")
    if len(text) > limit:
        half = limit // 2
        text = f"{text[:half]}\n[... {len(text) - limit} characters cut ...]\n{text[-half:]}"
    return text
