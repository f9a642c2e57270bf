"""Fixtures for the adversarial suite: every test runs once per isolation backend that works here."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ossagent.sandbox import Backend, Policy, PythonSandbox, probe

BACKENDS = (Backend.BWRAP, Backend.UNSHARE_LANDLOCK)
_results: dict[str, dict[str, int]] = {}


@pytest.fixture(params=BACKENDS, ids=[b.value for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    b: Backend = request.param
    reason = probe(b)
    if reason is not None:
        pytest.skip(f"{b.value} unavailable here: {reason}")
    return b


@pytest.fixture
def make(backend: Backend, tmp_path: Path) -> Iterator[Callable[..., PythonSandbox]]:
    """Start a sandbox of the current backend on a fresh workspace; everything is closed afterwards."""
    started: list[PythonSandbox] = []

    def _make(workspace: Path | None = None, **overrides: Any) -> PythonSandbox:
        ws = workspace or tmp_path / f"ws{len(started)}"
        ws.mkdir(exist_ok=True)
        policy = replace(Policy(workspace=ws, wall_timeout=5.0, hard_grace=2.0), **overrides)
        sbx = PythonSandbox(policy, backend)
        sbx.start()
        started.append(sbx)
        return sbx

    yield _make
    for sbx in started:
        sbx.close()


@pytest.fixture
def sbx(make: Callable[..., PythonSandbox]) -> PythonSandbox:
    return make()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count per backend which adversarial cases held (passed), failed, or hit a documented gap (xfail)."""
    if "tests/sandbox/test_adversarial" not in report.nodeid.replace("\\", "/"):
        return
    for b in BACKENDS:
        if f"[{b.value}]" in report.nodeid:
            bucket = _results.setdefault(b.value, {"held": 0, "gap": 0, "failed": 0, "skipped": 0})
            if report.when == "call" and report.passed and not hasattr(report, "wasxfail"):
                bucket["held"] += 1
            elif hasattr(report, "wasxfail") and report.skipped:
                bucket["gap"] += 1
            elif report.failed:
                bucket["failed"] += 1
            elif report.skipped and report.when == "setup":
                bucket["skipped"] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for name, r in _results.items():
        total = r["held"] + r["gap"] + r["failed"]
        terminalreporter.write_line(
            f"adversarial cases held under {name}: {r['held']} of {total} "
            f"({r['gap']} documented gaps, {r['failed']} failed, {r['skipped']} skipped)"
        )
