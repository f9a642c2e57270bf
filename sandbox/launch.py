"""Probing the isolation backends and building the command line that starts a worker under one of them.

When the host runs as root, every backend drops to a per-session uid before any sandboxed code runs. Paths that
uid cannot traverse (an interpreter under root's 0700 home, a workspace under a 0700 temp dir) are first
bind-mounted into a private "stage" by a short root-only step in its own mount namespace
(``unshare --mount``), so nothing on the host changes permissions.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ossagent.sandbox.policy import Backend, Policy, SandboxUnavailable
from ossagent.sandbox.seccomp import SeccompUnavailable, build_filter
from ossagent.sandbox.walk import WalkStats, walk

CLEAN_PATH = "/usr/bin:/bin"
WORKSPACE_INSIDE = "/mnt/data"
STAGE_BASE = Path("/run/ossagent-sbx")
WORKER_SOURCE = Path(__file__).with_name("worker.py")
_uid_counter = itertools.count()
CHOWN_DEPTH = 256  # levels of the workspace given to the session uid at each start (one open fd per level)
CHOWN_ENTRIES = 1_000_000

# Runs as root in a private mount namespace: performs the mount operations given as arguments, then execs.
#   S src name   bind src onto $stage/name (read-only when it is a directory the sandbox only reads)
#   W src name   bind src onto $stage/name, writable
#   T dir size   sized tmpfs (mode 0755) on dir;  M dir  mkdir -p;  B src dst  bind;  C dir  chmod 1777
_STAGE_SCRIPT = r"""
set -eu
mode=$1; stage=$2; shift 2
if [ -n "$stage" ]; then mount -t tmpfs -o size=1m,mode=0755 ossagent-stage "$stage"; fi
while [ "$1" != "--" ]; do
  case "$1" in
    S|W) if [ -d "$2" ]; then mkdir "$stage/$3"; else : > "$stage/$3"; fi
         mount --bind "$2" "$stage/$3"
         if [ "$1" = S ]; then mount -o remount,bind,ro,nosuid,nodev "$stage/$3"; fi
         shift 3 ;;
    T) mount -t tmpfs -o "size=$3,mode=0755,nosuid,nodev" ossagent-tmp "$2"; shift 3 ;;
    M) mkdir -p "$2"; shift 2 ;;
    B) mount --bind "$2" "$3"; shift 3 ;;
    C) chmod 1777 "$2"; shift 2 ;;
    *) echo "stage: bad op $1" >&2; exit 97 ;;
  esac
done
shift
if [ "$mode" = exec ]; then exec "$@"; fi
# "wait": stay as pid 1 of the new pid namespace, reaping orphans, so the worker is an ordinary process
"$@" && exit 0 || exit $?
"""


@dataclass
class LaunchPlan:
    argv: list[str]
    user_uid: int | None  # uid the sandboxed code runs as on the host (None: the host user)
    stage: Path | None  # mount point to remove when the session ends
    cwd_inside: str
    landlock: dict[str, object] | None  # rules the worker applies to itself (fallback backend)
    seccomp_via_config: bytes | None  # program the worker installs itself (fallback backend)
    seccomp_fd_program: bytes | None  # program bwrap installs from an fd
    pass_fds: tuple[int, ...] = ()


def _run_quiet(argv: list[str], timeout: float = 10.0) -> tuple[int, str]:
    try:
        proc = subprocess.run(
            argv, env={"PATH": CLEAN_PATH}, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return proc.returncode, (proc.stderr or proc.stdout).decode(errors="replace").strip()


def landlock_abi() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    rc = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return int(rc) if rc > 0 else 0


def probe(backend: Backend, *, network: bool = False) -> str | None:
    """None when ``backend`` works on this machine, else the reason it does not."""
    if backend is Backend.UNSAFE_NO_ISOLATION:
        return None
    try:
        build_filter(network=network)
    except SeccompUnavailable as exc:
        return str(exc)
    root = os.geteuid() == 0
    if root and (shutil.which("setpriv", path=CLEAN_PATH) is None or shutil.which("unshare", path=CLEAN_PATH) is None):
        return "setpriv and unshare (util-linux) are needed to drop root before sandboxing"
    if backend is Backend.BWRAP:
        bwrap = shutil.which("bwrap", path=CLEAN_PATH)
        if bwrap is None:
            return "bubblewrap is not installed (Debian: apt-get install bubblewrap)"
        argv = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--ro-bind", "/", "/",
                "--proc", "/proc", "--dev", "/dev", "true"]
        if root:
            argv = ["setpriv", "--reuid", "62000", "--regid", "62000", "--clear-groups", *argv]
        rc, err = _run_quiet(argv)
        return None if rc == 0 else f"bwrap cannot create its namespaces here (rc {rc}): {err[:300]}"
    if shutil.which("unshare", path=CLEAN_PATH) is None:
        return "unshare (util-linux) is not installed"
    if landlock_abi() < 1:
        return "Landlock is not enabled in this kernel (needs Linux >= 5.13 with lsm=landlock)"
    ns = ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
    if not root:
        ns.insert(1, "--user")
        ns.insert(2, "--map-root-user")
    rc, err = _run_quiet([*ns, "true"])
    return None if rc == 0 else f"unshare cannot create namespaces here (rc {rc}): {err[:300]}"


def choose_backend(requested: Backend | None, *, network: bool = False) -> Backend:
    """The backend to use: ``requested`` if it works, else the strongest that works; fail closed."""
    if requested is not None:
        reason = probe(requested, network=network)
        if reason is not None:
            raise SandboxUnavailable(f"sandbox backend {requested.value!r} is unavailable: {reason}")
        return requested
    reasons = []
    for backend in (Backend.BWRAP, Backend.UNSHARE_LANDLOCK):
        reason = probe(backend, network=network)
        if reason is None:
            return backend
        reasons.append(f"{backend.value}: {reason}")
    raise SandboxUnavailable(
        "no sandbox is available, so model-written code will not run. "
        + "; ".join(reasons)
        + ". Install bubblewrap, or pass Backend.UNSAFE_NO_ISOLATION explicitly to run code without isolation."
    )


def allocate_uid(policy: Policy) -> int:
    if policy.uid is not None:
        return policy.uid
    return 62000 + (os.getpid() * 17 + next(_uid_counter)) % 3000


def _traversable(path: Path) -> bool:
    """Can a stranger uid (not owner, no group) reach and read ``path``?"""
    parts = path.resolve().parts
    for i in range(1, len(parts) + 1):
        st = os.stat(Path(*parts[:i]))
        if not st.st_mode & stat.S_IXOTH or (i == len(parts) and not st.st_mode & stat.S_IROTH):
            return False
    return True


def python_paths() -> list[Path]:
    """Host directories the interpreter needs: the installation prefix and, for a venv, the venv."""
    prefixes = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    return sorted(p for p in prefixes if p != Path("/usr"))


def chown_tree(top: Path, uid: int) -> WalkStats:
    """Give the workspace to the session uid. fd-based and never following links, so a directory swapped for
    a symlink by sandboxed code mid-walk cannot make this chown files outside the workspace. Iterative and
    bounded (:mod:`ossagent.sandbox.walk`): what lies deeper than ``CHOWN_DEPTH`` keeps its owner."""
    os.chown(top, uid, uid, follow_symlinks=False)
    stats = WalkStats()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for _, dirfd, dirnames, filenames in walk(fd, max_depth=CHOWN_DEPTH, max_entries=CHOWN_ENTRIES,
                                                  stats=stats):
            for name in dirnames + filenames:
                with contextlib.suppress(FileNotFoundError):
                    os.chown(name, uid, uid, dir_fd=dirfd, follow_symlinks=False)
    finally:
        os.close(fd)
    return stats


PASSWD = "root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:1000:1000:sandbox:/mnt/data:/bin/sh\n" \
         "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nsandbox:x:1000:\nnogroup:x:65534:\n"


def _bwrap_argv(policy: Policy, binds: list[tuple[str, str]], ws: str, worker: str,
                fds: tuple[int, int, int, int, int]) -> list[str]:
    req_fd, rep_fd, seccomp_fd, passwd_fd, group_fd = fds
    argv = [
        "bwrap", "--die-with-parent", "--new-session", "--unshare-all", "--unshare-user", "--disable-userns",
        *(["--share-net"] if policy.network else []),
        "--uid", "1000", "--gid", "1000", "--hostname", "sandbox", "--cap-drop", "ALL",
        "--size", str(policy.tmp_size), "--tmpfs", "/tmp",  # first: later binds may live under /tmp
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
        "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
    ]
    etc = ["/etc/ld.so.cache", "/etc/ssl", "/etc/localtime", "/etc/alternatives"]
    if policy.network:
        etc += ["/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf"]
    for path in etc:
        argv += ["--ro-bind-try", path, path]
    for src, dst in binds:
        argv += ["--ro-bind", src, dst]
    # a user database naming the sandbox's own uid: getpass.getuser() and pwd lookups work inside
    argv += ["--ro-bind-data", str(passwd_fd), "/etc/passwd", "--ro-bind-data", str(group_fd), "/etc/group"]
    argv += [
        "--ro-bind", worker, "/opt/ossagent/worker.py",
        "--proc", "/proc", "--dev", "/dev", "--size", str(policy.shm_size), "--tmpfs", "/dev/shm",
        "--bind", ws, WORKSPACE_INSIDE, "--chdir", WORKSPACE_INSIDE,
        "--remount-ro", "/", "--remount-ro", "/dev",  # else both are writable, unbounded tmpfs
        "--clearenv", *itertools.chain.from_iterable(("--setenv", k, v) for k, v in sandbox_env().items()),
        "--seccomp", str(seccomp_fd),
        "--", sys.executable, "-I", "-u", "/opt/ossagent/worker.py", str(req_fd), str(rep_fd),
    ]
    return argv


def sandbox_env() -> dict[str, str]:
    """The whole environment of sandboxed code: nothing of the host's."""
    return {
        "HOME": WORKSPACE_INSIDE, "PATH": CLEAN_PATH, "USER": "sandbox", "LOGNAME": "sandbox", "LANG": "C.UTF-8", "TMPDIR": "/tmp",
        "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    }


def _hidden_ancestor(path: Path) -> Path | None:
    """The highest ancestor of ``path`` a stranger uid cannot traverse, or None."""
    parts = path.parts
    for i in range(2, len(parts) + 1):
        if not os.stat(Path(*parts[:i])).st_mode & stat.S_IXOTH:
            return Path(*parts[:i])
    return None


def plan(backend: Backend, policy: Policy, *, req_fd: int, rep_fd: int, seccomp_fd: int, stage: Path | None,
         uid: int | None, user_db_fds: tuple[int, int] = (-1, -1)) -> LaunchPlan:
    """The command that starts the worker under ``backend``. ``stage`` and ``uid`` only when the host is root."""
    ws = str(policy.workspace.resolve())
    prefixes = [*python_paths(), *(p.resolve() for p in policy.extra_read_only)]
    program = build_filter(network=policy.network)
    if backend is Backend.UNSAFE_NO_ISOLATION:
        argv = [sys.executable, "-I", "-u", str(WORKER_SOURCE), str(req_fd), str(rep_fd)]
        return LaunchPlan(argv, None, None, ws, None, None, None, (req_fd, rep_fd))
    ops: list[str] = []
    if stage is not None:
        for i, p in enumerate(prefixes):
            ops += ["S", str(p), f"p{i}"]
        ops += ["S", str(WORKER_SOURCE), "worker.py", "W", ws, "ws"]
        sources = [str(stage / f"p{i}") for i in range(len(prefixes))]
        worker, ws_src = str(stage / "worker.py"), str(stage / "ws")
    else:
        sources, worker, ws_src = [str(p) for p in prefixes], str(WORKER_SOURCE), ws
    # setpriv --pdeathsig: every process of the chain dies with the host (a uid change clears it, so again after)
    drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--pdeathsig=KILL"] if uid is not None else []
    reap = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv", path=CLEAN_PATH) else []
    if backend is Backend.BWRAP:
        fds = (req_fd, rep_fd, seccomp_fd, *user_db_fds)
        inner = _bwrap_argv(policy, list(zip(sources, map(str, prefixes), strict=True)), ws_src, worker, fds)
        if stage is None:
            return LaunchPlan([*reap, *inner], None, None, WORKSPACE_INSIDE, None, None, program, fds)
        argv = [*reap, "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _STAGE_SCRIPT, "stage",
                "exec", str(stage), *ops, "--", *drop, *inner]
        return LaunchPlan(argv, uid, stage, WORKSPACE_INSIDE, None, None, program, fds)
    # unshare + Landlock: mounts made by the stage script, confinement applied by the worker itself
    ops += ["T", "/mnt", "1m", "M", WORKSPACE_INSIDE, "B", ws_src, WORKSPACE_INSIDE]
    hidden = {"/tmp": policy.tmp_size, "/dev/shm": policy.shm_size}
    if stage is not None:
        for p in prefixes:
            top = _hidden_ancestor(p)
            if top is not None:
                hidden.setdefault(str(top), 1 << 20)
    for d, size in hidden.items():
        ops += ["T", d, str(size)] + (["C", d] if d in ("/tmp", "/dev/shm") else [])
    for src, p in zip(sources, prefixes, strict=True):
        if stage is not None and any(p.is_relative_to(h) for h in hidden):
            ops += ["M", str(p), "B", src, str(p)]
    env = [f"{k}={v}" for k, v in sandbox_env().items()]
    ns = ["unshare", "--mount", "--propagation", "private", "--net", "--pid", "--fork", "--kill-child",
          "--mount-proc"]
    if policy.network:
        ns.remove("--net")
    if uid is None:
        ns[1:1] = ["--user", "--map-root-user"]
    ns[0:0] = reap
    argv = [*ns, "--", "sh", "-c", _STAGE_SCRIPT, "stage", "wait", str(stage or ""), *ops, "--", *drop,
            "env", "-i", *env, sys.executable, "-I", "-u", worker, str(req_fd), str(rep_fd)]
    read_only = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc/ld.so.cache", "/etc/ssl", "/etc/localtime",
                 "/etc/alternatives", *map(str, prefixes), *([str(stage)] if stage else [worker])]
    if policy.network:
        read_only += ["/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf"]
    read_write = [WORKSPACE_INSIDE, "/tmp", "/dev/shm", "/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                  "/dev/urandom"]
    landlock = {"read_only": read_only, "read_write": read_write, "network": policy.network}
    return LaunchPlan(argv, uid, stage, WORKSPACE_INSIDE, landlock, program, None, (req_fd, rep_fd))
