"""File access confined to a workspace directory, enforced by the kernel, never by comparing strings.

Every path is opened relative to a directory fd of the workspace with ``openat2(RESOLVE_BENEATH |
RESOLVE_NO_MAGICLINKS)`` (Linux >= 5.6, called through ``syscall(2)``): the kernel refuses, atomically, any
resolution that leaves the workspace, whether by ``..``, an absolute path or a symlink planted by sandboxed code
(even one swapped in between two calls). Where openat2 is missing, paths are walked one component at a time with
``O_NOFOLLOW`` (symlinks are then refused altogether, and so is ``..``).

Writes go to a temporary file in the same directory, are fsync'ed and renamed over the target, so a reader
never sees half a file and a failed write leaves the old one whole; renaming replaces a symlink rather than
writing through it. Reads open with ``O_NONBLOCK`` and require a regular file, so a FIFO or device planted in the
workspace cannot hang the host, and read sizes are capped (a sparse 1 TB file costs nothing).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from ossagent.sandbox.walk import WalkStats, walk
from ossagent.tools.base import ModelError, UserError

SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08
O_PATH_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
MAX_CREATE_DEPTH = 64  # components of a path that write may create folders for (the walk's depth too)
MAX_SCAN = 10_000  # entries of one folder read by scandir
INSIDE_NAME = "/mnt/data"  # what the python tool calls the workspace; accepted as a prefix of model paths


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = RESOLVE_BENEATH) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, resolve)
    fd = _libc.syscall(SYS_OPENAT2, ctypes.c_int(dirfd), os.fsencode(path), ctypes.byref(how),
                       ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def openat2_works() -> bool:
    try:
        os.close(openat2(os.open("/", O_PATH_DIR), ".", O_PATH_DIR))
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EPERM):
            return False
        raise
    return True


def explain(exc: OSError, path: str) -> ModelError:
    """An OSError from a confined operation, as something the model can act on."""
    hint = "Paths are relative to the workspace (also reachable as /mnt/data); use files.list to see what exists."
    messages = {
        errno.EXDEV: f"{path!r} resolves outside the workspace (through '..', an absolute path or a symbolic link).",
        errno.ELOOP: f"{path!r} is or passes through a symbolic link, which is not followed here.",
        errno.ENOENT: f"{path!r} does not exist.",
        errno.EISDIR: f"{path!r} is a directory.",
        errno.ENOTDIR: f"a parent of {path!r} is not a directory.",
        errno.EEXIST: f"{path!r} already exists.",
        errno.EACCES: f"permission denied for {path!r}.",
        errno.ENXIO: f"{path!r} is not a regular file (a FIFO, socket or device); it is not opened.",
        errno.ENAMETOOLONG: f"{path!r} is too long.",
        errno.ENOSPC: "the disk is full.",
        errno.EFBIG: f"{path!r} would be too large.",
    }
    return ModelError(messages.get(exc.errno or 0, f"{path!r}: {exc.strerror}."), hint=hint)


class Workspace:
    """A directory the file tools may touch, and nothing outside it."""

    def __init__(self, root: Path, *, use_openat2: bool | None = None) -> None:
        try:
            self.fd = os.open(root, O_PATH_DIR)
        except OSError as exc:
            raise UserError(f"file tools: workspace {root} cannot be opened: {exc.strerror}") from exc
        self.root = root
        self.use_openat2 = openat2_works() if use_openat2 is None else use_openat2
        self.is_root = os.geteuid() == 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # ------------------------------------------------------------------ path handling

    @staticmethod
    def relative(path: str) -> str:
        """The model's path as one relative to the workspace (a name translation, not a security check)."""
        if "\0" in path:
            raise ModelError("The path contains a NUL character.")
        p = path.strip()
        if p == INSIDE_NAME or p.startswith(INSIDE_NAME + "/"):
            p = p[len(INSIDE_NAME) :].lstrip("/")
        return p or "."

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        """Open ``path`` beneath the workspace; raises OSError (EXDEV/ELOOP for escapes)."""
        rel = self.relative(path)
        if self.use_openat2:
            return openat2(self.fd, rel, flags, mode, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
        return self._walk_open(rel, flags, mode)

    def _walk_open(self, rel: str, flags: int, mode: int) -> int:
        if rel.startswith("/"):
            raise OSError(errno.EXDEV, "absolute path", rel)
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise OSError(errno.EXDEV, "'..' is not allowed", rel)
        cur = os.dup(self.fd)
        try:
            for part in parts[:-1]:
                try:
                    nxt = os.open(part, O_PATH_DIR | os.O_NOFOLLOW, dir_fd=cur)
                except NotADirectoryError:
                    if stat.S_ISLNK(os.stat(part, dir_fd=cur, follow_symlinks=False).st_mode):
                        raise OSError(errno.ELOOP, "symbolic link", rel) from None
                    raise
                os.close(cur)
                cur = nxt
            if not parts:
                return os.open(".", flags | os.O_CLOEXEC, dir_fd=cur)
            return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=cur)
        finally:
            os.close(cur)

    def parent(self, path: str, *, created: list[str] | None = None) -> tuple[int, str]:
        """(fd of the directory holding ``path``, last component). With ``created``, missing directories are
        made (at most ``MAX_CREATE_DEPTH`` levels, names of at most 255 bytes) and recorded there."""
        rel = PurePosixPath(self.relative(path))
        name = rel.name
        if name in ("", ".", "..") or str(rel) == ".":
            raise ModelError(f"{path!r} does not name a file.", hint="Give a file path such as 'notes/todo.txt'.")
        parent = str(rel.parent)
        if created is not None and parent != ".":
            if len(rel.parts) > MAX_CREATE_DEPTH or any(len(os.fsencode(p)) > 255 for p in rel.parts):
                raise ModelError(f"{str(rel)[:80]!r}... is too deep or has too long a name: files are written at "
                                 f"most {MAX_CREATE_DEPTH} folders deep, each name at most 255 bytes.")
            cur = ""
            for part in PurePosixPath(parent).parts:
                cur = f"{cur}/{part}" if cur else part
                try:
                    os.close(self.open(cur, O_PATH_DIR))
                except FileNotFoundError:
                    pfd, leaf = self.parent(cur)
                    try:
                        os.mkdir(leaf, 0o755, dir_fd=pfd)
                        created.append(cur)
                        self._inherit_owner(pfd, leaf)
                    except FileExistsError:
                        pass
                    finally:
                        os.close(pfd)
        return self.open(parent, O_PATH_DIR), name

    def _remove_created(self, created: list[str]) -> None:
        """Undo the folders a failed write made (deepest first; a folder something else filled meanwhile stays)."""
        for rel in reversed(created):
            with contextlib.suppress(OSError):
                pfd, leaf = self.parent(rel)
                try:
                    os.rmdir(leaf, dir_fd=pfd)
                finally:
                    os.close(pfd)

    def _inherit_owner(self, dir_fd: int, name: str, like: os.stat_result | None = None) -> None:
        """As root, give new entries the owner of their directory (so the sandbox uid can still edit them)."""
        if self.is_root:
            st = like or os.fstat(dir_fd)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dir_fd, follow_symlinks=False)

    # ------------------------------------------------------------------ operations

    def read_bytes(self, path: str, limit: int) -> tuple[bytes, int]:
        """Up to ``limit`` bytes of a regular file, and its size."""
        fd = self.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise OSError(errno.EISDIR, "is a directory", path)
            if not stat.S_ISREG(st.st_mode):
                raise ModelError(f"{path!r} is not a regular file (a FIFO, socket or device); it is not read.")
            if st.st_nlink > 1:
                raise ModelError(f"{path!r} has other hard links; it is not read, for safety.",
                                 hint="Copy it inside the workspace with the python tool first.")
            chunks, total = [], 0
            while total < limit:
                chunk = os.read(fd, min(1 << 20, limit - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
            return b"".join(chunks), st.st_size
        finally:
            os.close(fd)

    def exists(self, path: str) -> bool:
        try:
            pfd, name = self.parent(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            os.stat(name, dir_fd=pfd, follow_symlinks=False)
            return True
        except FileNotFoundError:
            return False
        finally:
            os.close(pfd)

    def write_atomic(self, path: str, data: bytes) -> None:
        """Replace ``path`` with ``data`` all at once (temp file, fsync, rename), creating parent directories;
        when it fails, the directories it created are removed again."""
        created: list[str] = []
        try:
            self._write_atomic(path, data, created)
        except BaseException:
            self._remove_created(created)
            raise

    def _write_atomic(self, path: str, data: bytes, created: list[str]) -> None:
        pfd, name = self.parent(path, created=created)
        tmp = f".{name[:40]}.{secrets.token_hex(6)}.tmp"
        try:
            try:
                old: os.stat_result | None = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                old = None
            if old is not None and stat.S_ISDIR(old.st_mode):
                raise OSError(errno.EISDIR, "is a directory", path)
            keep = old if old is not None and stat.S_ISREG(old.st_mode) else None
            fd = _create_temp(pfd, tmp, stat.S_IMODE(keep.st_mode) if keep else 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            self._inherit_owner(pfd, tmp, keep)
            os.replace(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
            tmp = ""
            os.fsync(pfd)
        finally:
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=pfd)
            os.close(pfd)

    def create(self, path: str) -> int:
        """Replace ``path`` with a new empty file (parent directories created; a link there is replaced, not
        followed) and return it open for writing: what is written through the fd lands in that file alone,
        whatever is renamed or linked in its place later. The caller closes the fd."""
        created: list[str] = []
        try:
            pfd, name = self.parent(path, created=created)
            try:
                tmp = f".{name[:40]}.{secrets.token_hex(6)}.tmp"
                fd = _create_temp(pfd, tmp, 0o644)
                try:
                    self._inherit_owner(pfd, tmp)
                    os.replace(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
                except BaseException:
                    os.close(fd)
                    with contextlib.suppress(OSError):
                        os.unlink(tmp, dir_fd=pfd)
                    raise
                return fd
            finally:
                os.close(pfd)
        except BaseException:
            self._remove_created(created)
            raise

    def remove(self, path: str) -> None:
        pfd, name = self.parent(path)
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                raise OSError(errno.EISDIR, "is a directory", path)
            os.unlink(name, dir_fd=pfd)
            os.fsync(pfd)
        finally:
            os.close(pfd)

    def scandir(self, path: str, limit: int = MAX_SCAN) -> tuple[list[tuple[str, os.stat_result, str | None]], bool]:
        """(name, lstat, link target) of the entries of a directory, links not followed, sorted by name; at most
        ``limit`` of them are read (True second when there were more)."""
        fd = self.open(path, O_PATH_DIR)
        try:
            names: list[str] = []
            more = False
            with os.scandir(fd) as it:
                for entry in it:
                    if len(names) >= limit:
                        more = True
                        break
                    names.append(entry.name)
            out = []
            for name in sorted(names):
                with contextlib.suppress(FileNotFoundError):
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    target = os.readlink(name, dir_fd=fd) if stat.S_ISLNK(st.st_mode) else None
                    out.append((name, st, target))
            return out, more
        finally:
            os.close(fd)

    def walk_files(self, path: str, stats: WalkStats | None = None) -> Iterator[tuple[str, int, os.stat_result]]:
        """(relative path, open fd, fstat) of each regular file under ``path`` with no other hard link (a hard
        link could be a file from outside the workspace; :meth:`read_bytes` refuses them too); links never
        followed; iterative and bounded (:func:`ossagent.sandbox.walk.walk`, ``stats`` says what was left out).

        The caller must not keep the fd: it is closed when the iteration moves on.
        """
        top = self.open(path, O_PATH_DIR)
        base = self.relative(path)
        try:
            for dirpath, dirfd, dirnames, filenames in walk(top, stats=stats):
                dirnames[:] = [d for d in dirnames if d != ".git"]
                for name in filenames:
                    try:
                        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC,
                                     dir_fd=dirfd)
                    except OSError:
                        continue  # a symlink, a vanished file, a FIFO without writer...
                    try:
                        st = os.fstat(fd)
                        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                            rel = os.path.normpath(os.path.join(base, dirpath, name))
                            yield rel, fd, st
                    finally:
                        os.close(fd)
        finally:
            os.close(top)


def _create_temp(dir_fd: int, name: str, mode: int) -> int:
    """A new file ``name`` in ``dir_fd``, open for writing; never an existing file or a link's target."""
    return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
