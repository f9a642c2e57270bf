"""Named sessions: the Python API, two processes on one session, the store file shared with the server, and
``ossagent chat --session``."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from ossagent.agent.backends.scripted import ScriptedBackend, Step
from ossagent.agent.cli.chat import chat as chat_repl
from ossagent.agent.loop import Agent
from ossagent.agent.server.store import ResponseStore
from ossagent.agent.sessions import Sessions, check_name, default_path
from ossagent.agent.settings import Settings
from ossagent.agent.transcript import Msg
from ossagent.tools.base import UserError

FINAL = "<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant<|channel|>final<|message|>{}<|return|>"


def test_a_session_continues_across_opens(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    with Sessions(path) as sessions:
        session = sessions.open("trip")
        assert len(session.transcript()) == 0
        result = session.run(Agent(ScriptedBackend([FINAL.format("Lyon.")])), "Where to?")
        assert result.text == "Lyon."
    with Sessions(path) as sessions:  # another open of the file: the same history, and the run continues it
        session = sessions.open("trip", create=False)
        assert [m.text for m in session.transcript()] == ["Where to?", "Easy.", "Lyon."]
        backend = ScriptedBackend([Step(FINAL.format("Rain: museums."), expect=["Where to?", "Lyon.", "Rainy?"])])
        session.run(Agent(backend), "Rainy?")
        backend.assert_consumed()
        assert [m.text for m in session.transcript() if m.role == "user"] == ["Where to?", "Rainy?"]
        assert sessions.names() == ["trip"]


def test_record_keeps_only_the_new_messages(tmp_path: Path) -> None:
    with Sessions(tmp_path / "s.sqlite3") as sessions:
        session = sessions.open("notes")
        session.append([Msg("user", "one"), Msg("assistant", "1", channel="final")])
        agent = Agent(ScriptedBackend([FINAL.format("2")]))
        stream = agent.stream("two", transcript=session.transcript())
        list(stream)
        session.record(stream.transcript)
        session.record(stream.transcript)  # nothing new the second time
        assert [m.text for m in session.transcript()] == ["one", "1", "two", "Easy.", "2"]
        session.clear()
        assert len(session.transcript()) == 0 and sessions.names() == ["notes"]
        assert sessions.delete("notes") and not sessions.delete("notes")
        with pytest.raises(UserError, match="was deleted"):
            session.append([Msg("user", "late")])


CHILD = textwrap.dedent("""
    import sys
    from ossagent.agent.backends.scripted import ScriptedBackend, Step
    from ossagent.agent.loop import Agent
    from ossagent.agent.sessions import Sessions

    FINAL = "<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant<|channel|>final<|message|>{}<|return|>"
    with Sessions(sys.argv[1]) as sessions:
        session = sessions.open("shared")
        backend = ScriptedBackend([Step(FINAL.format("child answer"), expect="parent answer")])
        session.run(Agent(backend), "child question")
        backend.assert_consumed()
""")


def test_two_processes_share_a_session(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    with Sessions(path) as sessions:
        mine = sessions.open("shared")
        mine.run(Agent(ScriptedBackend([FINAL.format("parent answer")])), "parent question")
        subprocess.run([sys.executable, "-c", CHILD, str(path)], check=True, timeout=120)
        backend = ScriptedBackend([Step(FINAL.format("again"), expect=["child answer", "parent again"])])
        mine.run(Agent(backend), "parent again")  # this process sees the other's turn
        users = [m.text for m in mine.transcript() if m.role == "user"]
        assert users == ["parent question", "child question", "parent again"]


def test_sessions_live_beside_the_stored_responses(tmp_path: Path) -> None:
    path = default_path(Settings(home=tmp_path))
    assert path == tmp_path / "responses.sqlite3"  # the file ossagent serve keeps its responses in
    store = ResponseStore(path)
    store.put({"id": "resp_1", "object": "response"})
    with Sessions(path) as sessions:
        sessions.open("s").append([Msg("user", "hi")])
    assert store.get("resp_1") == {"id": "resp_1", "object": "response"}
    store.close()
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"responses", "sessions", "session_messages"} <= tables


@pytest.mark.parametrize("name", ["", "a b", "../x", "-x", ".hidden", "x" * 65, "naïve", "a/b"])
def test_bad_names_are_a_user_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserError, match="is not valid: use 1 to 64 letters, digits"):
        check_name(name)
    with Sessions(tmp_path / "s.sqlite3") as sessions, pytest.raises(UserError):
        sessions.open(name)


def test_opening_a_missing_session_without_create(tmp_path: Path) -> None:
    with Sessions(tmp_path / "s.sqlite3") as sessions:
        sessions.open("exists")
        with pytest.raises(UserError, match=r"no session named 'nope' \(sessions: exists\)"):
            sessions.open("nope", create=False)
    assert check_name("my-trip_2.0") == "my-trip_2.0"


# -- ossagent chat --session ---------------------------------------------------------------------------------


def chat(home: Path, script: list[object], lines: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = home / f"script{len(list(home.glob('script*')))}.json"
    path.write_text(json.dumps(script))
    env = {**os.environ, "OSSAGENT_HOME": str(home), "OSSAGENT_DEMO": "0"}
    return subprocess.run([sys.executable, "-m", "ossagent.agent.cli", "chat", "--scripted", str(path), *args],
                          input=lines, capture_output=True, text=True, env=env, timeout=120, check=False)


def test_chat_session_resumes_in_a_new_process(tmp_path: Path) -> None:
    first = chat(tmp_path, [FINAL.format("Noted: Lyon.")], "I go to Lyon\n/exit\n", "--session", "trip")
    assert first.returncode == 0, first.stderr
    assert "session trip: new" in first.stdout and "Noted: Lyon." in first.stdout
    second = chat(tmp_path, [FINAL.format("You go to Lyon.")], "Where do I go?\n/exit\n", "--session", "trip")
    assert second.returncode == 0, second.stderr
    assert "session trip: 1 earlier turn, resumed" in second.stdout and "You go to Lyon." in second.stdout
    with Sessions(tmp_path / "responses.sqlite3") as sessions:
        users = [m.text for m in sessions.open("trip").transcript() if m.role == "user"]
    assert users == ["I go to Lyon", "Where do I go?"]


def test_chat_with_a_bad_session_name_exits_2_in_one_line(tmp_path: Path) -> None:
    res = chat(tmp_path, [], "", "--session", "no spaces")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        "ossagent chat: session name 'no spaces' is not valid: use 1 to 64 letters, digits, '.', '_' or '-', "
        "starting with a letter or digit"]


def test_chat_turns_continue_the_session_as_stored(tmp_path: Path) -> None:
    with Sessions(tmp_path / "s.sqlite3") as sessions:
        session = sessions.open("desk")
        session.append([Msg("user", "My name is Ada."), Msg("assistant", "Hello Ada.", channel="final")])
        other = sessions.open("desk")  # another writer adds a turn while the chat is open
        lines = iter(["first", "second", "/reset", "third", "/exit"])

        def read() -> str:
            line = next(lines)
            if line == "second":
                other.append([Msg("user", "Meanwhile: I like tea."), Msg("assistant", "Tea.", channel="final")])
            return line

        backend = ScriptedBackend([
            Step(FINAL.format("One."), expect=["My name is Ada.", "Hello Ada.", "first"]),
            Step(FINAL.format("Two."), expect=["Meanwhile: I like tea.", "second"]),
            Step(FINAL.format("Three."), expect="third"),
        ])
        buf = io.StringIO()
        assert chat_repl(Agent(backend), Console(file=buf, width=100, color_system=None), read=read,
                         session=session) == 0
        backend.assert_consumed()
        assert "session desk: 1 earlier turn, resumed" in buf.getvalue()
        assert "session desk cleared" in buf.getvalue()
        assert "Ada" not in backend.encoding.decode(backend.prompts[2])  # /reset cleared it
        assert [m.text for m in session.transcript() if m.role == "user"] == ["third"]
