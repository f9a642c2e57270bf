"""The ``ossagent`` command line with a scripted model: run (text/JSON/schema), resume, chat, errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from ossagent.agent.backends.scripted import ScriptedBackend, Step
from ossagent.agent.cli import main
from ossagent.agent.cli.chat import chat
from ossagent.agent.loop import Agent
from ossagent.agent.transcript import Transcript

FINAL = "<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant<|channel|>final<|message|>{}<|return|>"


def script(tmp_path: Path, *replies: str) -> str:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(list(replies)))
    return str(path)


def test_run_text_and_transcript(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.jsonl"
    rc = main(["run", "--scripted", script(tmp_path, FINAL.format("Paris.")), "--transcript", str(out), "-q",
               "Capital of France?"])
    assert rc == 0 and capsys.readouterr().out == "Paris.\n"
    saved = Transcript.load(out)
    assert [m.text for m in saved] == ["Capital of France?", "Easy.", "Paris."]
    rc = main(["run", "--scripted", script(tmp_path, FINAL.format("Berlin.")), "--resume", str(out), "-q",
               "And Germany?"])
    assert rc == 0 and capsys.readouterr().out == "Berlin.\n"


def test_run_json_with_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text('{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}')
    rc = main(["run", "--scripted", script(tmp_path, FINAL.format('{"n":4}')), "--schema", str(schema),
               "--output", "json", "-q", "2+2"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["output"] == {"n": 4} and data["stop_reason"] == "final"
    assert data["usage"]["turns"] == 1


def test_user_errors_exit_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--scripted", script(tmp_path, FINAL.format("x")), "--tools", "teleport", "x"]) == 2
    assert "unknown tools ['teleport']" in capsys.readouterr().err
    assert main(["run", "--scripted", str(tmp_path / "missing.json"), "x"]) == 2
    assert "cannot read script" in capsys.readouterr().err
    assert main(["download", "gpt-oss-20b"]) == 2
    assert "owner/name" in capsys.readouterr().err


def test_no_model_explains_how_to_get_one(tmp_path: Path) -> None:
    # OSSAGENT_DEMO=0: no fallback to the built-in demo model (tests/demo/test_demo_cli.py covers that one)
    env = {"OSSAGENT_HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin",
           "OSSAGENT_DEMO": "0"}
    res = subprocess.run([sys.executable, "-m", "ossagent.agent.cli", "run", "hello"], capture_output=True,
                         text=True, env=env, timeout=120, check=False)
    assert res.returncode == 2
    assert "ossagent download openai/gpt-oss-20b" in res.stderr and "--model" in res.stderr


def test_download_offline_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["download", "openai/gpt-oss-20b", "--offline", "--dir", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot reach huggingface.co" in err and "--model" in err


def test_chat_streams_and_keeps_the_conversation(tmp_path: Path) -> None:
    backend = ScriptedBackend([FINAL.format("Hi!"), Step(FINAL.format("You said hello."),
                                                                expect=["Hi!", "Reasoning: high"])])
    buf = io.StringIO()
    console = Console(file=buf, width=100, color_system=None)
    lines = iter(["hello", "/reasoning", "/effort high", "what did I say?", "/exit"])
    save = tmp_path / "chat.jsonl"
    assert chat(Agent(backend), console, read=lambda: next(lines), save=str(save)) == 0
    text = buf.getvalue()
    assert "Hi!" in text and "You said hello." in text and "reasoning shown" in text
    assert "[thought for 5 characters" in text and "thinking: Easy." in text
    assert [m.text for m in Transcript.load(save) if m.role == "user"] == ["hello", "what did I say?"]
    backend.assert_consumed()


def test_serve_subcommand_with_the_openai_client(tmp_path: Path) -> None:
    import socket
    import time

    import httpx
    import openai

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ossagent.agent.cli", "serve", "--scripted", script(tmp_path, FINAL.format("Hey.")),
         "--port", str(port), "--model-id", "tiny", "-q"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content == "Hey."
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_script_errors_and_failing_asserts_are_told_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A script that does not fit is the user's (exit 2, "off script"); a failing assert is a bug and escapes."""
    from ossagent.agent.backends import factory
    from ossagent.agent.backends.scripted import ScriptError

    assert not issubclass(ScriptError, AssertionError)
    assert main(["run", "--scripted", script(tmp_path), "-q", "hi"]) == 2  # an empty script: exhausted at once
    assert "went off script: script exhausted" in capsys.readouterr().err

    class Asserting(ScriptedBackend):
        def generate(self, prompt: Any, params: Any, hook: Any = None) -> Any:
            raise AssertionError("a bug in the loop")

    monkeypatch.setattr(factory, "build_backend", lambda *_a, **_k: Asserting([]))
    with pytest.raises(AssertionError, match="a bug in the loop"):
        main(["run", "--scripted", script(tmp_path), "-q", "hi"])
