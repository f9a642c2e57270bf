"""Native CPU kernels (MXFP4 GEMV / dequant, int8 GEMV), built from ``csrc/`` at first use.

The C++ source is compiled once per (source, torch version, compiler) into a cache folder with the
system C++ compiler and loaded as torch custom ops (``torch.ops.ossagent_kernels.*``). The C++ standard
is the one the installed torch's headers demand (``ATen/ATen.h``: C++17 up to torch 2.13, C++20 from
2.14). A build the compiler rejects (a compile or link diagnostic) is remembered in the cache folder for that
key, so it is not retried every run until torch, the compiler or the source change; a build that failed for
any other reason (a full disk, a compiler killed for memory, a library that does not load) is not remembered:
the next run tries again. When there is no compiler, the build fails, or the CPU lacks AVX-512 BF16,
:func:`load` warns once and returns False; callers then keep the pure-torch path, which computes the same
values. :func:`status` tells what happened (for ``ossagent doctor``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

SOURCE = Path(__file__).resolve().parent / "csrc" / "ossagent_kernels.cpp"
Q8_SOURCE = SOURCE.with_name("q8_kernels.cpp")  # int8-activation kernels, compiled into the same library
BF16_SOURCE = SOURCE.with_name("bf16_kernels.cpp")  # bf16 GEMV for decode-sized projections, same library
MOE_BF16_SOURCE = SOURCE.with_name("moe_bf16_kernels.cpp")  # a layer's MoE for a few bf16 tokens, same library
ATTENTION_SOURCE = SOURCE.with_name("attention_kernels.cpp")  # decode attention of several sequences, same library
HEADER = SOURCE.with_name("kernels_common.h")  # included by the sources: part of the cache key
DEFAULT_CACHE = Path.home() / ".cache" / "ossagent" / "kernels"


@dataclass
class KernelStatus:
    """What :func:`load` did. ``state``: not-loaded | built (compiled now) | cached (compiled earlier) |
    failed (build or load failed now; a compiler diagnostic is remembered, any other failure is retried next run)
    | failed-cached (the compiler rejected the same source, torch and compiler before; not retried) |
    no-compiler | unsupported-cpu."""

    state: str = "not-loaded"
    reason: str = ""
    library: str = ""
    torch_version: str = torch.__version__
    compiler: str = ""
    cxx_standard: str = ""
    threads: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def native(self) -> bool:
        return self.state in ("built", "cached")

    @property
    def speed_path(self) -> str:
        if self.native:
            return "native AVX-512 kernels (MXFP4 experts, int8 GEMV)"
        return "pure torch (slower)" if self.state != "not-loaded" else "not chosen yet (no model loaded)"

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "native": self.native, "speed_path": self.speed_path}

    def lines(self) -> list[str]:
        """Human-readable report, one fact a line."""
        out = [f"native kernels: {self.state}" + (f" ({self.reason})" if self.reason else ""),
               f"speed path: {self.speed_path}",
               f"torch {self.torch_version}, compiler {self.compiler or 'none'}"
               + (f", -std={self.cxx_standard}" if self.cxx_standard else "")]
        if self.library:
            out.append(f"library: {self.library}")
        if self.threads:
            out.append(f"compute threads: {self.threads}")
        out += [f"{k}: {v}" for k, v in self.extra.items()]
        return out


_lock = threading.Lock()
_state: dict[str, bool] = {}
_status = KernelStatus()


def _compiler() -> str | None:
    for name in ("c++", "g++", "clang++"):
        found = shutil.which(name)
        if found:
            return found
    return None


def required_standard(include_dirs: list[str]) -> str:
    """The C++ standard torch's headers demand (their ``#error`` guard in ``ATen/ATen.h``); c++17 if none."""
    for d in include_dirs:
        header = Path(d) / "ATen" / "ATen.h"
        if header.is_file():
            m = re.search(r"__cplusplus\s*<\s*(\d{4})\d{2}L", header.read_text(errors="replace"))
            if m:
                return f"c++{int(m.group(1)) % 100:02d}"
    return "c++17"


def _sources() -> tuple[Path, ...]:
    """The C++ files compiled into the one library (read at call time: tests replace ``SOURCE``)."""
    return SOURCE, Q8_SOURCE, BF16_SOURCE, MOE_BF16_SOURCE, ATTENTION_SOURCE


def _key(cxx: str) -> tuple[str, str]:
    """(hash of source + torch + compiler + python, compiler's first version line)."""
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout
    key = hashlib.sha256(b"".join(p.read_bytes() for p in (*_sources(), HEADER)) + torch.__version__.encode()
                         + version.encode() + sys.version.encode()).hexdigest()[:16]
    return key, (version.splitlines() or [cxx])[0]


def _command(cxx: str, std: str) -> list[str]:
    from torch.utils import cpp_extension

    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    cmd = [cxx, "-O3", f"-std={std}", "-shared", "-fPIC", "-fopenmp", "-DNDEBUG", f"-D_GLIBCXX_USE_CXX11_ABI={abi}"]
    cmd += [f"-I{p}" for p in cpp_extension.include_paths()]
    cmd += [str(p) for p in _sources()]
    lib_dirs = cpp_extension.library_paths()
    cmd += [f"-L{p}" for p in lib_dirs] + [f"-Wl,-rpath,{p}" for p in lib_dirs]
    return [*cmd, "-lc10", "-ltorch_cpu", "-ltorch"]


class CompileError(RuntimeError):
    """The compiler rejected the source: a compile or link diagnostic, the same next time for the same key."""


# what the machine did to the build, not what the compiler found in the source (gcc's and clang's wording)
_TRANSIENT = re.compile(r"no space left on device|disk quota exceeded|killed signal terminated program|"
                        r"internal compiler error: killed|virtual memory exhausted|cannot allocate memory|"
                        r"out of memory|resource temporarily unavailable|too many open files|"
                        r"read-only file system|input/output error", re.IGNORECASE)
_DIAGNOSTIC = re.compile(r"(^|[\s:])(fatal )?error:|undefined reference to|ld returned \d+ exit status",
                         re.IGNORECASE | re.MULTILINE)


def is_diagnostic(returncode: int, output: str) -> bool:
    """Whether a failed compiler run is the compiler rejecting the code (remember it) rather than the machine
    failing the build (a signal such as the OOM killer's, a full disk, no memory: try again next run)."""
    if returncode < 0 or _TRANSIENT.search(output):
        return False
    return bool(_DIAGNOSTIC.search(output))


def _machine_cause(returncode: int, output: str) -> str:
    """One line on why the machine failed a build: the signal, the line naming the cause, or the exit code."""
    if returncode < 0:
        return f"the compiler was killed by signal {-returncode}"
    found = _TRANSIENT.search(output)
    if found:
        start = output.rfind("\n", 0, found.start()) + 1
        end = output.find("\n", found.end())
        return output[start:end if end >= 0 else None].strip()[-300:]
    return f"exit {returncode}, " + (f"last output: {output.splitlines()[-1][-300:]}" if output else "no output")


def _compile(cmd: list[str], target: Path) -> None:
    """Run the compiler into a temporary file, then rename it (concurrent builders are harmless).

    Raises :class:`CompileError` for a compiler diagnostic, RuntimeError or OSError for anything else."""
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        res = subprocess.run([*cmd, "-o", tmp], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            output = (res.stderr + "\n" + res.stdout).strip()
            if is_diagnostic(res.returncode, output):
                errors = "\n".join(ln for ln in output.splitlines()  # not the torch headers' warnings
                                   if "error" in ln or "undefined reference" in ln)
                raise CompileError(f"compiling the kernels failed: {(errors or output)[-2000:]}")
            raise RuntimeError(f"compiling the kernels did not finish: {_machine_cause(res.returncode, output)}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _first_error(text: str) -> str:
    """The first compiler ``error:`` (or linker ``undefined reference``) line of a failure message, else its first
    line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln or "undefined reference" in ln]
    return (errors or lines or ["unknown error"])[0][-300:]


def _try_load(cxx: str, cache_dir: Path, st: KernelStatus) -> bool:
    """Build (or reuse) and load the library; fills ``st``. A failure is written next to the library."""
    from torch.utils import cpp_extension

    key, st.compiler = _key(cxx)
    st.cxx_standard = required_standard(cpp_extension.include_paths())
    target = cache_dir / f"ossagent_kernels-{key}.so"
    failed = cache_dir / f"ossagent_kernels-{key}.failed.json"
    st.library = str(target)
    if failed.is_file():
        st.state = "failed-cached"
        try:
            st.reason = str(json.loads(failed.read_text()).get("reason", "unknown"))
        except (OSError, ValueError):
            st.reason = "unknown"
        st.reason += f"; not retried until torch, the compiler or the source change (or delete {failed})"
        return False
    st.state = "cached" if target.exists() else "built"
    try:
        if st.state == "built":
            cache_dir.mkdir(parents=True, exist_ok=True)
            _compile(_command(cxx, st.cxx_standard), target)
        torch.ops.load_library(str(target))
    except CompileError as exc:  # the compiler rejected the source: remembered for this key
        st.state, st.reason = "failed", _first_error(str(exc))
        _remember(failed, st)
        return False
    except Exception as exc:  # the machine failed the build (or the load): this run only, the next one retries
        st.state = "failed"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][-300:]
        st.reason = f"{first}; not remembered: the next run tries again"
        return False
    if not torch.ops.ossagent_kernels.cpu_supported():
        st.state, st.reason = "unsupported-cpu", "the CPU lacks AVX-512 BF16/VNNI"
        return False
    return True


def _remember(failed: Path, st: KernelStatus) -> None:
    record = {"reason": st.reason, "torch": st.torch_version, "compiler": st.compiler,
              "std": st.cxx_standard, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        failed.parent.mkdir(parents=True, exist_ok=True)
        failed.write_text(json.dumps(record, indent=1) + "\n")
    except OSError:
        pass


def load(cache_dir: Path | None = None) -> bool:
    """Build (first time) and load the kernels; True when they can be used on this CPU."""
    global _status
    with _lock:
        if "ok" in _state:
            return _state["ok"]
        st = KernelStatus(threads=torch.get_num_threads())
        cxx = _compiler()
        if cxx is None:
            st.state, st.reason = "no-compiler", "no C++ compiler found (c++, g++ or clang++)"
            ok = False
        else:
            ok = _try_load(cxx, cache_dir or DEFAULT_CACHE, st)
        if not ok:
            warnings.warn(f"ossagent: native kernels {st.state}: {st.reason}; using the slower pure-torch path",
                          stacklevel=2)
        _status = st
        _state["ok"] = ok
        return ok


def available() -> bool:
    """True when :func:`load` has run and succeeded (does not trigger a build)."""
    return _state.get("ok", False)


def status(build: bool = False, cache_dir: Path | None = None) -> KernelStatus:
    """The kernels' state for ``ossagent doctor``: built, cached, failed and why, the speed path in use.

    With ``build`` the kernels are loaded first (compiling them if needed, or reading a remembered failure);
    without it, a process that has not loaded a model reports ``not-loaded``."""
    if build:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load(cache_dir)
    _status.threads = torch.get_num_threads()
    _status.extra["torch build"] = _torch_build()
    return _status


def _torch_build() -> str:
    """Which torch build is installed, and whether it fits this machine."""
    cuda = torch.version.cuda
    if cuda is None:
        return "CPU" + ("" if not torch.cuda.is_available() else " (a CUDA device is present but unused)")
    if torch.cuda.is_available():
        return f"CUDA {cuda} (a CUDA device is present)"
    return f"CUDA {cuda}, but no CUDA device: the CPU build of torch is several GB smaller and runs the same here"
