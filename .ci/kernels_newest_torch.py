#!/usr/bin/env python3
"""CI step: the native kernels against the newest torch pip can install here (make test covers the pinned one).

In a venv of its own, cached under ~/.cache/ossagent/ci/torch-<version> (the CUDA wheels torch pulls on x86_64
make it ~5 GB; it is built once per torch version and reused), with ossagent installed from this checkout:

1. ``ossagent doctor`` must report the kernels built or cached with the C++ standard that torch's headers demand
   (c++20 from torch 2.14), on the native speed path;
2. the kernel tests run there (tests/model/test_kernel*.py): the build and its remembered failures, the MXFP4
   dequant bit for bit and the GEMVs within bounds against the pure-torch / fp64 references, the int8-activation
   kernels; then the model's fast paths against the slow ones;
3. the README's main job, ``ossagent run`` on the shipped demo model, answers through the real tools.

Usage: python3 .ci/kernels_newest_torch.py [--torch VERSION] [--cache DIR]. Without --torch, the newest version
pip resolves here (the machine's pip configuration may cap it). Prints what each step took; exit 0 when all pass.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# every kernel test file (tests/model/test_kernel*.py), the fast paths against the slow ones, the main job
TESTS = ["tests/model/test_kernel*.py", "tests/model/test_fast_paths.py",
         "tests/demo/test_demo_cli.py::test_main_job_runs_on_the_demo_model"]


def say(msg: str) -> None:
    print(f"kernels-newest-torch: {msg}", flush=True)


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, text=True, check=False, **kw)  # type: ignore[call-overload,no-any-return]


def pip(python: Path, *args: str) -> None:
    res = run([str(python), "-m", "pip", *args, "--quiet", "--disable-pip-version-check"],
              capture_output=True)
    if res.returncode != 0:
        noise = re.compile(r"^WARNING: Location .* is ignored")
        err = "\n".join(ln for ln in (res.stderr + res.stdout).splitlines() if not noise.match(ln))
        raise SystemExit(f"kernels-newest-torch: pip {' '.join(args)} failed:\n{err[-3000:]}")


def newest_torch(python: Path) -> str:
    """The torch version pip would install here now (the newest the index offers within pip's configuration)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        pip(python, "install", "--dry-run", "--no-deps", "--ignore-installed", "--report", str(report), "torch")
        (item,) = [i for i in json.loads(report.read_text())["install"] if i["metadata"]["name"] == "torch"]
        return str(item["metadata"]["version"])


def venv_with_torch(cache: Path, version: str) -> Path:
    """A venv holding torch==version (made once; a half-made one is made again)."""
    folder = cache / f"torch-{version}"
    python = folder / "bin" / "python"
    ready = folder / ".torch-ready"
    if ready.is_file() and python.exists():
        say(f"torch {version}: cached venv {folder}")
        return python
    t = time.perf_counter()
    run(["rm", "-rf", str(folder)])
    cache.mkdir(parents=True, exist_ok=True)
    if run([sys.executable, "-m", "venv", str(folder)]).returncode != 0:
        raise SystemExit(f"kernels-newest-torch: could not make a venv at {folder}")
    pip(python, "install", f"torch=={version}")
    ready.write_text(version + "\n")
    say(f"torch {version}: new venv {folder} in {time.perf_counter() - t:.0f} s")
    return python


def install_checkout(python: Path) -> None:
    """This checkout and its dependencies, against the venv's torch (pip leaves that torch alone: it fits)."""
    t = time.perf_counter()
    # transformers: the kernel tests compare the MXFP4 dequant with its converter too
    pip(python, "install", "-e", str(REPO), "pytest>=8", "pytest-timeout>=2.3", "transformers>=4.55")
    say(f"ossagent installed from {REPO} in {time.perf_counter() - t:.0f} s")


def check_doctor(python: Path, version: str) -> None:
    """The kernels line of ``ossagent doctor``: built or cached, -std as torch's headers demand."""
    t = time.perf_counter()
    res = run([str(python), "-m", "ossagent.agent.cli", "doctor"], capture_output=True, cwd=REPO)
    line = next((ln for ln in res.stdout.splitlines() if re.match(r"\S+\s+kernels\s", ln)), "")
    say(f"doctor ({time.perf_counter() - t:.0f} s): {line.strip() or res.stdout[-2000:] + res.stderr[-2000:]}")
    std = run([str(python), "-c", "from torch.utils import cpp_extension as c; from ossagent.model.kernels import "
               "required_standard as r; print(r(c.include_paths()))"], capture_output=True, cwd=REPO)
    expected = std.stdout.strip()
    problems = []
    if not re.search(r"native kernels: (built|cached);", line):
        problems.append("the kernels are not built or cached")
    if f"torch {version}" not in line:
        problems.append(f"doctor does not report torch {version}")
    if not expected or f"-std={expected}" not in line:
        problems.append(f"the build does not use -std={expected or '?'} (torch's headers)")
    if "speed path: native" not in line:
        problems.append("the speed path is not native")
    if problems:
        raise SystemExit("kernels-newest-torch: " + "; ".join(problems))


def run_tests(python: Path) -> None:
    t = time.perf_counter()
    paths = [str(p.relative_to(REPO)) for t in TESTS if "*" in t for p in sorted(REPO.glob(t))]
    res = run([str(python), "-m", "pytest", "-p", "no:cacheprovider", *paths, *(t for t in TESTS if "*" not in t)],
              cwd=REPO)
    say(f"kernel tests under the newest torch: exit {res.returncode} in {time.perf_counter() - t:.0f} s")
    if res.returncode != 0:
        raise SystemExit(res.returncode)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--torch", help="torch version (default: the newest pip resolves here)")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "ossagent" / "ci")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    version = args.torch or newest_torch(Path(sys.executable))
    say(f"newest torch: {version}")
    python = venv_with_torch(args.cache, version)
    install_checkout(python)
    check_doctor(python, version)
    run_tests(python)
    say(f"passed in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
