"""Command-line conventions: each common mistake is one line and exit 2 before any model loads; --version,
a task from stdin, the config file, ``ossagent list``, --help with defaults, examples and environment."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ossagent.agent.backends import factory
from ossagent.agent.backends.scripted import ScriptedBackend
from ossagent.agent.cli import main
from ossagent.agent.server import ServerConfig, create_app
from ossagent.agent.server.serve import start_in_thread

FINAL = "<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant<|channel|>final<|message|>{}<|return|>"


@pytest.fixture()
def no_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Any attempt to load a model fails the test: the mistakes must be caught before."""
    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("the model was loaded before the mistake was reported")

    monkeypatch.setattr(factory, "build_backend", refuse)
    monkeypatch.setenv("OSSAGENT_HOME", str(tmp_path / "home"))


def script(tmp_path: Path, *replies: str) -> str:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(list(replies)))
    return str(path)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mistakes(tmp: Path) -> list[tuple[list[str], str]]:
    folder = tmp / "not_a_model"
    folder.mkdir()
    (tmp / "afile.txt").write_text("x")
    (tmp / "bad.jsonl").write_text("this is not json\n")
    (tmp / "bad_schema.json").write_text("{type: object")
    return [
        (["run", "--model", str(folder), "x"], f"--model {folder} is not a gpt-oss checkpoint"),
        (["run", "--model", str(tmp / "nowhere"), "x"], f"--model {tmp / 'nowhere'}: not found"),
        (["chat", "--model", str(tmp / "afile.txt")], "is a file; give the checkpoint's folder"),
        (["run", "--workspace", str(tmp / "afile.txt"), "x"], "is a file, not a folder"),
        (["run", "--resume", str(tmp / "missing.jsonl"), "x"], "missing.jsonl: not found"),
        (["run", "--resume", str(tmp / "bad.jsonl"), "x"], "is not an ossagent transcript"),
        (["run", "--schema", str(tmp / "missing.json"), "x"], "missing.json: not found"),
        (["run", "--schema", str(tmp / "bad_schema.json"), "x"], "bad_schema.json is not valid JSON"),
        (["run", "--schema", "{\"type\": ", "x"], "--schema is not valid JSON"),
        (["serve", "--port", "70000"], "--port 70000 is not a port"),
        (["serve", "--slots", "0"], "--slots must be at least 1"),
        (["run", "--temperature", "3", "x"], "--temperature must be within [0, 2]"),
        (["run", "--max-turns", "0", "x"], "--max-turns must be at least 1"),
    ]


def test_each_mistake_is_one_line_and_exit_2_before_the_model_loads(
    tmp_path: Path, no_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, message in _mistakes(tmp_path):
        assert main(argv) == 2, argv
        err = one_line_error(capsys)
        assert err.startswith(f"ossagent {argv[0]}: ") and message in err, (argv, err)


def test_a_busy_port_fails_before_the_model_loads(tmp_path: Path, no_model: None,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port), "--model-id", "m"]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in one_line_error(capsys)


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    running = start_in_thread(create_app(ServerConfig(backend=ScriptedBackend([]), model_id="gpt-oss-test")))
    yield running.url
    running.stop()


def test_remote_mistakes_exit_2_and_a_url_without_v1_gets_a_hint(
    api: str, no_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    root = api.removesuffix("/v1")
    assert main(["run", "--remote", root, "x"]) == 2
    err = one_line_error(capsys)
    assert "answered HTTP 404" in err and f"usually end in /v1: {root}/v1" in err
    assert main(["run", "--remote", f"http://127.0.0.1:{free_port()}/v1", "x"]) == 2
    assert "cannot reach the server" in one_line_error(capsys)
    assert main(["run", "--remote", "localhost:8000/v1", "x"]) == 2
    assert "must start with http:// or https://" in one_line_error(capsys)


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("ossagent ")
    for command, example in (("run", "ossagent run - "), ("serve", "--cors-origin"), ("chat", "ossagent chat")):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        assert example in out and "environment variables:" in out and "OSSAGENT_HOME" in out
        assert "config.toml" in out and "(default: 20)" in out  # --max-turns shows its default


def test_task_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OSSAGENT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("sys.stdin", io.StringIO("Capital of France?\n"))
    transcript = tmp_path / "t.jsonl"
    assert main(["run", "--scripted", script(tmp_path, FINAL.format("Paris.")), "-q", "--transcript",
                 str(transcript), "-"]) == 0
    assert capsys.readouterr().out == "Paris.\n"
    assert json.loads(transcript.read_text().splitlines()[1])["text"] == "Capital of France?"
    monkeypatch.setattr("sys.stdin", io.StringIO("  \n"))
    assert main(["run", "--scripted", script(tmp_path, FINAL.format("x")), "-"]) == 2
    assert "standard input, and it was empty" in one_line_error(capsys)


def test_config_file_gives_defaults_the_command_line_overrides(
    tmp_path: Path, no_model: None, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    cfg = home / "config.toml"
    cfg.write_text('temperature = 0.5\n[run]\nmax-turns = 0\n')  # the [run] table reaches run only
    assert main(["run", "x"]) == 2
    assert "--max-turns must be at least 1, not 0" in one_line_error(capsys)
    assert main(["serve", "--port", "99999"]) == 2  # no [serve] max-turns: the port is the first mistake
    assert "--port 99999" in one_line_error(capsys)
    cfg.write_text('temperature = 9\n')
    assert main(["run", "--temperature", "1", "--max-turns", "0", "x"]) == 2  # typed flags win
    assert "--max-turns" in one_line_error(capsys)
    cfg.write_text('temprature = 1\n')
    assert main(["run", "x"]) == 2
    assert "unknown setting 'temprature'" in one_line_error(capsys)
    cfg.write_text('reasoning = "extreme"\n')
    assert main(["run", "x"]) == 2
    assert "'extreme' is not one of low, medium, high" in one_line_error(capsys)
    cfg.write_text('reasoning = \n')
    assert main(["run", "x"]) == 2
    assert "not a valid TOML config file" in one_line_error(capsys)


def test_config_file_values_reach_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(f'quiet = true\noutput = "json"\nscripted = "{script(tmp_path, FINAL.format("Hi."))}"\n')
    monkeypatch.setenv("OSSAGENT_HOME", str(home))
    assert main(["run", "hello"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == "Hi."


def test_list_shows_local_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    model = home / "models" / "my-gpt-oss"
    (model / "original").mkdir(parents=True)
    (model / "original" / "config.json").write_text("{}")
    monkeypatch.setenv("OSSAGENT_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("OSSAGENT_MODEL", raising=False)
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("* my-gpt-oss") and "original" in lines[0] and str(model) in lines[0]
