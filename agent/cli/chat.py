"""``ossagent chat``: an interactive conversation that streams the agent's events.

Commands: /reasoning (show or collapse the chain of thought), /effort low|medium|high, /save FILE,
/reset, /exit.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

from ossagent.agent.choices import EFFORTS, ReasoningEffort
from ossagent.agent.cli.render import EventPrinter
from ossagent.agent.transcript import Transcript

HELP = "/reasoning  show or collapse reasoning\n/effort low|medium|high\n/save FILE  save the transcript\n" \
       "/reset  start over\n/exit"


def chat(agent: Any, console: Console, *, show_reasoning: bool = False, save: str | None = None,
         read: Any = None) -> int:
    """Run the REPL; ``read`` replaces ``console.input`` (tests)."""
    read = read or (lambda: console.input("[bold]you> [/bold]"))
    transcript: Transcript | None = None
    effort: ReasoningEffort | None = None
    console.print("[dim]ossagent chat - /help for commands, /exit to leave[/dim]")
    while True:
        try:
            line = read()
        except (EOFError, KeyboardInterrupt):
            break
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            cmd, _, arg = line.partition(" ")
            if cmd in ("/exit", "/quit"):
                break
            if cmd == "/reasoning":
                show_reasoning = not show_reasoning
                console.print(f"[dim]reasoning {'shown' if show_reasoning else 'collapsed'}[/dim]")
            elif cmd == "/effort" and arg in EFFORTS:
                effort = ReasoningEffort(arg)
                console.print(f"[dim]reasoning effort: {arg}[/dim]")
            elif cmd == "/save" and arg and transcript is not None:
                console.print(f"[dim]saved to {transcript.save(arg)}[/dim]")
            elif cmd == "/reset":
                transcript = None
                console.print("[dim]new conversation[/dim]")
            else:
                console.print(HELP)
            continue
        printer = EventPrinter(console, show_reasoning=show_reasoning)
        stream = agent.stream(line, transcript=transcript, reasoning=effort)
        try:
            for ev in stream:
                printer.on(ev)
        except KeyboardInterrupt:
            stream.close()
            console.print("\n[yellow]interrupted[/yellow]")
        transcript = stream.transcript
        console.print()
    if save and transcript is not None:
        transcript.save(save)
    return 0
