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
