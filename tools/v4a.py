"""The V4A patch format (``*** Begin Patch`` ... ``*** End Patch``) that gpt-oss was trained to write.

:func:`parse_patch` turns the text into file actions; :func:`plan_patch` computes every new file content
in memory and raises :class:`PatchError` naming the action and hunk that failed, before anything is written.
Matching follows the reference's tolerance: context lines are matched exactly, then ignoring trailing
whitespace, then ignoring surrounding whitespace; ``@@ header`` lines move the search to just after a line
equal to the header; ``*** End of File`` anchors a hunk at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

BEGIN, END = "*** Begin Patch", "*** End Patch"
ADD, DELETE, UPDATE, MOVE = "*** Add File: ", "*** Delete File: ", "*** Update File: ", "*** Move to: "
EOF_MARK = "*** End of File"


class PatchError(ValueError):
    """The patch is malformed or does not apply; nothing was changed."""


@dataclass
class Hunk:
    headers: list[str] = field(default_factory=list)  # the @@ lines' text, in order
    lines: list[tuple[str, str]] = field(default_factory=list)  # (" " | "-" | "+", text)
    at_eof: bool = False

    @property
    def old(self) -> list[str]:
        return [t for op, t in self.lines if op != "+"]

    @property
    def new(self) -> list[str]:
        return [t for op, t in self.lines if op != "-"]

    def label(self, index: int) -> str:
        head = f" (@@ {self.headers[-1]})" if self.headers and self.headers[-1] else ""
        return f"hunk {index + 1}{head}"


@dataclass
class FileAction:
    kind: str  # "add" | "delete" | "update"
    path: str
    move_to: str | None = None
    content: list[str] = field(default_factory=list)  # for "add"
    hunks: list[Hunk] = field(default_factory=list)  # for "update"


def parse_patch(text: str) -> list[FileAction]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines or lines[0].strip() != BEGIN:
        raise PatchError(f"The patch must start with the line '{BEGIN}'.")
    if lines[-1].strip() != END:
        raise PatchError(f"The patch must end with the line '{END}'.")
    actions: list[FileAction] = []
    seen: set[str] = set()
    i = 1
    body = lines[1:-1]
    while i - 1 < len(body):
        line = body[i - 1]
        i += 1
        for prefix, kind in ((ADD, "add"), (DELETE, "delete"), (UPDATE, "update")):
            if line.startswith(prefix):
                path = line[len(prefix) :].strip()
                if not path:
                    raise PatchError(f"line {i}: '{line}' names no file.")
                if path in seen:
                    raise PatchError(f"line {i}: {path!r} appears in more than one action of the patch.")
                seen.add(path)
                actions.append(FileAction(kind, path))
                break
        else:
            if not actions:
                raise PatchError(f"line {i}: expected '*** Add File:', '*** Update File:' or '*** Delete File:', "
                                 f"got {line!r}.")
            _body_line(actions[-1], line, i)
    return actions


def _body_line(action: FileAction, line: str, lineno: int) -> None:
    if action.kind == "delete":
        raise PatchError(f"line {lineno}: a '*** Delete File' action takes no lines, got {line!r}.")
    if action.kind == "add":
        if not line.startswith("+"):
            raise PatchError(f"line {lineno}: every line of an added file must start with '+', got {line!r}.")
        action.content.append(line[1:])
        return
    if line.startswith(MOVE):
        if action.hunks or action.move_to:
            raise PatchError(f"line {lineno}: '*** Move to:' must come right after '*** Update File:'.")
        action.move_to = line[len(MOVE) :].strip()
        return
    if line.strip() == EOF_MARK:
        if not action.hunks:
            raise PatchError(f"line {lineno}: '{EOF_MARK}' before any change.")
        action.hunks[-1].at_eof = True
        return
    if line.startswith("@@"):
        if not action.hunks or action.hunks[-1].lines or action.hunks[-1].at_eof:
            action.hunks.append(Hunk())
        action.hunks[-1].headers.append(line[2:].strip())
        return
    if line.startswith("***"):
        raise PatchError(f"line {lineno}: unknown directive {line!r}.")
    op, text = (" ", "") if line == "" else (line[0], line[1:])
    if op not in " -+":
        raise PatchError(f"line {lineno}: a change line must start with ' ', '-' or '+', got {line!r}.")
    if not action.hunks or action.hunks[-1].at_eof:
        action.hunks.append(Hunk())
    action.hunks[-1].lines.append((op, text))


_NORMALISERS: tuple[Callable[[str], str], ...] = (lambda s: s, str.rstrip, str.strip)


def _find(lines: list[str], block: list[str], start: int, at_eof: bool) -> int:
    """Index where ``block`` occurs in ``lines`` at or after ``start`` (-1 if nowhere), tolerating whitespace."""
    if not block:
        return len(lines) if at_eof else start
    for norm in _NORMALISERS:
        want = [norm(b) for b in block]
        if at_eof:
            end = len(lines) - len(block)
            if end >= start and [norm(x) for x in lines[end:]] == want:
                return end
        for i in range(start, len(lines) - len(block) + 1):
            if norm(lines[i]) == want[0] and [norm(x) for x in lines[i : i + len(block)]] == want:
                return i
    return -1


def apply_hunks(text: str, hunks: list[Hunk], path: str) -> str:
    """The new content of ``path``; raises PatchError naming the hunk that does not apply."""
    lines = text.split("\n") if text else []
    trailing_newline = text.endswith("\n") or not text
    if text.endswith("\n"):
        lines.pop()
    cursor = 0
    for n, hunk in enumerate(hunks):
        for header in hunk.headers:
            if not header:
                continue
            found = next((i for i in range(cursor, len(lines)) if lines[i] == header), None)
            if found is None:
                found = next((i for i in range(cursor, len(lines)) if lines[i].strip() == header.strip()), None)
            if found is None:
                raise PatchError(f"{path}: {hunk.label(n)}: no line '{header}' was found after line {cursor}.")
            cursor = found + 1
        old = hunk.old
        at = _find(lines, old, cursor, hunk.at_eof)
        if at < 0:
            shown = "\n".join(f"    {x}" for x in old[:12]) + ("\n    ..." if len(old) > 12 else "")
            where = "at the end of the file" if hunk.at_eof else f"after line {cursor}"
            raise PatchError(
                f"{path}: {hunk.label(n)}: its {len(old)} context and removed lines were not found {where}:\n"
                f"{shown}"
            )
        lines[at : at + len(old)] = hunk.new
        cursor = at + len(hunk.new)
    return "\n".join(lines) + ("\n" if trailing_newline and lines else "")


def plan_patch(actions: list[FileAction], read: Callable[[str], str | None]) -> dict[str, str | None]:
    """Every file's new content (None: delete), computed without writing. ``read`` gives None if missing."""
    result: dict[str, str | None] = {}
    for action in actions:
        old = read(action.path)
        if action.kind == "add":
            if old is not None:
                raise PatchError(f"Add File {action.path}: the file already exists; use '*** Update File:'.")
            result[action.path] = "".join(line + "\n" for line in action.content)
        elif action.kind == "delete":
            if old is None:
                raise PatchError(f"Delete File {action.path}: the file does not exist.")
            result[action.path] = None
        else:
            if old is None:
                raise PatchError(f"Update File {action.path}: the file does not exist; use '*** Add File:'.")
            if not action.hunks and not action.move_to:
                raise PatchError(f"Update File {action.path}: the action has no changes.")
            new = apply_hunks(old, action.hunks, action.path)
            if action.move_to and action.move_to != action.path:
                if action.move_to in result or read(action.move_to) is not None:
                    raise PatchError(f"Update File {action.path}: the move target {action.move_to} already exists.")
                result[action.path] = None
                result[action.move_to] = new
            else:
                result[action.path] = new
    return result
