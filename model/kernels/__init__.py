"""Native CPU kernels (MXFP4 GEMV / dequant, int8 GEMV), built from ``csrc/`` at first use.

The C++ source is compiled once per (source, torch version, compiler) into a cache folder with the
system C++ compiler and loaded as torch custom ops (``torch.ops.ossagent_kernels.*``). When there is
no compiler, the build fails, or the CPU lacks AVX-512 BF16, :func:`load` warns once and returns
False; callers then keep the pure-torch path, which computes the same values.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).resolve().parent / "csrc" / "ossagent_kernels.cpp"
DEFAULT_CACHE = Path.home() / ".cache" / "ossagent" / "kernels"

_lock = threading.Lock()
_state: dict[str, bool] = {}


def _compiler() -> str | None:
    for name in ("c++", "g++", "clang++"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _build(cxx: str, cache_dir: Path) -> Path:
    """Compile SOURCE into ``cache_dir`` (atomically; concurrent builders are harmless)."""
    from torch.utils import cpp_extension

    src = SOURCE.read_bytes()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout
    key = hashlib.sha256(
        src + torch.__version__.encode() + version.encode() + sys.version.encode()
    ).hexdigest()
    target = cache_dir / f"ossagent_kernels-{key[:16]}.so"
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    cmd = [
        cxx,
        "-O3",
        "-std=c++17",
        "-shared",
        "-fPIC",
        "-fopenmp",
        "-DNDEBUG",
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
    ]
    cmd += [f"-I{p}" for p in cpp_extension.include_paths()]
    cmd += [str(SOURCE)]
    lib_dirs = cpp_extension.library_paths()
    cmd += [f"-L{p}" for p in lib_dirs] + [f"-Wl,-rpath,{p}" for p in lib_dirs]
    cmd += ["-lc10", "-ltorch_cpu", "-ltorch"]
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache_dir)
    os.close(fd)
    try:
        res = subprocess.run([*cmd, "-o", tmp], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"compiling {SOURCE.name} failed: {res.stderr.strip()[-2000:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load(cache_dir: Path | None = None) -> bool:
    """Build (first time) and load the kernels; True when they can be used on this CPU."""
    with _lock:
        if "ok" in _state:
            return _state["ok"]
        ok = False
        cxx = _compiler()
        if cxx is None:
            warnings.warn(
                "ossagent: no C++ compiler found; using the slower pure-torch kernels", stacklevel=2
            )
        else:
            try:
                torch.ops.load_library(str(_build(cxx, cache_dir or DEFAULT_CACHE)))
                ok = bool(torch.ops.ossagent_kernels.cpu_supported())
                if not ok:
                    warnings.warn(
                        "ossagent: CPU lacks AVX-512 BF16; using the pure-torch kernels", stacklevel=2
                    )
            except Exception as exc:  # any build or load failure falls back to torch
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                warnings.warn(
                    f"ossagent: native kernels unavailable ({first}); using pure torch", stacklevel=2
                )
        _state["ok"] = ok
        return ok


def available() -> bool:
    """True when :func:`load` has run and succeeded (does not trigger a build)."""
    return _state.get("ok", False)
