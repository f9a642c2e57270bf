"""Tool runners for producing gold transcripts.

:class:`SimToolbox` stands in for the real tools until they are available to this script: python code really
runs (in-process, in a scratch folder holding the task's files; the code is our own generated code), the
browser is a small re-implementation of the reference browser's text layout over the task's pages, and
functions call the task's Python implementation. :func:`run_gold` drives a task's gold policy against any
toolbox with ``call(recipient, content) -> str``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from scripts.demo.tasks import Step, Task


class Toolbox(Protocol):
    def call(self, recipient: str, content: str) -> str: ...

    def close(self) -> None: ...


@dataclass
class Msg:
    """A harmony message, independent of any renderer."""

    role: str  # system | developer | user | assistant | tool
    text: str
    channel: str | None = None
    recipient: str | None = None
    content_type: str | None = None
    author: str | None = None  # tool messages: the tool's name (e.g. "python", "functions.get_weather")


def _wrap(text: str) -> list[str]:
    lines: list[str] = []
    for para in text.split("\n"):
        lines.extend(textwrap.wrap(para, 80) or [""])
    return lines


def _view(cursor: int, title: str, url: str, lines: list[str]) -> str:
    head = f"[{cursor}] {title}" + (f" ({url})" if url else "")
    body = "\n".join(f"L{i}: {ln}" for i, ln in enumerate(lines))
    return f"{head}\n**viewing lines [0 - {len(lines) - 1}] of {len(lines) - 1}**\n\n{body}"


class SimBrowser:
    def __init__(self, pages: dict[str, tuple[str, str]]) -> None:
        self.pages = pages
        self.stack: list[tuple[str, str, list[str], dict[int, str]]] = []  # title, url, lines, links

    def _push(self, title: str, url: str, lines: list[str], links: dict[int, str]) -> str:
        self.stack.append((title, url, lines, links))
        return _view(len(self.stack) - 1, title, url, lines)

    def call(self, fn: str, args: dict) -> str:
        if fn == "search":
            q = str(args.get("query", "")).lower().split()
            scored = sorted(
                self.pages.items(),
                key=lambda kv: (-sum(w in (kv[1][0] + " " + kv[1][1]).lower() for w in q), kv[0]),
            )
            lines, links = [], {}
            for i, (url, (title, text)) in enumerate(scored):
                links[i] = url
                lines.append(f"【{i}†{title}】 {text.split(chr(10))[0][:60]}")
            return self._push(f"Search results for `{args.get('query', '')}`", "", lines, links)
        if fn == "open":
            links = self.stack[-1][3] if self.stack else {}
            url = links.get(int(args.get("id", -1)))
            if url is None:
                return "Invalid link id."
            title, text = self.pages[url]
            return self._push(title, url, _wrap(text), {})
        if fn == "find":
            title, url, lines, _ = self.stack[-1]
            pat = str(args.get("pattern", "")).lower()
            out = []
            for i, ln in enumerate(lines):
                if pat in ln.lower():
                    out += [f"【{len(out) // 2}†match at L{i}】", ln]
            if not out:
                return f"No `find` results for pattern: `{pat}`"
            return self._push(f"Find results for text: `{pat}` in `{title}`", f"{url}/find?pattern={pat}", out, {})
        return f"Unknown browser function {fn}."


class SimToolbox:
    def __init__(self, task: Task) -> None:
        self.task = task
        self._dir = tempfile.TemporaryDirectory(prefix="ossagent-demo-")
        for name, text in task.files.items():
            Path(self._dir.name, name).write_text(text)
        self._globals: dict = {}
        self.browser = SimBrowser(task.pages)

    def _python(self, code: str) -> str:
        buf = io.StringIO()
        old = os.getcwd()
        try:
            os.chdir(self._dir.name)
            with contextlib.redirect_stdout(buf):
                # our own generated code only (gold policy); /mnt/data is where the real tool mounts the workspace
                exec(code.replace("/mnt/data", self._dir.name), self._globals)
        except Exception as e:
            buf.write(f"{type(e).__name__}: {e}\n")
        finally:
            os.chdir(old)
        return buf.getvalue()

    def call(self, recipient: str, content: str) -> str:
        if recipient == "python":
            return self._python(content)
        if recipient.startswith("browser."):
            return self.browser.call(recipient.split(".", 1)[1], json.loads(content))
        if recipient.startswith("functions."):
            name = recipient.split(".", 1)[1]
            for f in self.task.functions:
                if f.name == name:
                    return f.impl(json.loads(content))
        return f"Unknown tool {recipient}."

    def close(self) -> None:
        self._dir.cleanup()


def run_gold(task: Task, toolbox: Toolbox) -> list[Msg]:
    """The assistant and tool messages of a correct run (system/developer/user are added by the renderer)."""
    out: list[Msg] = []
    obs: list[str] = []
    for step in task.steps:
        text = step.text(obs) if callable(step.text) else step.text
        out.append(_assistant(step, text))
        if step.recipient:
            result = toolbox.call(step.recipient, text)
            obs.append(result)
            out.append(Msg("tool", result, channel=step.channel, recipient="assistant", author=step.recipient))
    return out


def _assistant(step: Step, text: str) -> Msg:
    return Msg("assistant", text, channel=step.channel, recipient=step.recipient, content_type=step.content_type)
