"""``ossagent chat``: an interactive conversation that streams the agent's events.

Commands: /reasoning (show or collapse the chain of thought), /effort low|medium|high, /save FILE,
/reset, /exit. At a terminal, lines are edited with readline (arrows, Ctrl-R) and the history is kept
in ``<ossagent home>/chat_history`` (the last 1,000 lines).

With ``--session NAME`` the conversation is a named session (agent/sessions.py): it resumes where the session
left off, each turn is saved when it ends, and each turn starts from the session as stored, so turns another
process added meanwhile are part of it. /reset clears the session.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from ossagent.agent.choices import EFFORTS, ReasoningEffort
from ossagent.agent.cli.render import EventPrinter
from ossagent.agent.transcript import Transcript

if TYPE_CHECKING:
    from ossagent.agent.sessions import Session

HELP = "/reasoning  show or collapse reasoning\n/effort low|medium|high\n/save FILE  save the transcript\n" \
       "/reset  start over (with --session: clears the session)\n/exit"


def line_editing(history: Path | None) -> Any:
    """Turn on readline for ``input()`` (when the platform has it); returns a function that saves the history."""
    try:
        import readline
    except ImportError:  # Windows without pyreadline: plain input
        return lambda: None
    if history is not None and history.is_file():
        with contextlib.suppress(OSError):
            readline.read_history_file(history)
    readline.set_history_length(1000)

    def save() -> None:
        if history is not None:
            with contextlib.suppress(OSError):
                history.parent.mkdir(parents=True, exist_ok=True)
                readline.write_history_file(history)

    return save


def chat(agent: Any, console: Console, *, show_reasoning: bool = False, save: str | None = None,
         read: Any = None, history: Path | None = None, session: Session | None = None) -> int:
    """Run the REPL; ``read`` replaces ``console.input`` (tests); ``session``: continue and save it."""
    save_history = line_editing(history) if read is None else (lambda: None)
    try:
        return _repl(agent, console, show_reasoning, save, read or (lambda: console.input("[bold]you> [/bold]")),
                     session)
    finally:
        save_history()


def _resume(session: Session, console: Console) -> Transcript:
    transcript = session.transcript()
    turns = sum(m.role == "user" for m in transcript)
    console.print(f"[dim]session {session.name}: " + (f"{turns} earlier turn{'s' * (turns != 1)}, resumed"
                                                       if turns else "new") + "[/dim]", highlight=False)
    return transcript


def _repl(agent: Any, console: Console, show_reasoning: bool, save: str | None, read: Any,
          session: Session | None = None) -> int:
    effort: ReasoningEffort | None = None
    console.print("[dim]ossagent chat - /help for commands, /exit to leave[/dim]")
    transcript = _resume(session, console) if session is not None else None
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
                if session is not None:
                    session.clear()
                console.print("[dim]new conversation" + (f" (session {session.name} cleared)" if session is not None else "")
                              + "[/dim]", highlight=False)
            else:
                console.print(HELP)
            continue
        printer = EventPrinter(console, show_reasoning=show_reasoning)
        if session is not None:
            transcript = session.transcript()  # with any turn another process added
        stream = agent.stream(line, transcript=transcript, reasoning=effort)
        try:
            for ev in stream:
                printer.on(ev)
        except KeyboardInterrupt:
            stream.close()
            console.print("\n[yellow]interrupted[/yellow]")
        finally:
            if session is not None:
                session.record(stream.transcript)
        transcript = stream.transcript
        console.print()
    if save and transcript is not None:
        transcript.save(save)
    return 0
