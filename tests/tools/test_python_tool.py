"""The python tool: trained description, state across calls, timeouts, crashes, output formatting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ossagent.sandbox import Backend, SandboxUnavailable, probe
from ossagent.sandbox.session import ExecResult
from ossagent.tools.base import ModelError, Tool
from ossagent.tools.python import PythonTool, format_result

DOCS = Path(__file__).resolve().parents[3] / "shared" / "docs"
GOLDEN = Path(__file__).with_name("golden")

needs_sandbox = pytest.mark.skipif(
    probe(Backend.BWRAP) is not None and probe(Backend.UNSHARE_LANDLOCK) is not None,
    reason="no sandbox backend on this machine",
)


def _trained_description() -> str:
    for candidate in [DOCS / "harmony-builtin-tools.json",
                      *(p / "shared/docs/harmony-builtin-tools.json" for p in Path(__file__).resolve().parents)]:
        if candidate.exists():
            return json.loads(candidate.read_text())["python"]["description"]
    pytest.skip("shared/docs not present")


def test_description_is_the_trained_one() -> None:
    from ossagent.tools.python import PYTHON_DESCRIPTION

    assert _trained_description() == PYTHON_DESCRIPTION
    assert (GOLDEN / "python_description.txt").read_text() == PYTHON_DESCRIPTION


def test_model_visible_messages_golden() -> None:
    cases = {
        "killed": ExecResult("partial\n", None, "killed", True, 0, -9),
        "crashed": ExecResult("", None, "crashed", True, 0, 139),
        "value": ExecResult("out\n", "42", None, False, 0),
        "empty": ExecResult("", None, None, False, 0),
        "timeout_kept": ExecResult("TimeoutError: the call's time limit was reached; the interpreter state is kept\n",
                                   None, "timeout", False, 0),
    }
    rendered = "\n=====\n".join(f"{k}:\n{format_result(v, 120.0)}" for k, v in cases.items())
    rendered += "\n=====\nrestarted:\n" + format_result(ExecResult("1\n", None, None, True, 0), 120.0,
                                                       restarted_before=True)
    assert rendered == (GOLDEN / "python_messages.txt").read_text()


@pytest.fixture
def tool(tmp_path: Path) -> PythonTool:
    t = PythonTool(tmp_path, timeout=3.0)
    yield t
    t.close()


@needs_sandbox
def test_state_persists_and_value_is_shown(tool: PythonTool) -> None:
    assert isinstance(tool, Tool)
    assert tool.call("python", "x = 20\nprint('set')").text == "set"
    assert tool.call("python", "x * 2 + 2").text == "42"
    assert tool.call("python", "print('a')\nx").text == "a\n20"


@needs_sandbox
def test_workspace_is_mnt_data(tool: PythonTool, tmp_path: Path) -> None:
    tool.call("python", "open('/mnt/data/out.txt', 'w').write('hello')")
    assert (tmp_path / "out.txt").read_text() == "hello"


@needs_sandbox
def test_traceback_and_stderr_are_captured(tool: PythonTool) -> None:
    text = tool.call("python", "import sys\nprint('err', file=sys.stderr)\n1/0").text
    assert text.startswith("err\nTraceback (most recent call last):")
    assert text.endswith("ZeroDivisionError: division by zero")


@needs_sandbox
def test_empty_and_bad_calls(tool: PythonTool) -> None:
    with pytest.raises(ModelError):
        tool.call("python", "   ")
    with pytest.raises(ModelError):
        tool.call("python.run", "1")


def test_refuses_without_isolation_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ossagent.sandbox import launch
    from ossagent.tools.base import UserError

    monkeypatch.setattr(launch.shutil, "which", lambda *a, **k: None)
    with pytest.raises(UserError, match="UNSAFE_NO_ISOLATION"):
        PythonTool(tmp_path)
    with pytest.raises(SandboxUnavailable):
        launch.choose_backend(Backend.BWRAP)
    unsafe = PythonTool(tmp_path, backend=Backend.UNSAFE_NO_ISOLATION, timeout=5.0)
    try:
        assert unsafe.call("python", "1+1").text == "2"
    finally:
        unsafe.close()


@needs_sandbox
def test_worker_dying_between_calls_is_reported(tool: PythonTool) -> None:
    import time

    tool.call("python", "import os, threading\nx = 1\nthreading.Timer(0.2, os._exit, (1,)).start()")
    time.sleep(1.0)
    res = tool.call("python", "print('fresh')\n'x' in globals()")
    assert res.text.startswith("[NOTE] The Python process had stopped since the last call and was restarted.")
    assert res.text.endswith("fresh\nFalse")
    assert res.metadata["state_lost"] is True
