"""Walking a folder that sandboxed code controls: iterative, fd-relative, never following links, bounded.

``os.walk``/``os.fwalk`` recurse once per level, so a tree 3,000 folders deep (a few lines of Python inside the
sandbox) raised ``RecursionError`` on the host at every start of the python tool. This walk keeps an explicit
stack of directory fds (one per level, so at most ``max_depth`` open at once), opens each level with
``O_NOFOLLOW`` relative to its parent (a folder swapped for a symlink mid-walk is skipped, not followed), and
stops at ``max_depth`` levels and ``max_entries`` entries, reporting that it stopped instead of failing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

MAX_DEPTH = 64
MAX_ENTRIES = 200_000
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class WalkStats:
    """What a bounded walk left out: folders below ``max_depth`` and whether ``max_entries`` cut it short."""

    too_deep: int = 0
    entries: int = 0
    cut: bool = False

    def note(self, max_depth: int = MAX_DEPTH) -> str:
        parts = []
        if self.too_deep:
            parts.append(f"{self.too_deep} folder(s) more than {max_depth} levels deep were not entered")
        if self.cut:
            parts.append(f"stopped after {self.entries:,} entries")
        return "; ".join(parts)


def _list(fd: int, stats: WalkStats, max_entries: int) -> tuple[list[str], list[str]]:
    dirs: list[str] = []
    files: list[str] = []
    with os.scandir(fd) as it:
        for entry in it:
            if stats.entries >= max_entries:
                stats.cut = True
                break
            stats.entries += 1
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            (dirs if is_dir else files).append(entry.name)
    return sorted(dirs), sorted(files)


def walk(top_fd: int, *, max_depth: int = MAX_DEPTH, max_entries: int = MAX_ENTRIES,
         stats: WalkStats | None = None) -> Iterator[tuple[str, int, list[str], list[str]]]:
    """Top-down ``(relative path, dir fd, dirnames, filenames)`` under the folder ``top_fd``, like ``os.fwalk``.

    The fd is valid until the iteration moves on; remove names from ``dirnames`` to skip them. The relative
    path of the top is ``"."``. Pass ``stats`` to learn what the bounds left out.
    """
    stats = stats if stats is not None else WalkStats()
    stack: list[tuple[str, int, list[str]]] = []
    try:
        fd = os.open(".", _DIR_FLAGS, dir_fd=top_fd)
        stack.append((".", fd, []))
        dirs, files = _list(fd, stats, max_entries)
        yield ".", fd, dirs, files
        stack[-1] = (".", fd, dirs[::-1])
        while stack:
            rel, fd, pending = stack[-1]
            if not pending or stats.cut:
                os.close(stack.pop()[1])
                continue
            name = pending.pop()
            if len(stack) > max_depth:
                stats.too_deep += 1
                continue
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue  # vanished, or swapped for a link or a file since it was listed
            child_rel = name if rel == "." else f"{rel}/{name}"
            stack.append((child_rel, child, []))
            dirs, files = _list(child, stats, max_entries)
            yield child_rel, child, dirs, files
            stack[-1] = (child_rel, child, dirs[::-1])
    finally:
        for _, fd, _ in stack:
            os.close(fd)
