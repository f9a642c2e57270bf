"""Adversarial cases 10-12 of shared/docs/sandbox-findings.md §7: the host-side file tools against traps that
sandboxed code plants in the workspace (symlinks, hardlinks, FIFOs, sparse files, a racing symlink flip).
Counted with test_adversarial.py in the per-backend "cases held" figure (tests/sandbox/conftest.py).
"""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path

import pytest

from ossagent.sandbox import PythonSandbox
from ossagent.tools.base import ModelError
from ossagent.tools.files import FilesTool

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="checks the per-session uid, which exists only when run as root")


def run(sbx: PythonSandbox, code: str, timeout: float | None = None) -> str:
    res = sbx.run(textwrap.dedent(code), timeout)
    return res.output + (res.value or "")




# ---------------------------------------------------------------- 10-12: host file tools vs. sandbox-made traps


@pytest.fixture(params=[True, False], ids=["openat2", "walk"])
def trapped(request: pytest.FixtureRequest, sbx: PythonSandbox,
            tmp_path: Path) -> tuple[PythonSandbox, FilesTool, Path]:
    """The sandbox plants links, a FIFO, a socket and a sparse file; the host's file tool faces them."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("host secret")
    res = sbx.run(textwrap.dedent(f"""
    import os, socket
    os.chdir('/mnt/data')
    os.symlink('/etc/passwd', 'x')
    os.symlink('/', 'd')
    os.symlink('../../../../../../..', 'r')
    os.symlink({str(outside)!r}, 'out')
    os.symlink({str(outside / 'secret.txt')!r}, 'sec')
    os.mkfifo('fifo')
    socket.socket(socket.AF_UNIX).bind('sock')
    try:
        open('sparse', 'wb').truncate(1 << 40)
        print('sparse 1 TiB file created inside')
    except OSError:
        pass
    open('bad.txt', 'wb').write(b'ok \\xff\\xfe bytes\\n')
    os.makedirs('sub', exist_ok=True)
    open('sub/ok.txt', 'w').write('inside\\n')
    os.symlink('sub', 'insub')
    """))
    assert res.error is None and res.output == "", res.output  # RLIMIT_FSIZE stops the sparse file
    with open(sbx.policy.workspace / "sparse", "wb") as f:  # so plant it from the host
        f.truncate(1 << 40)
    tool = FilesTool(sbx.policy.workspace, use_openat2=request.param)
    yield sbx, tool, outside
    tool.close()


def escapes(outside: Path) -> list[str]:
    """Paths that lead out of the workspace: through planted links, by dots, absolutely, through /proc."""
    secret = outside / "secret.txt"
    return ["x", "d/etc/passwd", "r/etc/passwd", "out/secret.txt", "sec", "../outside/secret.txt",
            str(secret), f"/mnt/data/../..{secret}", f"/proc/self/root{secret}", f"d{secret}", f"r{secret}",
            "d/proc/self/environ"]


def _call(tool: FilesTool, fn: str, **args: object) -> str:
    try:
        return tool.call(f"files.{fn}", json.dumps(args)).text
    except ModelError as exc:
        return "ERROR " + exc.for_model()


def test_file_tool_reads_refuse_escapes(trapped: tuple[PythonSandbox, FilesTool, Path]) -> None:
    _, tool, outside = trapped
    for path in escapes(outside):
        out = _call(tool, "read", path=path)
        assert out.startswith("ERROR"), (path, out)
        assert "root:" not in out and "host secret" not in out
    # an in-workspace link is followed by openat2 (the kernel keeps it beneath); the walk refuses every link
    expected = "inside\n" if tool.ws.use_openat2 else "ERROR"
    assert _call(tool, "read", path="insub/ok.txt").startswith(expected)


def test_file_tool_writes_and_patches_refuse_escapes(trapped: tuple[PythonSandbox, FilesTool, Path]) -> None:
    _, tool, outside = trapped
    before = sorted(p.name for p in outside.iterdir())
    evil = outside.parent / "ossagent-evil"
    for path in ["out/new.txt", f"d{evil}", f"r{evil}", "../outside/new.txt", str(evil)]:
        assert _call(tool, "write", path=path, content="x").startswith("ERROR"), path
        patch = f"*** Begin Patch\n*** Add File: {path}\n+x\n*** End Patch"
        assert _call(tool, "apply_patch", patch=patch).startswith("ERROR"), path
    patch = "*** Begin Patch\n*** Update File: sec\n-host secret\n+pwned\n*** End Patch"
    assert _call(tool, "apply_patch", patch=patch).startswith("ERROR")
    assert sorted(p.name for p in outside.iterdir()) == before
    assert (outside / "secret.txt").read_text() == "host secret"
    assert not evil.exists()


def test_file_tool_write_replaces_a_symlink_instead_of_following(
        trapped: tuple[PythonSandbox, FilesTool, Path]) -> None:
    sbx, tool, outside = trapped
    # 'sec' points outside: the new file replaces the link itself; the link's target is never opened
    assert _call(tool, "write", path="sec", content="mine\n") == "Wrote 5 bytes to sec."
    assert (outside / "secret.txt").read_text() == "host secret"
    link = sbx.policy.workspace / "sec"
    assert not link.is_symlink() and link.read_text() == "mine\n"


def test_file_tool_list_and_search_do_not_follow_links(trapped: tuple[PythonSandbox, FilesTool, Path]) -> None:
    _, tool, _ = trapped
    listing = _call(tool, "list", depth=3)
    assert "d -> /" in listing and "out -> " in listing
    assert not any(line.startswith(("out/", "d/", "r/")) for line in listing.splitlines()), listing
    assert _call(tool, "search", pattern="root:").startswith("[no lines match")
    assert _call(tool, "search", pattern="host secret").startswith("[no lines match")
    assert _call(tool, "search", pattern="**/*.txt", mode="glob").splitlines() == ["bad.txt", "sub/ok.txt"]
    assert _call(tool, "list", path="d").startswith("ERROR")
    assert _call(tool, "search", pattern=".", path="out").startswith("ERROR")


def test_file_tool_survives_fifo_socket_sparse_binary(trapped: tuple[PythonSandbox, FilesTool, Path]) -> None:
    _, tool, _ = trapped
    started = time.monotonic()
    assert "not a regular file" in _call(tool, "read", path="fifo")
    assert "not a regular file" in _call(tool, "read", path="sock")
    assert "binary file of 1099511627776 bytes" in _call(tool, "read", path="sparse")
    assert "\ufffd" in _call(tool, "read", path="bad.txt")
    assert _call(tool, "search", pattern="zzz-never").startswith("[no lines match")
    assert time.monotonic() - started < 10


def test_file_tool_toctou_symlink_flip(trapped: tuple[PythonSandbox, FilesTool, Path]) -> None:
    sbx, tool, outside = trapped
    flipper = f"""
    import os, threading, time
    def flip():
        end = time.time() + 2
        while time.time() < end:
            for target in ({str(outside / 'secret.txt')!r}, '/etc/passwd'):
                try:
                    os.unlink('/mnt/data/p')
                except OSError:
                    pass
                open('/mnt/data/p', 'w').write('harmless\\n')
                try:
                    os.unlink('/mnt/data/p')
                    os.symlink(target, '/mnt/data/p')
                except OSError:
                    pass
    threading.Thread(target=flip, daemon=True).start()
    """
    sbx.run(textwrap.dedent(flipper))
    seen = set()
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        seen.add(_call(tool, "read", path="p")[:12])
        _call(tool, "write", path="p", content="from host\n")
    assert not any("root:" in s or "host secret" in s for s in seen), seen
    assert (outside / "secret.txt").read_text() == "host secret"
    sbx.run("import time\ntime.sleep(0.6)")


@needs_root
def test_restart_chown_does_not_follow_planted_links(sbx: PythonSandbox, tmp_path: Path) -> None:
    outside = tmp_path / "host-owned"
    outside.mkdir()
    (outside / "f").write_text("root's")
    sbx.run(f"import os\nos.symlink({str(outside)!r}, '/mnt/data/evil')\nos.symlink({str(outside / 'f')!r}, "
            "'/mnt/data/evilf')")
    sbx.restart()  # chowns the workspace to the session uid again
    assert outside.stat().st_uid == 0 and (outside / "f").stat().st_uid == 0
