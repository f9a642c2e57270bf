"""The command line's MCP servers (``--mcp``, ``--mcp-config``) and approvals (``--approve``, ``--allow``...).

``--approve ask`` (the default) asks on the terminal for each call the policy says to ask about: the call and
its arguments, then y (run it), n (refuse it; the model is told), or a (always: run this function from now on,
this session). Without a terminal the run pauses instead (``stop_reason`` ``approval``; save the transcript and
resume it with ``--resume FILE --approve all`` to approve or ``--approve none`` to refuse). ``--approve all``
runs every call, ``--approve none`` refuses every call that would be asked about.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ossagent.agent.approvals import Approver, Decision, PendingCall, Policy
from ossagent.tools.base import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("MCP servers and approvals")
    g.add_argument("--mcp", action="append", default=[], metavar="NAME=COMMAND|URL",
                   help='an MCP server: "name=command args" (stdio, sandboxed) or name=URL (streamable HTTP); '
                        "repeatable")
    g.add_argument("--mcp-config", help='a JSON file {"mcpServers": {name: {command, args, env} | {url}}}')
    g.add_argument("--mcp-trusted", action="store_true", help="run --mcp stdio servers outside the sandbox")
    g.add_argument("--mcp-network", action="store_true", help="let sandboxed --mcp stdio servers use the network")
    g.add_argument("--approve", choices=("ask", "all", "none"), default="ask",
                   help="calls the policy asks about: ask on the terminal (default), run all, or refuse all")
    for verdict in ("allow", "ask", "deny"):
        g.add_argument(f"--{verdict}", action="append", default=[], metavar="TOOL",
                       help=f"{verdict} calls to TOOL (a namespace like python, or one function like page.click)")


def servers(args: argparse.Namespace) -> list[Any]:
    from ossagent.agent.mcp import load_config, parse_spec

    out = load_config(args.mcp_config) if getattr(args, "mcp_config", None) else []
    out += [parse_spec(s, trusted=args.mcp_trusted, network=args.mcp_network) for s in getattr(args, "mcp", [])]
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise UserError(f"two MCP servers share a name: {sorted(n for n in names if names.count(n) > 1)}")
    return out


def policy(args: argparse.Namespace) -> Policy:
    if args.approve == "all":
        return Policy.everything("allow")
    rules = {t: v for v in ("allow", "ask", "deny") for t in getattr(args, v, [])}
    return Policy(rules, ask_as="deny" if args.approve == "none" else "ask")


def terminal_approver(console: Any, read: Callable[[str], str] | None = None) -> Approver | None:
    """Asks y/n/a on the terminal; None when there is no terminal to ask on (the run pauses instead)."""
    if read is None:
        if not sys.stdin.isatty():
            return None
        read = console.input
    always: set[str] = set()

    def ask(call: PendingCall) -> Decision:
        if call.recipient in always:
            return Decision(call.call_id, True, by="user (always)")
        console.print(f"[bold yellow]approve[/bold yellow] {call.recipient} {call.arguments}", highlight=False,
                      markup=True)
        while True:
            answer = read("run it? [y]es / [n]o / [a]lways: ").strip().lower()
            if answer in ("y", "yes"):
                return Decision(call.call_id, True, by="user")
            if answer in ("a", "always"):
                always.add(call.recipient)
                return Decision(call.call_id, True, by="user")
            if answer in ("n", "no"):
                return Decision(call.call_id, False, "the user said no", by="user")

    return ask
