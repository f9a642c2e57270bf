"""What a sandboxed session may do (the policy) and which isolation mechanism enforces it (the backend)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path


class Backend(enum.Enum):
    """Isolation mechanisms, strongest first. Only ``UNSAFE_NO_ISOLATION`` is never chosen automatically."""

    BWRAP = "bwrap"
    """bubblewrap: all namespaces, allowlisted read-only root, non-root uid, seccomp, rlimits."""
    UNSHARE_LANDLOCK = "unshare+landlock"
    """No bwrap: util-linux ``unshare`` (mount, pid, net namespaces), Landlock, seccomp, rlimits, non-root uid."""
    UNSAFE_NO_ISOLATION = "unsafe-no-isolation"
    """Runs code as the host user with rlimits only. Only for trusted code, and only when asked for by name."""


class SandboxUnavailable(RuntimeError):
    """No isolation mechanism works on this machine (or the one asked for does not); nothing was run."""


@dataclass(frozen=True)
class Policy:
    """Limits of one sandboxed session. Sizes in bytes, times in seconds."""

    workspace: Path
    network: bool = False  # False: only a private loopback exists inside; True: the host's network
    wall_timeout: float = 120.0  # per call, soft: the call is interrupted and the state kept
    hard_grace: float = 5.0  # after wall_timeout: kill and restart (state lost)
    cpu_per_call: int = 120  # CPU seconds per call (soft, state kept)
    cpu_total: int = 3600  # CPU seconds for the worker's whole life (hard kill)
    memory: int = 2 << 30  # address space of each process (RLIMIT_AS)
    processes: int = 64  # processes and threads of the session uid (RLIMIT_NPROC; needs a non-root uid)
    file_size: int = 256 << 20  # largest file the sandbox may write (RLIMIT_FSIZE)
    open_files: int = 256
    output: int = 20_000  # characters of output returned per call (head + tail kept)
    tmp_size: int = 256 << 20  # private /tmp (tmpfs)
    shm_size: int = 64 << 20  # private /dev/shm (tmpfs)
    startup_timeout: float = 20.0
    uid: int | None = None  # session uid when the host runs as root; None: allocated from 62000 up
    extra_read_only: tuple[Path, ...] = field(default_factory=tuple)  # more host paths to expose read-only

    def rlimits(self) -> dict[str, int]:
        return {
            "as": self.memory,
            "nproc": self.processes,
            "fsize": self.file_size,
            "nofile": self.open_files,
            "core": 0,
            "cpu": self.cpu_total,
        }
