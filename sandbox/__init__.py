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
  the death of the host process, even a SIGKILL while code runs) kills every process it started, detached or
  not. Three mechanisms overlap: the process group is killed, every link of the launch chain carries a
  parent-death signal (spawned from one long-lived thread, since that signal follows the forking *thread*),
  and the worker exits as soon as the host's end of its reply pipe closes.
* Network (default off): a private network namespace with only ``lo``; the seccomp filter also refuses every
  socket family but AF_UNIX. Host abstract unix sockets are unreachable (own network namespace).
* Syscalls: a seccomp filter refuses ptrace, mount, namespaces, bpf, perf, userfaultfd, keyrings, io_uring,
  kexec/modules, TIOCSTI and other escape or kernel-attack surface (see :mod:`ossagent.sandbox.seccomp`).
* Resources: wall clock per call (soft: state kept; hard: kill + restart), CPU per call and per life
  (RLIMIT_CPU), address space (RLIMIT_AS), processes (RLIMIT_NPROC, real only for a non-root uid), file size
  (RLIMIT_FSIZE), open files, no core dumps, bounded output (head + tail) and bounded protocol frames.
* Environment: the sandbox starts from an empty environment; no host variable reaches it, not even through
  ``/proc/1/environ`` of bwrap's reaper.
* A forgotten session: a :class:`PythonSandbox` collected (or left at interpreter exit) without ``close()`` has
  its worker killed, pipes closed and stage removed by a finalizer.

What sandboxed code plants in the workspace, and what the model passes to the host-side tools (tests/sandbox,
tests/tools):

* Paths: every file-tool access is confined by the kernel (``openat2(RESOLVE_BENEATH)``, else an ``O_NOFOLLOW``
  walk); symlinks, ``..``, hard links (refused by read and skipped by search), FIFOs, sockets and sparse files do
  not reach or hang the host. Names, link targets and matched lines are shown with control characters, line
  separators and undecodable bytes escaped.
* Walks of the workspace on the host (the chown at each start, search, list) are iterative
  (:mod:`ossagent.sandbox.walk`), never follow links, and are bounded in depth and entries: a tree thousands of
  folders deep cannot make them fail. A write is refused past 64 folders deep, and a failed write removes the
  folders it made.
* Model-chosen regular expressions (``files.search``) run on RE2: linear time whatever the pattern, bounded
  memory, 2,000 characters at most; backreferences and lookaround are refused.

Chromium, which parses hostile pages for the browser tool, runs in a jail of its own
(:mod:`ossagent.tools.browser.jail`): bubblewrap with every namespace (no network: it reaches pages only through
the policy-checked fetcher), a dedicated non-root uid (61000-61999) when the host is root, no capabilities
(empty bounding set, ``no_new_privs``), a cleared environment, read-only ``/usr`` and only ``/etc/fonts``,
``/etc/ld.so.cache`` and ``/etc/localtime``, read-only ``/dev``, size-capped ``/tmp`` and ``/dev/shm``, the
seccomp filter above (allowing only the namespaces and chroot that Chromium's own sandbox needs), and Chromium's
own sandbox inside when the kernel lets the jail make user namespaces. A probe run in Chromium's place checks it.

Not guaranteed:

* Kernel bugs: namespaces, Landlock and seccomp share the host kernel. This is not a VM.
* Total disk use of the workspace: RLIMIT_FSIZE bounds one file; many files can fill the disk the workspace
  lives on. Put the workspace on a quota'd file system when that matters.
* Memory is bounded per process (RLIMIT_AS), not per session: ``processes`` x ``memory`` is the worst case.
  No cgroup is used: on the machines this is developed and tested on, memory and pids are cgroup v1
  controllers of a hierarchy the host's own supervisor owns, and cgroup v2 has neither, so a cgroup limit could
  not be tested here.
* Chromium's memory and CPU: the jail has no rlimits; a page that hangs it is killed by the renderer's watchdog
  (navigation + settle + slack seconds), but until then it can use what the host has. Chromium's own sandbox is
  on only where unprivileged user namespaces work inside the jail (``--no-sandbox`` inside the jail otherwise).
* Deep workspaces: the chown at each start stops 256 folders down (deeper entries keep their owner), search 64
  folders down and after 200,000 entries (it says so), a listing after 10,000 entries of one folder.
* With ``network=True`` the sandbox has the host's network, including services on the host's loopback.
* Timing and side channels, and CPU contention (no cgroup CPU share).
* The ``unshare+landlock`` fallback: host paths outside its rules can still be ``stat``-ed (existence and
  metadata leak, contents do not); the worker is pid 1 of its namespace, so orphans are reaped only at restart;
  UDP is refused by seccomp, not by Landlock.
* Side effect when the host runs as root: the workspace (and everything in it) is chowned to the session uid at
  each start, so give the sandbox a dedicated folder, not a checkout whose ownership matters.
* Hosts not running as root: code runs as the host user (inside a user namespace); RLIMIT_NPROC then counts
  all of that user's processes. The test suite runs as root (as CI does); the non-root path is not tested.
* The seccomp filter exists for x86_64 only; on other architectures both backends refuse to start.
* ``Backend.UNSAFE_NO_ISOLATION`` guarantees nothing beyond rlimits and timeouts: use it only for code you trust.
"""

from ossagent.sandbox.launch import choose_backend, probe
from ossagent.sandbox.policy import Backend, Policy, SandboxUnavailable
from ossagent.sandbox.session import ExecResult, PythonSandbox

__all__ = ["Backend", "ExecResult", "Policy", "PythonSandbox", "SandboxUnavailable", "choose_backend", "probe"]
