"""The bounded, iterative walk used on folders that sandboxed code controls."""

from __future__ import annotations

import os
from pathlib import Path

from ossagent.sandbox.walk import WalkStats, walk


def _tree(tmp_path: Path) -> int:
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "f1").write_text("x")
    (tmp_path / "a" / "b" / "f2").write_text("x")
    (tmp_path / "z").mkdir()
    (tmp_path / "top").write_text("x")
    os.symlink("/", tmp_path / "a" / "root")
    return os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)


def test_walk_is_top_down_sorted_and_never_follows_links(tmp_path: Path) -> None:
    fd = _tree(tmp_path)
    try:
        seen = [(rel, dirs, files) for rel, _, dirs, files in walk(fd)]
    finally:
        os.close(fd)
    assert seen == [(".", ["a", "z"], ["top"]), ("a", ["b"], ["f1", "root"]), ("a/b", ["c"], ["f2"]),
                    ("a/b/c", [], []), ("z", [], [])]


def test_walk_prunes_and_bounds_depth_and_entries(tmp_path: Path) -> None:
    fd = _tree(tmp_path)
    try:
        pruned = []
        for rel, _, dirs, _ in walk(fd):
            dirs[:] = [d for d in dirs if d != "b"]
            pruned.append(rel)
        assert pruned == [".", "a", "z"]
        stats = WalkStats()
        assert [rel for rel, *_ in walk(fd, max_depth=1, stats=stats)] == [".", "a", "z"]
        assert stats.too_deep == 1 and "1 folder(s) more than 1 levels deep" in stats.note(1)
        stats = WalkStats()
        assert [rel for rel, *_ in walk(fd, max_entries=4, stats=stats)] == [".", "a"]
        assert stats.cut and stats.entries == 4 and "stopped after 4 entries" in stats.note()
    finally:
        os.close(fd)


def test_walk_closes_every_fd(tmp_path: Path) -> None:
    fd = _tree(tmp_path)
    before = len(os.listdir("/proc/self/fd"))
    try:
        for rel, *_ in walk(fd):
            if rel == "a/b":
                break  # an abandoned iteration closes its fds too (the generator is collected)
        list(walk(fd))
    finally:
        os.close(fd)
    assert len(os.listdir("/proc/self/fd")) == before - 1
