"""Adversarial cases of the hardening pass (issue 25): what model-written code, a model-chosen argument or a
planted file can do to the host-side tools. Counted with test_adversarial.py in the per-backend "cases held"
figure (tests/sandbox/conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from collections.abc import Callable

import pytest

from ossagent.sandbox import PythonSandbox
from ossagent.tools.base import ModelError
from ossagent.tools.files import FilesTool


def _call(tool: FilesTool, fn: str, **args: object) -> str:
    try:
        return tool.call(f"files.{fn}", json.dumps(args)).text
    except ModelError as exc:
        return "ERROR " + exc.for_model()


def _timed(fn: Callable[[], str]) -> tuple[str, float]:
    """Run ``fn`` in the main thread, where pytest-timeout's alarm can interrupt a backtracking ``re``."""
    started = time.monotonic()
    return fn(), time.monotonic() - started


@pytest.mark.timeout(15)
@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(a|a)*b", r"(x+x+)+y", r"^(\w+\s?)*$"])
def test_catastrophic_regex_is_linear(sbx: PythonSandbox, pattern: str) -> None:
    sbx.run("open('/mnt/data/trap.txt', 'w').write(('a' * 60 + '!\\n') * 50 + 'x' * 5000 + '\\n')")
    tool = FilesTool(sbx.policy.workspace)
    try:
        out, took = _timed(lambda: _call(tool, "search", pattern=pattern))
        assert out.startswith(("[no lines match", "trap.txt:")), out
        assert took < 5.0
    finally:
        tool.close()


def test_regex_features_that_need_backtracking_are_refused(sbx: PythonSandbox) -> None:
    tool = FilesTool(sbx.policy.workspace)
    try:
        for pattern in [r"(a)\1", r"(?<=a)b", r"(?=a)", "a" * 3000]:
            out = _call(tool, "search", pattern=pattern)
            assert out.startswith("ERROR"), (pattern, out)
        assert _call(tool, "search", pattern="((a{100}){100}){100}").startswith("ERROR")  # too large to compile
    finally:
        tool.close()


@pytest.mark.timeout(15)
def test_planted_glob_names_do_not_backtrack(sbx: PythonSandbox) -> None:
    sbx.run(textwrap.dedent("""
    import os
    os.makedirs('/mnt/data/' + 'a' * 200, exist_ok=True)
    open('/mnt/data/' + 'a' * 200 + '/' + 'a' * 200, 'w').write('x')
    """))
    tool = FilesTool(sbx.policy.workspace)
    try:
        out, took = _timed(lambda: _call(tool, "search", pattern="*a" * 30 + "*b", mode="glob"))
        assert out.startswith("[no files match") and took < 5.0, out
    finally:
        tool.close()


DEEP = """
import os
os.chdir('/mnt/data')
os.mkdir('deep')
os.chdir('deep')
for i in range(3000):
    os.mkdir('d')
    os.chdir('d')
open('bottom.txt', 'w').write('needle at the bottom\\n')
print('made')
"""


@pytest.mark.timeout(120)
def test_a_deep_folder_tree_cannot_disable_the_python_tool(sbx: PythonSandbox) -> None:
    assert sbx.run(DEEP).output == "made\n"
    sbx.restart()  # as root, the start walks the workspace to give it to the session uid
    assert sbx.run("print(1 + 1)").output == "2\n"
    tool = FilesTool(sbx.policy.workspace)
    try:
        out = _call(tool, "search", pattern="needle")
        assert out.startswith(("[no lines match", "ERROR")) and "Traceback" not in out, out
        assert "too deep" in out or "levels" in out, out
        assert _call(tool, "search", pattern="*.txt", mode="glob").startswith("[no files match")
        assert _call(tool, "list", depth=5).startswith("deep/")
    finally:
        tool.close()
        # pytest's own clean-up of old temporary folders recurses (shutil.rmtree): remove the tree iteratively
        subprocess.run(["find", str(sbx.policy.workspace / "deep"), "-depth", "-delete"], check=False)


def test_planted_names_cannot_add_lines_or_escapes_to_listings(sbx: PythonSandbox) -> None:
    sbx.run(textwrap.dedent("""
    import os
    os.chdir('/mnt/data')
    for name in ['a\\nfake.txt  (1 bytes)', 'esc\\x1b[2J.txt', 'sep\\u2028x.txt', 'cr\\rz.txt']:
        open(name, 'w').write('needle \\x1b[31mred\\n')
    open(b'bad\\xff.txt', 'w').write('needle\\n')
    os.symlink('tar\\nget', 'link')
    """))
    tool = FilesTool(sbx.policy.workspace)
    try:
        listing = _call(tool, "list")
        assert listing.splitlines() == [
            "a\\x0afake.txt  (1 bytes)  (16 bytes)", "bad\\xff.txt  (7 bytes)", "cr\\x0dz.txt  (16 bytes)",
            "esc\\x1b[2J.txt  (16 bytes)", "link -> tar\\x0aget", "sep\\u2028x.txt  (16 bytes)"], listing
        found = _call(tool, "search", pattern="needle")
        assert len(found.splitlines()) == 5 and "\x1b" not in found and "\\x1b[31mred" in found, found
        globbed = _call(tool, "search", pattern="*.txt", mode="glob")
        assert len(globbed.splitlines()) == 4 and "\r" not in globbed, globbed
    finally:
        tool.close()


def test_a_failed_write_leaves_no_folders_behind(sbx: PythonSandbox) -> None:
    ws = sbx.policy.workspace
    tool = FilesTool(ws)
    try:
        before = sorted(p.name for p in ws.iterdir())
        for path in ["a/" * 2000 + "x.txt", "n1/n2/n3/" + "x" * 300, "m1/m2/" + "y" * 256 + "/z.txt"]:
            out = _call(tool, "write", path=path, content="x")
            assert out.startswith("ERROR"), out
            assert sorted(p.name for p in ws.iterdir()) == before, path
        assert _call(tool, "write", path="ok/" * 10 + "f.txt", content="x").startswith("Wrote 1 bytes")
    finally:
        tool.close()
        for name in ("a", "n1", "m1"):  # when the test fails: pytest's clean-up recurses, so remove iteratively
            subprocess.run(["find", str(ws / name), "-depth", "-delete"], check=False, capture_output=True)
