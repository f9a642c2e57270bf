"""The settings of page actions (:mod:`.actions`) and the side effects an approval policy can hold; a module of
its own so that the live tab and the actions read them without importing each other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ossagent.tools.base import UserError

DIALOGS = ("accept", "dismiss")


@dataclass(frozen=True)
class SideEffect:
    """An action's effect outside the page: ``submit`` (a form), ``request`` (a script's non-GET request),
    ``download`` or ``upload``."""

    kind: str
    description: str
    url: str = ""


@dataclass
class ActionConfig:
    """How page actions behave; ``workspace`` is where files go and come from (none: no files at all)."""

    workspace: str | Path | None = None
    allow_passwords: bool = False
    dialogs: str = "accept"  # alert/confirm/prompt: accept (prompt: its default text) or dismiss
    approve: Callable[[SideEffect], bool] | None = field(default=None, compare=False)
    action_timeout_s: float = 10.0  # for the element to be ready (visible, enabled, not covered)
    max_wait_s: float = 30.0  # the longest wait_for
    record: str | None = None  # record the session's actions to this file (relative to the workspace)
    replay: str | None = None  # serve actions from this recording instead of Chromium

    def __post_init__(self) -> None:
        if self.dialogs not in DIALOGS:
            raise UserError(f"dialogs must be one of {DIALOGS}, not {self.dialogs!r}")
        if self.record and self.replay:
            raise UserError("record or replay a session, not both")
        if (self.record or self.replay) and self.workspace is None:
            raise UserError("recording and replaying need a workspace for the file")
