"""The Python worker that runs inside the sandbox: standard library only, started as a script.

Protocol (inherited pipe fds given in argv): frames of a 4-byte big-endian length plus UTF-8 JSON, text only.
The first frame from the host is the configuration (rlimits, and for the fallback backend the Landlock rules and
the seccomp program, which the worker applies to itself before answering ``ready``). Then each request is
``{"op": "exec", "code", "nonce", "timeout", "cpu"}``; the worker runs the code in one long-lived namespace,
writes the nonce to fd 1 after the code's output, and answers ``{"nonce", "value", "error", ...}``.

Never imports ossagent: this file is bind-mounted read-only into the sandbox and run by itself.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import ctypes
import json
import os
import resource
import signal
import struct
import sys
import traceback
from typing import Any

MAX_FRAME = 1 << 20
MAX_VALUE_CHARS = 50_000


class SoftTimeout(BaseException):
    """Raised in the user's code when the call's wall-clock time is up (state is kept)."""


class CpuLimit(BaseException):
    """Raised in the user's code when the call's CPU budget is spent (state is kept)."""


def _read_exact(fd: int, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def read_frame(fd: int) -> dict[str, Any]:
    (n,) = struct.unpack(">I", _read_exact(fd, 4))
    if n > MAX_FRAME * 4:
        raise ValueError("frame too large")
    return json.loads(_read_exact(fd, n).decode("utf-8"))


def write_frame(fd: int, obj: dict[str, Any]) -> None:
    data = json.dumps(obj).encode("utf-8")
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


# ---------------------------------------------------------------- confinement applied by the worker itself

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446


def _check(rc: int, what: str) -> int:
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


def no_new_privs() -> None:
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")


def install_seccomp(program: bytes) -> None:
    class SockFprog(ctypes.Structure):
        _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))

    buf = ctypes.create_string_buffer(program, len(program))
    prog = SockFprog(len(program) // 8, ctypes.addressof(buf))
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0), "seccomp")


# Landlock access rights (uapi/linux/landlock.h)
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1, 2, 4, 8
FS_ALL_V1 = (1 << 13) - 1
FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
NET_BIND_TCP, NET_CONNECT_TCP = 1, 2
SCOPE_ABSTRACT_UNIX, SCOPE_SIGNAL = 1, 2


def landlock_abi() -> int:
    rc = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return int(rc) if rc > 0 else 0


def apply_landlock(read_only: list[str], read_write: list[str], *, network: bool) -> int:
    """Confine this process: ``read_only`` paths readable and executable, ``read_write`` also writable.

    Denies all TCP bind/connect (ABI >= 4) unless ``network``, and scopes abstract unix sockets and signals
    to the sandbox (ABI >= 6). Returns the ABI used. Raises OSError where Landlock is missing.
    """
    abi = landlock_abi()
    if abi < 1:
        raise OSError("Landlock is not available in this kernel")
    fs = FS_ALL_V1 | (FS_REFER if abi >= 2 else 0) | (FS_TRUNCATE if abi >= 3 else 0)
    fs |= FS_IOCTL_DEV if abi >= 5 else 0
    net = (NET_BIND_TCP | NET_CONNECT_TCP) if abi >= 4 and not network else 0
    scoped = (SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL) if abi >= 6 else 0
    attr = struct.pack("<QQQ", fs, net, scoped)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = _check(
        _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, attr[:size], ctypes.c_size_t(size), ctypes.c_uint32(0)),
        "landlock_create_ruleset",
    )
    ro_rights = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
    for paths, rights in ((read_only, ro_rights), (read_write, fs)):
        for path in paths:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                is_dir = _fd_is_dir(fd)
                allowed = rights if is_dir else rights & (FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE)
                rule = struct.pack("<Qi", allowed, fd)
                _check(
                    _libc.syscall(SYS_LANDLOCK_ADD_RULE, ruleset, 1, rule, ctypes.c_uint32(0)),
                    f"landlock_add_rule {path}",
                )
            finally:
                os.close(fd)
    no_new_privs()
    _check(_libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)), "landlock_restrict_self")
    os.close(ruleset)
    return abi


def _fd_is_dir(fd: int) -> bool:
    import stat

    return stat.S_ISDIR(os.fstat(fd).st_mode)


def apply_rlimits(limits: dict[str, int]) -> None:
    for name, value in limits.items():
        res = getattr(resource, f"RLIMIT_{name.upper()}")
        resource.setrlimit(res, (value, value))


# ---------------------------------------------------------------- running code


def _raise_soft_timeout(signum: int, frame: object) -> None:
    raise SoftTimeout


def _raise_cpu_limit(signum: int, frame: object) -> None:
    raise CpuLimit


def run_code(code: str, namespace: dict[str, Any]) -> tuple[str | None, str | None]:
    """Run ``code`` like a notebook cell. Returns (repr of the last expression, error kind)."""
    try:
        tree = ast.parse(code, "<cell>", "exec")
    except SyntaxError:
        traceback.print_exc(limit=0)
        return None, "exception"
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    assert last is None or isinstance(last, ast.Expr)
    try:
        exec(compile(tree, "<cell>", "exec"), namespace)
        value = None
        if last is not None:
            result = eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace)
            if result is not None:
                namespace["_"] = result
                value = repr(result)
                if len(value) > MAX_VALUE_CHARS:
                    value = value[: MAX_VALUE_CHARS // 2] + " ... " + value[-MAX_VALUE_CHARS // 2 :]
        return value, None
    except SoftTimeout:
        _print_tb("TimeoutError: the call's time limit was reached; the interpreter state is kept")
        return None, "timeout"
    except CpuLimit:
        _print_tb("TimeoutError: the call's CPU-time budget was spent; the interpreter state is kept")
        return None, "cpu"
    except SystemExit as exc:
        _print_tb(f"SystemExit: {exc.code}")
        return None, "exception"
    except BaseException:
        etype, evalue, tb = sys.exc_info()
        # drop the worker's own frame so the traceback starts in the cell
        lines = traceback.format_exception(etype, evalue, tb.tb_next if tb else None)
        _print_tb("".join(lines).rstrip("\n"))
        return None, "exception"


def _print_tb(message: str) -> None:
    os.write(2, (message + "\n").encode("utf-8", errors="replace"))


def _handle(req: dict[str, Any], namespace: dict[str, Any], cpu_hard: int) -> dict[str, Any]:
    used = resource.getrusage(resource.RUSAGE_SELF)
    used_s = int(used.ru_utime + used.ru_stime) + 1
    soft_cpu = min(cpu_hard, used_s + int(req.get("cpu", 60)))
    resource.setrlimit(resource.RLIMIT_CPU, (soft_cpu, cpu_hard))
    signal.setitimer(signal.ITIMER_REAL, float(req.get("timeout", 120)))
    try:
        value, error = run_code(str(req["code"]), namespace)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_hard, cpu_hard))
    stdout_ok = True
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()  # type: ignore[union-attr]
    try:
        os.write(1, str(req["nonce"]).encode("ascii"))
    except OSError:
        stdout_ok = False
    return {"nonce": req["nonce"], "value": value, "error": error, "stdout_ok": stdout_ok}


def main(argv: list[str]) -> int:
    req_fd, rep_fd = int(argv[1]), int(argv[2])
    config = read_frame(req_fd)
    info: dict[str, Any] = {}
    if config.get("landlock"):
        ll = config["landlock"]
        info["landlock_abi"] = apply_landlock(ll["read_only"], ll["read_write"], network=ll["network"])
    if config.get("seccomp_hex"):
        no_new_privs()
        install_seccomp(bytes.fromhex(config["seccomp_hex"]))
    apply_rlimits(config.get("rlimits", {}))
    cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    if cpu_hard == resource.RLIM_INFINITY:
        cpu_hard = 1 << 30
    signal.signal(signal.SIGALRM, _raise_soft_timeout)
    signal.signal(signal.SIGXCPU, _raise_cpu_limit)
    os.chdir(config.get("cwd", "/"))
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    info.update(uid=os.getuid(), pid=os.getpid())
    write_frame(rep_fd, {"ready": True, "info": info})
    while True:
        try:
            req = read_frame(req_fd)
        except EOFError:
            return 0
        if req.get("op") == "exec":
            write_frame(rep_fd, _handle(req, namespace, cpu_hard))
        elif req.get("op") == "reset":
            namespace = {"__name__": "__main__", "__builtins__": builtins}
            write_frame(rep_fd, {"nonce": req.get("nonce"), "value": None, "error": None, "stdout_ok": True})


if __name__ == "__main__":
    sys.exit(main(sys.argv))
