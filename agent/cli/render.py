"""How the CLI shows an event stream: reasoning dimmed (or collapsed to a counter), tool calls and results
marked, the final answer streamed as plain text."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from ossagent.agent import events


class EventPrinter:
    """Streams events to a console; ``show_reasoning`` False collapses the CoT to one dim line per turn."""

    def __init__(self, console: Console, *, show_reasoning: bool = True, show_final: bool = True,
                 result_chars: int = 600) -> None:
        self.c = console
        self.show_reasoning = show_reasoning
        self.show_final = show_final
        self.result_chars = result_chars
        self.section: str | None = None
        self.reasoning_chars = 0

    def _enter(self, section: str) -> None:
        if self.section == section:
            return
        if self.section == "reasoning-collapsed":
            self.c.print(Text(f"[thought for {self.reasoning_chars} characters; /reasoning shows it]",
                              style="dim italic"))
        elif self.section is not None:
            self.c.print()
        self.section = section
        self.reasoning_chars = 0
        if section == "reasoning":
            self.c.print(Text("thinking: ", style="dim bold"), end="")
        elif section == "preamble":
            self.c.print(Text("> ", style="bold"), end="")

    def on(self, ev: events.Event) -> None:
        if isinstance(ev, events.ReasoningDelta):
            if self.show_reasoning:
                self._enter("reasoning")
                self.c.print(Text(ev.text, style="dim"), end="")
            else:
                self._enter("reasoning-collapsed")
                self.reasoning_chars += len(ev.text)
        elif isinstance(ev, events.PreambleDelta):
            self._enter("preamble")
            self.c.print(Text(ev.text), end="")
        elif isinstance(ev, events.ToolCallStarted):
            self._enter("tool")
            self.c.print(Text(f"-> {ev.recipient} ", style="cyan bold"), end="")
        elif isinstance(ev, events.ToolCall):
            self.c.print(Text(_clip(ev.arguments, self.result_chars), style="cyan"), end="")
        elif isinstance(ev, events.ToolResultEvent):
            self._enter("result")
            style = "red" if ev.is_error else "green"
            self.c.print(Text(f"<- {ev.recipient}: ", style=style + " bold"), end="")
            self.c.print(Text(_clip(ev.text, self.result_chars), style=style), end="")
        elif isinstance(ev, events.FinalDelta):
            if self.show_final:
                self._enter("final")
                self.c.print(Text(ev.text), end="")
        elif isinstance(ev, events.Compacted):
            self._enter("compacted")
            self.c.print(Text(f"[context compacted ({ev.step}): {ev.tokens_before} -> {ev.tokens_after} prompt tokens"
                              f" of a {ev.window}-token window]", style="yellow"), end="")
        elif isinstance(ev, events.ErrorEvent):
            self._enter("error")
            self.c.print(Text(f"[{ev.kind}] {ev.message}", style="red"), end="")
        elif isinstance(ev, events.Usage):
            self._enter("usage")
            self.c.print(Text(f"[{ev.turns} turn(s), {ev.prompt_tokens} prompt tokens ({ev.cached_tokens} reused),"
                              f" {ev.completion_tokens} generated]", style="dim"), end="")
        elif isinstance(ev, events.Stopped):
            self._enter("stopped")
            self.section = None
            if ev.reason != "final":
                self.c.print(Text(f"[stopped: {ev.reason}]", style="yellow"))


def _clip(text: Any, limit: int) -> str:
    s = str(text)
    return s if len(s) <= limit else s[:limit] + f"... [{len(s) - limit} more characters]"
