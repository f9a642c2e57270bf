"""How the native kernels are built: the C++ standard torch needs, a remembered failure, the status report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.utils import cpp_extension

from ossagent.model import kernels


@pytest.fixture
def fresh_state() -> Iterator[None]:
    """Forget what this process loaded, and restore it afterwards."""
    saved, saved_status = dict(kernels._state), kernels._status
    kernels._state.clear()
    kernels._status = kernels.KernelStatus()
    try:
        yield
    finally:
        kernels._state.clear()
        kernels._state.update(saved)
        kernels._status = saved_status


def _header(root: Path, guard: str) -> str:
    (root / "ATen").mkdir(parents=True)
    (root / "ATen" / "ATen.h").write_text(f"#pragma once\n{guard}\n#error C++ too old\n#endif\n")
    return str(root)


def test_required_standard_follows_the_torch_headers(tmp_path: Path) -> None:
    old = _header(tmp_path / "old", "#if !defined(_MSC_VER) && __cplusplus < 201703L")
    new = _header(tmp_path / "new", "#if !defined(_MSC_VER) && __cplusplus < 202002L")
    assert kernels.required_standard([old]) == "c++17"
    assert kernels.required_standard([str(tmp_path / "none"), new]) == "c++20"
    assert kernels.required_standard([str(tmp_path / "none")]) == "c++17"
    # the installed torch: its guard is what the build passes
    here = kernels.required_standard(cpp_extension.include_paths())
    version = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
    assert here == ("c++20" if version >= (2, 14) else "c++17")
    assert f"-std={here}" in kernels._command("c++", here)


def test_failed_build_is_remembered_and_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_state: None
) -> None:
    if kernels._compiler() is None:
        pytest.skip("no C++ compiler")
    broken = tmp_path / "broken.cpp"
    broken.write_text("this is not C++;\n")
    monkeypatch.setattr(kernels, "SOURCE", broken)
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match="native kernels failed: .*error") as record:
        assert kernels.load(cache) is False
        assert kernels.load(cache) is False  # same process: no second attempt, no second warning
    assert len(record) == 1
    st = kernels.status()
    assert st.state == "failed" and not st.native and "pure torch" in st.speed_path
    failures = list(cache.glob("*.failed.json"))
    assert len(failures) == 1
    assert json.loads(failures[0].read_text())["torch"] == torch.__version__

    def no_compile(cmd: list[str], target: Path) -> None:
        raise AssertionError("a remembered failure must not be rebuilt")

    kernels._state.clear()  # a new run of the program
    monkeypatch.setattr(kernels, "_compile", no_compile)
    with pytest.warns(UserWarning, match="failed-cached") as record:
        assert kernels.load(cache) is False
    assert len(record) == 1
    st = kernels.status()
    assert st.state == "failed-cached" and "error" in st.reason and "not retried" in st.reason

    broken.write_text("this is other broken C++;\n")  # the source changed: built again
    kernels._state.clear()
    with pytest.warns(UserWarning, match="a remembered failure"):
        kernels.load(cache)
    assert kernels.status().state == "failed"


def test_status_reports_the_real_build(tmp_path: Path, fresh_state: None) -> None:
    if kernels._compiler() is None:
        pytest.skip("no C++ compiler")
    assert kernels.status().state == "not-loaded"
    st = kernels.status(build=True)  # the default cache: the library the other tests load
    assert st.state in ("built", "cached", "unsupported-cpu")
    assert st.cxx_standard == kernels.required_standard(cpp_extension.include_paths())
    assert st.compiler and Path(st.library).is_file()
    d = st.as_dict()
    assert d["native"] == (st.state in ("built", "cached")) and d["speed_path"] == st.speed_path
    assert any(line.startswith("native kernels: ") for line in st.lines())
    assert st.extra["torch build"].startswith("CPU" if torch.version.cuda is None else "CUDA")


def _fake_compiler(tmp_path: Path, body: str) -> tuple[str, Path]:
    """A stand-in for c++ that answers --version like a compiler, counts its builds, then runs ``body``."""
    calls = tmp_path / "calls"
    script = tmp_path / "fake-c++"
    script.write_text(f'#!/bin/sh\n[ "$1" = --version ] && {{ echo "fake-c++ 1.0"; exit 0; }}\n'
                      f'echo build >> "{calls}"\n{body}\n')
    script.chmod(0o755)
    return str(script), calls


@pytest.mark.parametrize(("body", "why"), [
    ("kill -9 $$", "the compiler was killed by signal 9"),  # the OOM killer takes the compiler
    ('echo "c++: fatal error: Killed signal terminated program cc1plus" >&2; exit 1',  # ... seen by the driver
     "c++: fatal error: Killed signal terminated program cc1plus"),
    ('echo "/usr/bin/ld: final link failed: No space left on device" >&2\n'
     'echo "collect2: error: ld returned 1 exit status" >&2; exit 1',  # a full disk, reported by the linker
     "/usr/bin/ld: final link failed: No space left on device"),
    ("echo half a line; exit 3", "exit 3, last output: half a line"),  # no diagnostic: cannot be told apart
], ids=["sigkill", "killed-cc1plus", "enospc", "silent"])
def test_a_build_the_machine_failed_is_not_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_state: None, body: str, why: str
) -> None:
    cxx, calls = _fake_compiler(tmp_path, body)
    monkeypatch.setattr(kernels, "_compiler", lambda: cxx)
    cache = tmp_path / "cache"
    expected = f"ossagent: native kernels failed: compiling the kernels did not finish: {why}; " \
               "not remembered: the next run tries again; using the slower pure-torch path"
    with pytest.warns(UserWarning) as rec:
        assert kernels.load(cache) is False
        assert kernels.load(cache) is False  # this run: one warning, one attempt
    assert [str(w.message) for w in rec] == [expected]  # the golden line: one warning, one attempt
    assert calls.read_text().count("build") == 1
    assert kernels.status().state == "failed" and not list(cache.glob("*.failed.json"))
    assert not list(cache.glob("*.so")), "no half-built library is left behind"
    kernels._state.clear()  # the next run of the program builds again
    with pytest.warns(UserWarning, match="not remembered"):
        assert kernels.load(cache) is False
    assert calls.read_text().count("build") == 2


def test_a_compiler_diagnostic_is_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             fresh_state: None) -> None:
    """A link error (here: as gcc's driver reports one) is the compiler's verdict on the code: remembered."""
    cxx, calls = _fake_compiler(tmp_path, 'echo "k.cpp:(.text+0x1): undefined reference to \\`at::foo()\'" >&2\n'
                                          'echo "collect2: error: ld returned 1 exit status" >&2; exit 1')
    monkeypatch.setattr(kernels, "_compiler", lambda: cxx)
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match="native kernels failed: .*undefined reference"):
        assert kernels.load(cache) is False
    (failure,) = cache.glob("*.failed.json")
    assert "undefined reference" in json.loads(failure.read_text())["reason"]
    kernels._state.clear()
    with pytest.warns(UserWarning, match="failed-cached"):
        assert kernels.load(cache) is False
    assert calls.read_text().count("build") == 1, "not rebuilt"


def test_a_full_disk_before_the_compiler_runs_is_not_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_state: None
) -> None:
    if kernels._compiler() is None:
        pytest.skip("no C++ compiler")

    def full(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(kernels.tempfile, "mkstemp", full)
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match="No space left on device; not remembered"):
        assert kernels.load(cache) is False
    assert not list(cache.glob("*.failed.json"))
    assert "not remembered" in "; ".join(kernels.status().lines())  # what ossagent doctor prints


@pytest.mark.parametrize(("returncode", "output", "remembered"), [
    (1, "k.cpp:3:5: error: 'foo' was not declared in this scope", True),
    (1, "k.cpp:1:10: fatal error: ATen/ATen.h: No such file or directory", True),
    (1, "clang++: error: linker command failed with exit code 1", True),
    (1, "cc1plus: fatal error: k.cpp: No space left on device", False),
    (4, "c++: internal compiler error: Killed (program cc1plus)", False),
    (1, "virtual memory exhausted: Cannot allocate memory", False),
    (-9, "", False),
    (1, "", False),
])
def test_which_failures_are_the_compilers(returncode: int, output: str, remembered: bool) -> None:
    assert kernels.is_diagnostic(returncode, output) is remembered
