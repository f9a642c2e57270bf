"""Named sessions: a conversation kept under a name and continued later, from this process or another.

Sessions live in the same SQLite file as the server's stored responses (``<ossagent home>/responses.sqlite3``),
in a ``sessions`` table (name, created, updated, the transcript's settings) beside ``responses``, with their
messages in ``session_messages`` (one row per message, in order). Each turn's new messages are appended, so two
processes using one session both keep their turns (each sees the other's at its next turn)::

    from ossagent.agent.sessions import Sessions

    with Sessions() as sessions:              # or Sessions(path) for another file
        session = sessions.open("trip")       # created when new
        result = session.run(agent, "Plan a day in Lyon")
        result = session.run(agent, "Now a rainy one")    # continues the conversation
        session.transcript()                  # everything so far, as a Transcript

``session.record(transcript)`` keeps a run made by hand (``agent.stream(task, transcript=session.transcript())``).
``ossagent chat --session NAME`` resumes the session and saves each turn. A name is 1 to 64 letters, digits,
``.``, ``_`` or ``-`` and starts with a letter or digit; anything else is a :class:`UserError`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ossagent.agent.server.store import FILE_NAME, StoreFile
from ossagent.agent.settings import Settings
from ossagent.agent.transcript import Msg, Transcript
from ossagent.tools.base import UserError

if TYPE_CHECKING:
    from ossagent.agent.loop import Agent, RunResult

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    settings TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS session_messages (
    name TEXT NOT NULL REFERENCES sessions(name) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (name, seq)
);
"""
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_name(name: str) -> str:
    """``name`` when it is a valid session name, else a :class:`UserError` saying what is allowed."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise UserError(f"session name {name!r} is not valid: use 1 to 64 letters, digits, '.', '_' or '-', "
                        "starting with a letter or digit")
    return name


def default_path(settings: Settings | None = None) -> Path:
    """The store under the ossagent home (``OSSAGENT_HOME``, default ``~/.cache/ossagent``)."""
    return (settings or Settings.from_env()).home / FILE_NAME


class Sessions(StoreFile):
    """The named sessions of one store file (``path``; default :func:`default_path`)."""

    def __init__(self, path: Path | str | None = None) -> None:
        super().__init__(Path(path) if path is not None else default_path(), SCHEMA)

    def open(self, name: str, *, create: bool = True) -> Session:
        """The session ``name``; a new, empty one when it does not exist (unless ``create`` is False: then a
        :class:`UserError`)."""
        check_name(name)
        now = time.time()
        with self._lock, self._db:
            found = self._db.execute("SELECT 1 FROM sessions WHERE name = ?", (name,)).fetchone()
            if found is None and not create:
                raise UserError(f"no session named {name!r} (sessions: {', '.join(self._names()) or 'none'})")
            self._db.execute("INSERT OR IGNORE INTO sessions (name, created, updated) VALUES (?, ?, ?)",
                             (name, now, now))
        return Session(self, name)

    def _names(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT name FROM sessions ORDER BY updated DESC")]

    def names(self) -> list[str]:
        """Every session's name, the most recently used first."""
        with self._lock:
            return self._names()

    def delete(self, name: str) -> bool:
        """Forget a session and its messages; False when there was none."""
        check_name(name)
        with self._lock, self._db:
            self._db.execute("DELETE FROM session_messages WHERE name = ?", (name,))
            return self._db.execute("DELETE FROM sessions WHERE name = ?", (name,)).rowcount > 0

    def _clear(self, name: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM session_messages WHERE name = ?", (name,))
            self._db.execute("UPDATE sessions SET updated = ?, settings = '{}' WHERE name = ?", (time.time(), name))

    def _load(self, name: str) -> Transcript:
        with self._lock:
            row = self._db.execute("SELECT settings FROM sessions WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise UserError(f"session {name!r} was deleted")
            rows = self._db.execute("SELECT message FROM session_messages WHERE name = ? ORDER BY seq",
                                    (name,)).fetchall()
        return Transcript([Msg.from_dict(json.loads(r[0])) for r in rows], json.loads(row[0]))

    def _append(self, name: str, msgs: list[Msg], settings: dict[str, Any] | None) -> None:
        with self._lock, self._db:  # one transaction: another process's turn goes wholly before or after
            if self._db.execute("SELECT 1 FROM sessions WHERE name = ?", (name,)).fetchone() is None:
                raise UserError(f"session {name!r} was deleted")
            (last,) = self._db.execute("SELECT COALESCE(MAX(seq), -1) FROM session_messages WHERE name = ?",
                                       (name,)).fetchone()
            self._db.executemany("INSERT INTO session_messages (name, seq, message) VALUES (?, ?, ?)",
                                 [(name, last + 1 + i, json.dumps(m.to_dict(), ensure_ascii=False))
                                  for i, m in enumerate(msgs)])
            self._db.execute("UPDATE sessions SET updated = ?, settings = COALESCE(?, settings) WHERE name = ?",
                             (time.time(), None if settings is None else json.dumps(settings, ensure_ascii=False),
                              name))

    def __enter__(self) -> Sessions:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Session:
    """One named conversation in a :class:`Sessions` store."""

    def __init__(self, store: Sessions, name: str) -> None:
        self.store = store
        self.name = name
        self._handed = 0  # messages in the transcript last handed out (where a run continuing it began)

    def transcript(self) -> Transcript:
        """The conversation so far (every process's turns), read from the store now."""
        transcript = self.store._load(self.name)
        self._handed = len(transcript)
        return transcript

    def append(self, msgs: Iterable[Msg], settings: dict[str, Any] | None = None) -> None:
        """Add messages at the end of the session (after any that another process added meanwhile)."""
        batch = list(msgs)
        if batch or settings is not None:
            self.store._append(self.name, batch, settings)

    def record(self, transcript: Transcript, start: int | None = None) -> None:
        """Keep a run's new messages: those of ``transcript`` from index ``start`` on (default: the length of the
        transcript :meth:`transcript` last handed out, which the run continued)."""
        begin = self._handed if start is None else start
        self.append(transcript.messages[begin:], transcript.settings)
        self._handed = len(transcript)

    def clear(self) -> None:
        """Drop the session's messages (the name stays)."""
        self.store._clear(self.name)
        self._handed = 0

    def run(self, agent: Agent, task: str, **kwargs: Any) -> RunResult:
        """``agent.run(task)`` continuing this session; the turn is saved when it ends (whatever its stop)."""
        history = self.transcript()
        stream = agent.stream(task, transcript=history, **kwargs)
        try:
            for _ in stream:
                pass
        finally:
            self.record(stream.transcript, start=len(history))
        return stream.result()

    def __repr__(self) -> str:
        return f"Session({self.name!r})"
