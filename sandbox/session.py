"""A long-lived sandboxed Python worker: start, run code with timeouts, capture output, restart, close."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import signal
import struct
import subprocess
import tempfile
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ossagent.sandbox.launch import (
    CLEAN_PATH,
    GROUP,
    PASSWD,
    STAGE_BASE,
    allocate_uid,
    choose_backend,
    chown_tree,
    plan,
)
from ossagent.sandbox.policy import Backend, Policy, SandboxUnavailable

_spawner: ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


def _spawn(argv: list[str], pass_fds: tuple[int, ...]) -> subprocess.Popen[bytes]:
    """Popen from one long-lived thread: the parent-death signal of the launch chain fires when the *thread*
    that forked it exits, so a sandbox started from a short-lived request thread would otherwise die with it."""
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ossagent-sandbox-spawner")
    return _spawner.submit(
        subprocess.Popen, argv, env={"PATH": CLEAN_PATH}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, pass_fds=pass_fds, start_new_session=True, cwd="/",
    ).result()


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


MAX_REPLY = 1 << 20
MAX_CODE = 1 << 20


@dataclass
class ExecResult:
    """One call's outcome. ``output`` is stdout and stderr interleaved, already cut to the policy's size."""

    output: str
    value: str | None  # repr of the last expression, if any
    error: str | None  # None, "exception", "timeout", "cpu", "killed", "crashed"
    state_lost: bool  # the worker was restarted: every variable is gone
    truncated: int  # characters dropped from the middle of the output
    exit_status: int | None = None  # for "crashed"/"killed": the worker's exit status
    seconds: float = 0.0


class OutputCapture:
    """Keeps the head and tail of a byte stream and finds the end-of-call marker in it."""

    def __init__(self, limit: int) -> None:
        self.half = max(limit // 2, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0
        self.pending = b""

    def feed(self, data: bytes, marker: bytes | None) -> bytes | None:
        """Add ``data``; when ``marker`` is complete, return the bytes after it (they belong to later calls)."""
        if marker is None:
            self._commit(data)
            return None
        self.pending += data
        idx = self.pending.find(marker)
        if idx >= 0:
            self._commit(self.pending[:idx])
            rest, self.pending = self.pending[idx + len(marker) :], b""
            return rest
        keep = len(marker) - 1
        if len(self.pending) > keep:
            self._commit(self.pending[: len(self.pending) - keep])
            self.pending = self.pending[len(self.pending) - keep :]
        return None

    def flush(self) -> None:
        self._commit(self.pending)
        self.pending = b""

    def _commit(self, data: bytes) -> None:
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        if len(self.tail) > self.half:
            self.dropped += len(self.tail) - self.half
            del self.tail[: len(self.tail) - self.half]

    def render(self) -> str:
        """Head and tail, with a note where the middle was cut."""
        head, tail = _clean(bytes(self.head)), _clean(bytes(self.tail))
        if not self.dropped:
            return head + tail
        return f"{head}\n[... {self.dropped} bytes of output truncated ...]\n{tail}"


def _reap(proc: subprocess.Popen[bytes] | None, fds: tuple[int, ...], stage: Path | None) -> int | None:
    """Kill a worker's process group, close its pipes and remove its stage. Also run by the finalizer when a
    sandbox is garbage-collected (or the interpreter exits) without :meth:`PythonSandbox.close`."""
    status = None
    if proc is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        status = proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    for fd in fds:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
    if stage is not None:
        for _ in range(50):  # the private mount on it disappears with its namespace
            try:
                stage.rmdir()
                break
            except OSError:
                time.sleep(0.02)
    return status


def _clean(data: bytes) -> str:
    """Decode, escaping control characters (ANSI sequences, NULs) so the model sees them literally."""
    text = data.decode("utf-8", errors="replace")
    return "".join(c if c in "\n\t" or (c >= " " and c != "\x7f") else f"\\x{ord(c):02x}" for c in text)


class PythonSandbox:
    """One sandboxed interpreter whose globals persist across :meth:`run` calls until it must restart.

    ``backend=None`` picks the strongest working backend and raises :class:`SandboxUnavailable` when there is
    none; ``Backend.UNSAFE_NO_ISOLATION`` must be asked for explicitly.
    """

    def __init__(self, policy: Policy, backend: Backend | None = None) -> None:
        if not policy.workspace.is_dir():
            raise SandboxUnavailable(f"workspace {policy.workspace} is not a directory")
        self.policy = policy
        self.backend = choose_backend(backend, network=policy.network)
        self.root = os.geteuid() == 0 and self.backend is not Backend.UNSAFE_NO_ISOLATION
        self.uid = allocate_uid(policy) if self.root else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.restarts = 0
        self._fds: tuple[int, int, int] = (-1, -1, -1)  # req_w, rep_r, out_r
        self._carry = b""
        self._stage: Path | None = None
        self.last_end = ""  # why the last exchange ended without a reply: "eof", "deadline" or "protocol"
        self._finalizer: weakref.finalize | None = None  # kills the worker if close() is never called

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the worker (idempotent). Raises SandboxUnavailable if it does not come up confined."""
        if self.proc is not None:
            return
        if self.uid is not None:
            try:
                chown_tree(self.policy.workspace, self.uid)
                STAGE_BASE.mkdir(mode=0o755, exist_ok=True)
                os.chmod(STAGE_BASE, 0o755)
                self._stage = Path(tempfile.mkdtemp(prefix="s-", dir=STAGE_BASE))
            except OSError as exc:
                raise SandboxUnavailable(f"cannot prepare the sandbox: {exc}") from exc
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        seccomp_fd = os.memfd_create("ossagent-seccomp")
        user_db = (_memfd("ossagent-passwd", PASSWD.encode()), _memfd("ossagent-group", GROUP.encode()))
        try:
            launch = plan(self.backend, self.policy, req_fd=req_r, rep_fd=rep_w, seccomp_fd=seccomp_fd,
                          stage=self._stage, uid=self.uid, user_db_fds=user_db)
            if launch.seccomp_fd_program:
                os.write(seccomp_fd, launch.seccomp_fd_program)
                os.lseek(seccomp_fd, 0, os.SEEK_SET)
            self.proc = _spawn(launch.argv, launch.pass_fds)
        finally:
            for fd in (req_r, rep_w, seccomp_fd, *user_db):
                os.close(fd)
        assert self.proc.stdout is not None
        self._fds = (req_w, rep_r, self.proc.stdout.fileno())
        self._finalizer = weakref.finalize(self, _reap, self.proc, self._fds[:2], self._stage)
        config = {
            "rlimits": self.policy.rlimits(),
            "landlock": launch.landlock,
            "seccomp_hex": launch.seccomp_via_config.hex() if launch.seccomp_via_config else None,
            "cwd": launch.cwd_inside,
        }
        try:
            self._send(config)
            reply, out = self._collect(None, time.monotonic() + self.policy.startup_timeout)
        except OSError as exc:
            reply, out = None, str(exc).encode()
        if reply is None or not reply.get("ready"):
            status = self._kill()
            raise SandboxUnavailable(
                f"the {self.backend.value} sandbox did not start (exit status {status}): "
                + out.decode(errors="replace")[-2000:]
            )
        self.info = dict(reply.get("info", {}))

    def close(self) -> None:
        self._kill()

    def restart(self) -> None:
        self._kill()
        self.restarts += 1
        self.start()

    def _kill(self) -> int | None:
        """Kill the worker and everything it started (its pid namespace dies with it)."""
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        status = _reap(self.proc, self._fds[:2], self._stage)
        self.proc = None
        self._fds = (-1, -1, -1)
        self._carry = b""
        self._stage = None
        return status

    # ------------------------------------------------------------------ calls

    def run(self, code: str, timeout: float | None = None) -> ExecResult:
        """Run ``code`` in the persistent namespace. Never raises for anything the code does."""
        if len(code.encode()) > MAX_CODE:
            raise ValueError(f"code is larger than {MAX_CODE} bytes")
        state_lost = False
        if self.proc is None or self.proc.poll() is not None:
            state_lost = self.proc is not None
            self.restart() if self.proc is not None else self.start()
        timeout = self.policy.wall_timeout if timeout is None else timeout
        self._drain_replies()
        nonce = secrets.token_hex(16)
        started = time.monotonic()
        request = {"op": "exec", "code": code, "nonce": nonce, "timeout": timeout, "cpu": self.policy.cpu_per_call}
        try:
            self._send(request)
        except OSError:  # the worker died since the last call
            state_lost = True
            self.restart()
            self._send(request)
        capture = OutputCapture(self.policy.output)
        reply, _ = self._collect(nonce, started + timeout + self.policy.hard_grace, capture)
        seconds = time.monotonic() - started
        if reply is not None:
            return ExecResult(capture.render(), reply.get("value"), reply.get("error"), state_lost,
                              capture.dropped, seconds=seconds)
        crashed = self.last_end in ("eof", "protocol")
        if self.last_end == "eof" and self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=2.0)
        status = self._kill()
        self.restarts += 1
        return ExecResult(capture.render(), None, "crashed" if crashed else "killed", True, capture.dropped, status,
                          seconds)

    def _drain_replies(self) -> None:
        """Drop anything on the reply pipe between calls (frames forged by background code)."""
        while select.select([self._fds[1]], [], [], 0)[0]:
            if not os.read(self._fds[1], 65536):
                break

    def _send(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode()
        view = memoryview(struct.pack(">I", len(data)) + data)
        while view:
            view = view[os.write(self._fds[0], view) :]

    def _collect(self, nonce: str | None, deadline: float,
                 capture: OutputCapture | None = None) -> tuple[dict[str, Any] | None, bytes]:
        """Read output and the reply until both are complete, the worker dies, or ``deadline`` passes."""
        _, rep_r, out_r = self._fds
        capture = capture or OutputCapture(1 << 16)
        self.last_end = "deadline"
        marker = nonce.encode() if nonce else None
        frame = b""
        reply: dict[str, Any] | None = None
        marker_seen = marker is None
        rest = self._carry
        self._carry = b""
        if rest:
            after = capture.feed(rest, marker)
            if after is not None:
                marker_seen, self._carry = True, after
        out_open = True
        reply_at = 0.0
        while not (reply is not None and marker_seen):
            if reply is not None:  # the marker is late (fd 1 closed or flooded by the code?): not for long
                deadline = min(deadline, reply_at + 2.0)
            wait = deadline - time.monotonic()
            if wait <= 0:
                break
            fds = [*([rep_r] if reply is None else []), *([out_r] if out_open and not marker_seen else [])]
            if not fds:
                break
            ready, _, _ = select.select(fds, [], [], wait)
            if not ready and reply is not None:
                break
            if out_r in ready:
                data = os.read(out_r, 65536)
                if not data:
                    out_open = False
                else:
                    after = capture.feed(data, marker)
                    if after is not None:
                        marker_seen, self._carry = True, after
            if rep_r in ready and reply is None:
                chunk = os.read(rep_r, 65536)
                if not chunk:
                    self.last_end = "eof"  # the worker is gone
                    break
                frame += chunk
                if len(frame) > MAX_REPLY:
                    self.last_end = "protocol"  # a flood on the reply pipe: treat as a crash
                    break
                if len(frame) >= 4:
                    (n,) = struct.unpack(">I", frame[:4])
                    if n > MAX_REPLY:
                        self.last_end = "protocol"
                        break
                    if len(frame) >= 4 + n:
                        reply, reply_at = _parse_reply(frame[4 : 4 + n], nonce), time.monotonic()
                        if reply is None:
                            self.last_end = "protocol"
                            break
        capture.flush()
        return reply, bytes(capture.head) + bytes(capture.tail)


def _parse_reply(data: bytes, nonce: str | None) -> dict[str, Any] | None:
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(obj, dict):
        return None
    if nonce is not None and obj.get("nonce") != nonce:
        return None
    value = obj.get("value")
    return {
        "ready": obj.get("ready") is True,
        "info": obj.get("info") if isinstance(obj.get("info"), dict) else {},
        "value": value if isinstance(value, str) else None,
        "error": obj.get("error") if obj.get("error") in (None, "exception", "timeout", "cpu") else "exception",
    }
