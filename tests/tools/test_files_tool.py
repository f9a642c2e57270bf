"""The files tool: descriptions, confinement (openat2 and the O_NOFOLLOW walk), atomic writes, V4A patches."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest

from ossagent.tools.base import ModelError, Tool
from ossagent.tools.confined import openat2_works
from ossagent.tools.files import FilesTool

GOLDEN = Path(__file__).with_name("golden")
MODES = [pytest.param(True, id="openat2"), pytest.param(False, id="walk")]


@pytest.fixture(params=MODES)
def ws(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[FilesTool, Path]:
    if request.param and not openat2_works():
        pytest.skip("openat2 is not available in this kernel")
    root = tmp_path / "ws"
    root.mkdir()
    (root / "sub").mkdir()
    (root / "sub" / "a.py").write_text("def f():\n    return 1\n\n\ndef g():\n    return 2\n")
    (root / "notes.txt").write_text("one\ntwo\nthree\n")
    (tmp_path / "outside.txt").write_text("outside\n")
    tool = FilesTool(root, use_openat2=request.param)
    yield tool, root
    tool.close()


def call(tool: FilesTool, fn: str, **args: object) -> str:
    return tool.call(f"files.{fn}", json.dumps(args)).text


def err(tool: FilesTool, fn: str, **args: object) -> str:
    with pytest.raises(ModelError) as exc:
        call(tool, fn, **args)
    return exc.value.for_model()


def test_description_golden(tmp_path: Path) -> None:
    tool = FilesTool(tmp_path)
    assert isinstance(tool, Tool)
    text = json.dumps(asdict(tool.description()), indent=1)
    assert text == (GOLDEN / "files_description.json").read_text()


def test_error_messages_golden(tmp_path: Path) -> None:
    root, host = tmp_path / "ws", tmp_path / "host"
    root.mkdir()
    host.mkdir()
    (host / "passwd").write_text("host file\n")
    (root / "a.txt").write_text("x\n")
    os.symlink(host, root / "etc")
    tool = FilesTool(root)
    msgs = [
        err(tool, "read", path="../x"),
        err(tool, "read", path="missing.txt"),
        err(tool, "read", path="."),
        err(tool, "write", path="etc/passwd", content="x"),
        err(tool, "read"),
        err(tool, "apply_patch", patch="*** Begin Patch\n*** Update File: a.txt\n-y\n+z\n*** End Patch"),
        err(tool, "apply_patch", patch="*** Begin Patch\n*** Add File: a.txt\n+z\n*** End Patch"),
        err(tool, "apply_patch", patch="no patch"),
    ]
    with pytest.raises(ModelError) as exc:
        tool.call("files.nope", "{}")
    msgs.append(exc.value.for_model())
    with pytest.raises(ModelError) as exc:
        tool.call("files.read", "{not json")
    msgs.append(exc.value.for_model())
    assert "\n=====\n".join(msgs) == (GOLDEN / "files_errors.txt").read_text()


def test_read_pages_and_accepts_mnt_data(ws: tuple[FilesTool, Path]) -> None:
    tool, _ = ws
    assert call(tool, "read", path="notes.txt") == "one\ntwo\nthree\n"
    assert call(tool, "read", path="/mnt/data/notes.txt", start_line=2, num_lines=1) == (
        "two\n\n[lines 2-2 of 3; continue with start_line=3]")


def test_escapes_are_refused(ws: tuple[FilesTool, Path]) -> None:
    tool, root = ws
    outside = root.parent / "outside.txt"
    os.symlink(root.parent, root / "host")
    os.symlink("../outside.txt", root / "up")
    for path in ["../outside.txt", str(outside), "host/outside.txt", "up", "sub/../../outside.txt",
                 f"/proc/self/root{outside}", f"/mnt/data/../..{outside}"]:
        assert err(tool, "read", path=path).startswith(repr(path))  # an error, never the content
        if path != "up":
            err(tool, "write", path=path, content="pwned")
    call(tool, "write", path="up", content="mine")  # replaces the link itself, never writes through it
    assert not (root / "up").is_symlink() and (root / "up").read_text() == "mine"
    assert (root.parent / "outside.txt").read_text() == "outside\n"


def test_write_is_atomic_and_creates_folders(ws: tuple[FilesTool, Path]) -> None:
    tool, root = ws
    assert call(tool, "write", path="new/deep/f.txt", content="hi\n") == "Wrote 3 bytes to new/deep/f.txt."
    assert (root / "new" / "deep" / "f.txt").read_text() == "hi\n"
    os.chmod(root / "notes.txt", 0o600)
    call(tool, "write", path="notes.txt", content="replaced\n")
    assert (root / "notes.txt").read_text() == "replaced\n"
    assert oct((root / "notes.txt").stat().st_mode & 0o777) == "0o600"  # mode kept


def test_failed_write_leaves_old_file_whole(ws: tuple[FilesTool, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    tool, root = ws

    def boom(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(Exception, match="Input/output error"):
        call(tool, "write", path="notes.txt", content="new content that never lands\n")
    with pytest.raises(Exception, match="Input/output error"):  # the folders it made are removed again
        call(tool, "write", path="sub/new1/new2/f.txt", content="x")
    monkeypatch.undo()
    assert (root / "notes.txt").read_text() == "one\ntwo\nthree\n"
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt", "sub"]  # no temp file left
    assert sorted(p.name for p in (root / "sub").iterdir()) == ["a.py"]


def test_hardlinked_file_is_not_read(ws: tuple[FilesTool, Path]) -> None:
    tool, root = ws
    os.link(root.parent / "outside.txt", root / "hl.txt")
    assert "hard links" in err(tool, "read", path="hl.txt")
    # search skips it too: what read refuses, search must not show line by line
    assert call(tool, "search", pattern="outside").startswith("[no lines match")
    assert "hl.txt" not in call(tool, "search", pattern="*.txt", mode="glob")


def test_list_and_search(ws: tuple[FilesTool, Path]) -> None:
    tool, root = ws
    os.symlink(root.parent, root / "rootlink")
    assert call(tool, "list") == f"notes.txt  (14 bytes)\nrootlink -> {root.parent}\nsub/"
    assert call(tool, "list", depth=2).endswith("sub/\nsub/a.py  (46 bytes)")
    assert call(tool, "search", pattern=r"return \d") == "sub/a.py:2:     return 1\nsub/a.py:6:     return 2"
    assert call(tool, "search", pattern="t", include="*.txt") == "notes.txt:2: two\nnotes.txt:3: three"
    assert call(tool, "search", pattern="*.py", mode="glob") == "sub/a.py"
    assert call(tool, "search", pattern="xyz").startswith("[no lines match")
    assert "Invalid regular expression" in err(tool, "search", pattern="(")


PATCH_OK = """*** Begin Patch
*** Update File: sub/a.py
@@ def g():
-    return 2
+    return 3
*** Update File: notes.txt
*** Move to: moved/notes.md
 one
-two
+TWO
 three
*** End of File
*** Add File: added.txt
+first
+second
*** End Patch
"""


def test_apply_patch_update_move_add_delete(ws: tuple[FilesTool, Path]) -> None:
    tool, root = ws
    assert call(tool, "apply_patch", patch=PATCH_OK) == (
        "Done! M sub/a.py, D notes.txt, M moved/notes.md, M added.txt")
    assert (root / "sub" / "a.py").read_text().endswith("def g():\n    return 3\n")
    assert not (root / "notes.txt").exists()
    assert (root / "moved" / "notes.md").read_text() == "one\nTWO\nthree\n"
    assert (root / "added.txt").read_text() == "first\nsecond\n"
    raw = "*** Begin Patch\n*** Delete File: added.txt\n*** End Patch"
    assert tool.call("files.apply_patch", raw).text == "Done! D added.txt"  # a raw patch body also works
    assert not (root / "added.txt").exists()


def test_apply_patch_tolerates_whitespace(ws: tuple[FilesTool, Path]) -> None:
    tool, root = ws
    patch = "*** Begin Patch\n*** Update File: sub/a.py\n def f():  \n-  return 1\n+    return 10\n*** End Patch"
    call(tool, "apply_patch", patch=patch)
    assert (root / "sub" / "a.py").read_text().startswith("def f():\n    return 10\n")


def test_failing_patch_changes_nothing_and_names_the_hunk(ws: tuple[FilesTool, Path]) -> None:
    tool, root = ws
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    patch = PATCH_OK.replace("-two\n", "-deux\n")
    msg = err(tool, "apply_patch", patch=patch)
    assert "notes.txt: hunk 1" in msg and "deux" in msg and "changed nothing" in msg
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_patch_rolls_back_when_a_write_fails(ws: tuple[FilesTool, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    tool, root = ws
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    real = tool.ws.write_atomic
    calls = {"n": 0}

    def flaky(path: str, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(tool.ws, "write_atomic", flaky)
    patch = ("*** Begin Patch\n*** Update File: sub/a.py\n-    return 1\n+    return 9\n"
             "*** Update File: notes.txt\n-one\n+ONE\n*** End Patch")
    with pytest.raises(Exception, match="No space"):
        call(tool, "apply_patch", patch=patch)
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
