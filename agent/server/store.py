"""Stored Responses: each ``response`` object and the conversation behind it, in SQLite.

``POST /v1/responses`` with ``store`` (true unless the request says false, as OpenAI's default) keeps the
answer, so ``GET /v1/responses/{id}`` returns it, ``DELETE`` removes it, and ``previous_response_id`` finds
the conversation after a restart. ``ossagent serve`` keeps the file at ``<ossagent home>/responses.sqlite3``
(named sessions live in the same file: agent/sessions.py); without a path (tests, embedding) the store lives in
memory. At most ``max_rows`` responses are kept, the oldest go first.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ossagent.agent.transcript import Msg, Transcript

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    response TEXT NOT NULL,
    transcript TEXT
)
"""


FILE_NAME = "responses.sqlite3"  # under the ossagent home: stored responses and named sessions (agent/sessions.py)


class StoreFile:
    """One SQLite connection to the store's file, shared by threads under a lock; WAL, so several processes (a
    server, chats) read and write the same file. ``schema``: the tables this user needs (created if missing)."""

    def __init__(self, path: Path | None, schema: str) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path) if path is not None else ":memory:", check_same_thread=False,
                                   timeout=30.0)  # another process writing: wait for it
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL" if path is not None else "PRAGMA journal_mode=MEMORY")
            self._db.executescript(schema)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class ResponseStore(StoreFile):
    def __init__(self, path: Path | None = None, max_rows: int = 10_000) -> None:
        super().__init__(path, SCHEMA)
        self.max_rows = max_rows

    def put(self, response: dict[str, Any], transcript: Transcript | None = None) -> None:
        """Insert or replace a response (a background one is written again as its status changes)."""
        conv = None
        if transcript is not None:
            conv = json.dumps({"settings": transcript.settings, "messages": [m.to_dict() for m in transcript]},
                              ensure_ascii=False)
        with self._lock, self._db:
            old = self._db.execute("SELECT transcript FROM responses WHERE id = ?", (response["id"],)).fetchone()
            if conv is None and old is not None:
                conv = old[0]
            self._db.execute("INSERT OR REPLACE INTO responses (id, created, response, transcript) VALUES (?,?,?,?)",
                             (response["id"], time.time(), json.dumps(response, ensure_ascii=False), conv))
            self._db.execute("DELETE FROM responses WHERE id NOT IN (SELECT id FROM responses ORDER BY created DESC "
                             "LIMIT ?)", (self.max_rows,))

    def get(self, response_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE id = ?", (response_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def transcript(self, response_id: str) -> Transcript | None:
        with self._lock:
            row = self._db.execute("SELECT transcript FROM responses WHERE id = ?", (response_id,)).fetchone()
        if not row or row[0] is None:
            return None
        data = json.loads(row[0])
        return Transcript([Msg.from_dict(m) for m in data["messages"]], data.get("settings") or {})

    def delete(self, response_id: str) -> bool:
        with self._lock, self._db:
            return self._db.execute("DELETE FROM responses WHERE id = ?", (response_id,)).rowcount > 0

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
