"""Isolation for model-written code: bubblewrap first, an unshare + Landlock fallback, and refusal otherwise.

Threat model
============
The adversary is the code the model writes (and whatever it downloads or is tricked into running): arbitrary
Python and native code, run repeatedly in a long-lived worker. The host is the machine running ossagent.

Guaranteed, under the ``bwrap`` backend (each checked by tests/sandbox):

* File system: the sandbox sees an allowlist (``/usr``, a few files of ``/etc``, the Python installation, the
  worker script) read-only, its workspace read-write at ``/mnt/data``, and private, size-capped ``/tmp`` and
  ``/dev/shm``. The root is read-only. Nothing else of the host (homes, ``/etc/shadow``, other checkouts, the
  host's ``/tmp``) is visible.
* Identity: when the host runs as root, code runs as a per-session non-root uid (62000+) with no capabilities,
  ``no_new_privs``, no nested user namespaces; root-owned files stay unreadable even if a bind were too broad.
* Processes: a private pid namespace; killing the worker (hard timeout, crash, :meth:`PythonSandbox.close`, or
  the death of the host process) kills every process it started, detached or not.
* Network (default off): a private network namespace with only ``lo``; the seccomp filter also refuses every
  socket family but AF_UNIX. Host abstract unix sockets are unreachable (own network namespace).
* Syscalls: a seccomp filter refuses ptrace, mount, namespaces, bpf, perf, userfaultfd, keyrings, io_uring,
  kexec/modules, TIOCSTI and other escape or kernel-attack surface (see :mod:`ossagent.sandbox.seccomp`).
* Resources: wall clock per call (soft: state kept; hard: kill + restart), CPU per call and per life
  (RLIMIT_CPU), address space (RLIMIT_AS), processes (RLIMIT_NPROC, real only for a non-root uid), file size
  (RLIMIT_FSIZE), open files, no core dumps, bounded output (head + tail) and bounded protocol frames.
* Environment: the sandbox starts from an empty environment; no host variable reaches it, not even through
  ``/proc/1/environ`` of bwrap's reaper.

Not guaranteed:

* Kernel bugs: namespaces, Landlock and seccomp share the host kernel. This is not a VM.
* Total disk use of the workspace: RLIMIT_FSIZE bounds one file; many files can fill the disk the workspace
  lives on. Put the workspace on a quota'd file system when that matters.
* Memory is bounded per process (RLIMIT_AS), not per session: ``processes`` x ``memory`` is the worst case.
* With ``network=True`` the sandbox has the host's network, including services on the host's loopback.
* Timing and side channels, and CPU contention (no cgroup CPU share).
* The ``unshare+landlock`` fallback: host paths outside its rules can still be ``stat``-ed (existence and
  metadata leak, contents do not); the worker is pid 1 of its namespace, so orphans are reaped only at restart;
  UDP is refused by seccomp, not by Landlock.
* ``Backend.UNSAFE_NO_ISOLATION`` guarantees nothing beyond rlimits and timeouts: use it only for code you trust.
"""

from ossagent.sandbox.launch import choose_backend, probe
from ossagent.sandbox.policy import Backend, Policy, SandboxUnavailable
from ossagent.sandbox.session import ExecResult, PythonSandbox

__all__ = ["Backend", "ExecResult", "Policy", "PythonSandbox", "SandboxUnavailable", "choose_backend", "probe"]
