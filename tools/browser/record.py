"""Record a session's page actions to a file, and replay them offline.

A recording is JSON Lines: a header line, then one line per action with its name, its arguments and the
outcome the live tab gave (the page snapshot, what happened, any error, downloaded bytes), and one line per
page the session read with ``search`` or ``open`` (keyed by what was asked). A replay serves
those outcomes in order without Chromium or network, so a scripted task reruns deterministically: the same
actions give the same page texts, cursors and ids. An action that differs from the recorded one stops the
replay with an error saying where it diverged.

The recording is a workspace file, which sandboxed code can change: it is written and read through
:class:`~ossagent.tools.confined.Workspace` (never through a symbolic link), and what it says is not trusted (a
replayed download is written only under ``downloads/``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from ossagent.tools.base import ModelError, ToolFailure, UserError
from ossagent.tools.confined import Workspace, explain

FORMAT = "ossagent-browser-actions"
VERSION = 1
MAX_BYTES = 1 << 30  # the largest recording a replay reads


def _trouble(exc: OSError | ModelError, path: str) -> str:
    return str((explain(exc, path) if isinstance(exc, OSError) else exc).args[0])


class Recorder:
    """Appends each action and its outcome to ``path`` (flushed per action, so a crash keeps what was done)."""

    def __init__(self, workspace: Workspace, path: str) -> None:
        try:
            fd = workspace.create(path)
        except (OSError, ModelError) as e:
            raise UserError(f"cannot write the recording {path} in the workspace: {_trouble(e, path)}") from e
        self.path = path
        self._file = os.fdopen(fd, "w", encoding="utf-8")
        self._write({"format": FORMAT, "version": VERSION})

    def _write(self, entry: dict[str, Any]) -> None:
        self._file.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
        self._file.flush()

    def add(self, action: str, args: dict[str, Any], outcome: dict[str, Any]) -> None:
        self._write({"action": action, "args": args, "outcome": outcome})

    def add_page(self, key: str, page: dict[str, Any]) -> None:
        self._write({"page": key, "contents": page})

    def close(self) -> None:
        self._file.close()


class Replayer:
    """Serves the outcomes of a recording, checking that each action is the one recorded."""

    def __init__(self, workspace: Workspace, path: str) -> None:
        try:
            data, size = workspace.read_bytes(path, MAX_BYTES + 1)
        except (OSError, ModelError) as e:
            raise UserError(f"cannot read the recording {path} in the workspace: {_trouble(e, path)}") from e
        if size > MAX_BYTES:
            raise UserError(f"the recording {path} is larger than {MAX_BYTES:,} bytes")
        try:
            lines = data.decode("utf-8").splitlines()
            header = json.loads(lines[0]) if lines else {}
            entries = [json.loads(line) for line in lines[1:] if line.strip()]
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"cannot read the recording {path}: {e}") from e
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise UserError(f"{path} is not a browser actions recording (version {VERSION})")
        self.entries = [e for e in entries if "action" in e]
        self.pages: dict[str, dict[str, Any]] = {e["page"]: e["contents"] for e in entries if "page" in e}
        self.path = path
        self.step = 0

    def next(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        if self.step >= len(self.entries):
            raise ToolFailure(f"The replay has no more recorded actions (it had {len(self.entries)}); "
                              f"{action} was not recorded.", hint="Record the session again.")
        entry = self.entries[self.step]
        if entry["action"] != action or entry["args"] != args:
            raise ToolFailure(
                f"The replay diverged at step {self.step + 1}: recorded {entry['action']}"
                f"({json.dumps(entry['args'], sort_keys=True)}), asked {action}({json.dumps(args, sort_keys=True)}).",
                hint="Replay the same actions in the same order, or record the session again.")
        self.step += 1
        outcome: dict[str, Any] = entry["outcome"]
        return outcome

    def page(self, key: str) -> dict[str, Any]:
        if key not in self.pages:
            raise ToolFailure(f"The replay has no recorded page for `{key}`.",
                              hint="Replay the same session, or record it again.")
        return self.pages[key]

    def close(self) -> None:
        pass
