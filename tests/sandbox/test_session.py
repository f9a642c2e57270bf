"""Unit properties of the sandbox host side: output capture, the seccomp program, backend choice."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import pytest

from ossagent.sandbox import Backend, Policy, PythonSandbox, SandboxUnavailable, choose_backend, probe
from ossagent.sandbox.seccomp import DENIED_SYSCALLS, SeccompUnavailable, build_filter
from ossagent.sandbox.session import OutputCapture


def test_capture_finds_marker_split_across_chunks() -> None:
    cap = OutputCapture(1000)
    marker = b"0123456789abcdef"
    assert cap.feed(b"hello 01234", marker) is None
    rest = cap.feed(b"56789abcdef and later", marker)
    assert rest == b" and later"
    cap.flush()
    assert cap.render() == "hello "


def test_capture_keeps_head_and_tail() -> None:
    cap = OutputCapture(10)
    for _ in range(100):
        cap.feed(b"abcdefghij", None)
    cap.flush()
    assert cap.dropped == 990
    assert cap.render() == "abcde\n[... 990 bytes of output truncated ...]\nfghij"


def test_capture_flushes_held_back_bytes() -> None:
    cap = OutputCapture(100)
    cap.feed(b"partial", b"a-long-marker-xyz")
    cap.flush()
    assert cap.render() == "partial"


def test_seccomp_program_shape() -> None:
    prog = build_filter(network=False, machine="x86_64")
    assert len(prog) % 8 == 0 and len(prog) // 8 < 4096
    first = struct.unpack("<HBBI", prog[:8])
    assert first == (0x20, 0, 0, 4)  # load arch first
    assert {"ptrace", "mount", "unshare", "bpf", "io_uring_setup", "keyctl"} <= set(DENIED_SYSCALLS)
    assert build_filter(network=True, machine="x86_64") != prog
    with pytest.raises(SeccompUnavailable):
        build_filter(network=False, machine="riscv64")


def test_refusal_names_the_unsafe_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    from ossagent.sandbox import launch

    monkeypatch.setattr(launch.shutil, "which", lambda *a, **k: None)
    with pytest.raises(SandboxUnavailable, match=r"no sandbox is available.*UNSAFE_NO_ISOLATION"):
        choose_backend(None)
    assert choose_backend(Backend.UNSAFE_NO_ISOLATION) is Backend.UNSAFE_NO_ISOLATION


def test_missing_workspace_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SandboxUnavailable, match="not a directory"):
        PythonSandbox(Policy(workspace=tmp_path / "nope"), Backend.UNSAFE_NO_ISOLATION)


@pytest.mark.skipif(probe(Backend.BWRAP) is not None and probe(Backend.UNSHARE_LANDLOCK) is not None,
                    reason="no sandbox backend here")
def test_sandbox_started_in_a_short_lived_thread_survives_it(tmp_path: Path) -> None:
    sbx = PythonSandbox(Policy(workspace=tmp_path, wall_timeout=5))
    try:
        t = threading.Thread(target=lambda: sbx.run("kept = 5"))
        t.start()
        t.join()
        assert sbx.run("kept").value == "5"
    finally:
        sbx.close()


@pytest.mark.skipif(probe(Backend.UNSHARE_LANDLOCK) is not None, reason="the fallback does not work here")
def test_fallback_is_chosen_when_bwrap_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from ossagent.sandbox import launch

    real = launch.shutil.which
    monkeypatch.setattr(launch.shutil, "which", lambda name, **k: None if name == "bwrap" else real(name, **k))
    assert "bubblewrap is not installed" in (probe(Backend.BWRAP) or "")
    assert choose_backend(None) is Backend.UNSHARE_LANDLOCK


def test_a_forgotten_sandbox_is_killed_when_collected(tmp_path: Path) -> None:
    import gc
    import os

    if probe(Backend.BWRAP) is not None and probe(Backend.UNSHARE_LANDLOCK) is not None:
        pytest.skip("no sandbox backend works here")
    sbx = PythonSandbox(Policy(workspace=tmp_path))
    sbx.start()
    assert sbx.run("print('up')").output == "up\n"
    assert sbx.proc is not None
    pid, stage = sbx.proc.pid, sbx._stage
    del sbx  # never closed
    gc.collect()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, not a zombie: the finalizer waited for it
    assert stage is None or not stage.exists()


def test_seccomp_namespaces_option_only_drops_what_chromium_needs() -> None:
    plain = build_filter(network=False, machine="x86_64")
    jail = build_filter(network=False, machine="x86_64", namespaces=True)
    assert jail != plain and len(jail) < len(plain)
