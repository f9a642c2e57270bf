"""A seccomp filter as classic BPF, written by hand (no libseccomp needed on the host or in the sandbox).

The program checks the architecture first (anything else is killed), then denies the syscalls that only serve
to escape or attack the kernel, filters ``socket``/``socketpair`` by address family, ``clone`` by namespace
flags and ``ioctl`` by the terminal-injection commands. Everything else is allowed: the filter is a second wall
behind the namespaces and Landlock, not the only one.

:func:`build_filter` returns the raw ``struct sock_filter`` array, ready for ``bwrap --seccomp FD`` or for
``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ...)`` in the worker.
"""

from __future__ import annotations

import errno
import platform
import struct

# BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

_RET_ALLOW = 0x7FFF0000
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000

# offsets in struct seccomp_data
_OFF_NR = 0
_OFF_ARCH = 4


def _arg_lo(i: int) -> int:
    return 16 + 8 * i  # low 32 bits of args[i] (little-endian)


# x86_64 numbers of the syscalls denied outright, with the errno returned.
_X86_64_DENY: dict[str, tuple[int, int]] = {
    "ptrace": (101, errno.EPERM),
    "syslog": (103, errno.EPERM),
    "uselib": (134, errno.EPERM),
    "personality": (135, errno.EPERM),
    "vhangup": (153, errno.EPERM),
    "pivot_root": (155, errno.EPERM),
    "_sysctl": (156, errno.EPERM),
    "adjtimex": (159, errno.EPERM),
    "chroot": (161, errno.EPERM),
    "acct": (163, errno.EPERM),
    "settimeofday": (164, errno.EPERM),
    "mount": (165, errno.EPERM),
    "umount2": (166, errno.EPERM),
    "swapon": (167, errno.EPERM),
    "swapoff": (168, errno.EPERM),
    "reboot": (169, errno.EPERM),
    "iopl": (172, errno.EPERM),
    "ioperm": (173, errno.EPERM),
    "create_module": (174, errno.EPERM),
    "init_module": (175, errno.EPERM),
    "delete_module": (176, errno.EPERM),
    "quotactl": (179, errno.EPERM),
    "lookup_dcookie": (212, errno.EPERM),
    "clock_settime": (227, errno.EPERM),
    "kexec_load": (246, errno.EPERM),
    "add_key": (248, errno.EPERM),
    "request_key": (249, errno.EPERM),
    "keyctl": (250, errno.EPERM),
    "unshare": (272, errno.EPERM),
    "perf_event_open": (298, errno.EPERM),
    "fanotify_init": (300, errno.EPERM),
    "name_to_handle_at": (303, errno.EPERM),
    "open_by_handle_at": (304, errno.EPERM),
    "clock_adjtime": (305, errno.EPERM),
    "setns": (308, errno.EPERM),
    "process_vm_readv": (310, errno.EPERM),
    "process_vm_writev": (311, errno.EPERM),
    "kcmp": (312, errno.EPERM),
    "finit_module": (313, errno.EPERM),
    "kexec_file_load": (320, errno.EPERM),
    "bpf": (321, errno.EPERM),
    "userfaultfd": (323, errno.EPERM),
    "io_uring_setup": (425, errno.EPERM),
    "io_uring_enter": (426, errno.EPERM),
    "io_uring_register": (427, errno.EPERM),
    "open_tree": (428, errno.EPERM),
    "move_mount": (429, errno.EPERM),
    "fsopen": (430, errno.EPERM),
    "fsconfig": (431, errno.EPERM),
    "fsmount": (432, errno.EPERM),
    "fspick": (433, errno.EPERM),
    # clone3 passes its flags in memory, which BPF cannot read: ENOSYS makes glibc fall back to clone.
    "clone3": (435, errno.ENOSYS),
    "pidfd_getfd": (438, errno.EPERM),
    "process_madvise": (440, errno.EPERM),
    "mount_setattr": (442, errno.EPERM),
}
_X86_64_SOCKET = 41
_X86_64_SOCKETPAIR = 53
_X86_64_CLONE = 56
_X86_64_IOCTL = 16

AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
# All namespace flags of clone(2): CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET.
_CLONE_NS_MASK = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
_TIOCSTI = 0x5412
_TIOCLINUX = 0x541C

DENIED_SYSCALLS: tuple[str, ...] = tuple(_X86_64_DENY)


class SeccompUnavailable(RuntimeError):
    """No filter for this machine's architecture: the sandbox must fail closed."""


def _ins(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k & 0xFFFFFFFF)


def _family_block(nr: int, families: tuple[int, ...]) -> list[bytes]:
    """``if nr == socket: return families.contains(arg0) ? ALLOW : EAFNOSUPPORT`` (A holds nr)."""
    body = [_ins(_LD_W_ABS, 0, 0, _arg_lo(0))]
    for i, fam in enumerate(families):
        # on match jump to the ALLOW at the end of the block
        body.append(_ins(_JEQ_K, len(families) - i, 0, fam))
    body.append(_ins(_RET_K, 0, 0, _RET_ERRNO | errno.EAFNOSUPPORT))
    body.append(_ins(_RET_K, 0, 0, _RET_ALLOW))
    return [_ins(_JEQ_K, 0, len(body), nr), *body]


# What Chromium's own sandbox needs from a jail around it: new user/pid/net namespaces (clone, unshare) and
# chroot into an empty folder. Mount, setns, pivot_root and the rest stay denied.
NAMESPACE_SYSCALLS = ("unshare", "chroot")


def build_filter(*, network: bool, machine: str | None = None, namespaces: bool = False) -> bytes:
    """The BPF program for this machine. ``network`` allows AF_INET/AF_INET6/AF_NETLINK sockets too;
    ``namespaces`` allows creating namespaces and chroot (for a program that sandboxes itself, like Chromium)."""
    machine = machine or platform.machine()
    if machine not in ("x86_64", "amd64", "AMD64"):
        raise SeccompUnavailable(f"no seccomp syscall table for architecture {machine!r}")
    prog: list[bytes] = [
        _ins(_LD_W_ABS, 0, 0, _OFF_ARCH),
        _ins(_JEQ_K, 1, 0, _AUDIT_ARCH_X86_64),
        _ins(_RET_K, 0, 0, _RET_KILL_PROCESS),
        _ins(_LD_W_ABS, 0, 0, _OFF_NR),
        _ins(_JGE_K, 0, 1, _X32_SYSCALL_BIT),  # the x32 ABI would bypass every number below
        _ins(_RET_K, 0, 0, _RET_KILL_PROCESS),
    ]
    denied = {name: v for name, v in _X86_64_DENY.items() if not (namespaces and name in NAMESPACE_SYSCALLS)}
    for nr, err in sorted(denied.values()):
        prog.append(_ins(_JEQ_K, 0, 1, nr))
        prog.append(_ins(_RET_K, 0, 0, _RET_ERRNO | err))
    families = (AF_UNIX, AF_INET, AF_INET6, AF_NETLINK) if network else (AF_UNIX,)
    prog += _family_block(_X86_64_SOCKET, families)
    prog += _family_block(_X86_64_SOCKETPAIR, families)
    clone_body = [
        _ins(_LD_W_ABS, 0, 0, _arg_lo(0)),
        _ins(_JSET_K, 0, 1, _CLONE_NS_MASK),
        _ins(_RET_K, 0, 0, _RET_ERRNO | errno.EPERM),
        _ins(_RET_K, 0, 0, _RET_ALLOW),
    ]
    if not namespaces:
        prog += [_ins(_JEQ_K, 0, len(clone_body), _X86_64_CLONE), *clone_body]
    ioctl_body = [
        _ins(_LD_W_ABS, 0, 0, _arg_lo(1)),
        _ins(_JEQ_K, 1, 0, _TIOCSTI),
        _ins(_JEQ_K, 0, 1, _TIOCLINUX),
        _ins(_RET_K, 0, 0, _RET_ERRNO | errno.EPERM),
        _ins(_RET_K, 0, 0, _RET_ALLOW),
    ]
    prog += [_ins(_JEQ_K, 0, len(ioctl_body), _X86_64_IOCTL), *ioctl_body]
    prog.append(_ins(_RET_K, 0, 0, _RET_ALLOW))
    return b"".join(prog)
