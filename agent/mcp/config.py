"""How to reach an MCP server: parsed from ``--mcp`` specs, a JSON config file, or built in Python."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ossagent.tools.base import UserError

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,47}$")
# namespaces that already mean something to gpt-oss or to ossagent
RESERVED = frozenset({"functions", "browser", "python", "page", "files", "container", "assistant", "user", "system",
                      "developer", "all", "tool"})
POLICIES = ("allow", "ask", "deny")


@dataclass(frozen=True)
class MCPServerConfig:
    """One MCP server. Exactly one of ``command`` (stdio) and ``url`` (streamable HTTP).

    trusted: run a stdio server as a plain child process instead of under the sandbox.
    network: let a sandboxed stdio server use the host's network (off by default).
    read_only: more host paths a sandboxed server may read (the command's own files are added).
    allowed_tools: only these of the server's tools are shown (None: all).
    approval: the default approval of this server's tools (``ask`` unless configured).
    """

    name: str
    command: tuple[str, ...] = ()
    url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    trusted: bool = False
    network: bool = False
    read_only: tuple[str, ...] = ()
    allowed_tools: tuple[str, ...] | None = None
    approval: str = "ask"
    timeout: float = 60.0  # seconds per call
    max_output: int = 20_000  # characters of a result the model sees (head and tail kept)

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name) or self.name in RESERVED:
            raise UserError(f"MCP server name {self.name!r}: use letters, digits, _ or - (it becomes the tool "
                            f"namespace the model writes), and none of {sorted(RESERVED)}")
        if bool(self.command) == bool(self.url):
            raise UserError(f"MCP server {self.name}: give either a command (stdio) or a url (streamable HTTP)")
        if self.url and (not self.url.startswith(("http://", "https://")) or not urlsplit(self.url).hostname):
            raise UserError(f"MCP server {self.name}: url must be an http:// or https:// address, not {self.url!r}")
        if self.approval not in POLICIES:
            raise UserError(f"MCP server {self.name}: approval must be one of {POLICIES}, not {self.approval!r}")
        if self.timeout <= 0:
            raise UserError(f"MCP server {self.name}: timeout must be positive")

    @property
    def transport(self) -> str:
        return "stdio" if self.command else "http"


def parse_spec(spec: str, **options: Any) -> MCPServerConfig:
    """``name=command args`` (stdio) or ``name=URL`` (streamable HTTP), as ``--mcp`` takes them."""
    name, sep, rest = spec.partition("=")
    if not sep or not rest.strip():
        raise UserError(f"--mcp {spec!r}: write NAME=COMMAND ARGS or NAME=URL")
    rest = rest.strip()
    if rest.startswith(("http://", "https://")):
        return MCPServerConfig(name.strip(), url=rest, **options)
    try:
        argv = tuple(shlex.split(rest))
    except ValueError as exc:
        raise UserError(f"--mcp {spec!r}: {exc}") from exc
    return MCPServerConfig(name.strip(), command=argv, **options)


_KEYS = {"command", "args", "url", "env", "headers", "trusted", "network", "read_only", "allowed_tools", "approval",
         "timeout", "max_output"}


def load_config(path: str | Path) -> list[MCPServerConfig]:
    """A JSON file ``{"mcpServers": {NAME: {"command": ..., "args": [...], "env": {...}} | {"url": ...}}}``
    (the layout other MCP clients use), plus ossagent's keys: trusted, network, read_only, allowed_tools,
    approval, timeout, max_output."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"MCP config {p}: {exc}") from exc
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise UserError(f"MCP config {p}: expected an object with \"mcpServers\": {{name: {{...}}}}")
    out = []
    for name, entry in servers.items():
        if not isinstance(entry, dict) or set(entry) - _KEYS:
            raise UserError(f"MCP config {p}: server {name!r} must be an object with keys from {sorted(_KEYS)}")
        command = entry.get("command")
        argv = ((command,) if isinstance(command, str) else tuple(command or ())) + tuple(entry.get("args") or ())
        allowed = entry.get("allowed_tools")
        out.append(MCPServerConfig(
            name, command=argv, url=entry.get("url"), env=dict(entry.get("env") or {}),
            headers=dict(entry.get("headers") or {}), trusted=bool(entry.get("trusted", False)),
            network=bool(entry.get("network", False)), read_only=tuple(entry.get("read_only") or ()),
            allowed_tools=tuple(allowed) if allowed is not None else None,
            approval=entry.get("approval", "ask"), timeout=float(entry.get("timeout", 60.0)),
            max_output=int(entry.get("max_output", 20_000)),
        ))
    return out
