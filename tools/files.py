"""The ``files`` tool: read, write, list, search and patch files of the workspace, from the host.

Runs in the agent's process, not in the sandbox, so every access goes through
:class:`ossagent.tools.confined.Workspace` (kernel-enforced confinement, atomic writes). The workspace is the
folder the python tool mounts at ``/mnt/data``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import jsonschema
import re2

from ossagent.sandbox.walk import WalkStats
from ossagent.tools.base import (
    FunctionDescription,
    ModelError,
    ToolDescription,
    ToolFailure,
    ToolResult,
    escape_controls,
)
from ossagent.tools.confined import Workspace, explain
from ossagent.tools.v4a import PatchError, parse_patch, plan_patch

MAX_READ = 4 << 20  # bytes read from one file
MAX_WRITE = 16 << 20
MAX_TEXT = 60_000  # characters returned by one call
MAX_LIST = 500
MAX_MATCHES = 200
MAX_SEARCH_FILE = 8 << 20
SEARCH_SECONDS = 10.0
MAX_PATTERN = 2_000  # characters of one search pattern
REGEX_MEMORY = 32 << 20  # bytes RE2 may use for one compiled pattern

DESCRIPTION = (
    "Read, write, list and search the files of the workspace, and edit them with patches.\n"
    "The workspace is the folder that python sees as '/mnt/data'. Paths are relative to it "
    "(a leading '/mnt/data/' is accepted); nothing outside it can be reached."
)

FUNCTIONS = (
    FunctionDescription(
        "read",
        "Shows the text of a file, `num_lines` lines from line `start_line` (counting from 1).",
        {"type": "object", "properties": {
            "path": {"type": "string"},
            "start_line": {"type": "integer", "minimum": 1, "default": 1},
            "num_lines": {"type": "integer", "minimum": 1, "default": 400},
        }, "required": ["path"], "additionalProperties": False},
    ),
    FunctionDescription(
        "write",
        "Creates or replaces the file `path` with `content`, creating missing folders.",
        {"type": "object", "properties": {
            "path": {"type": "string"},
            "content": {"type": "string"},
        }, "required": ["path", "content"], "additionalProperties": False},
    ),
    FunctionDescription(
        "list",
        "Lists a folder: sub-folders end with '/', files show their size, links show their target.",
        {"type": "object", "properties": {
            "path": {"type": "string", "default": "."},
            "depth": {"type": "integer", "minimum": 1, "maximum": 5, "default": 1},
        }, "additionalProperties": False},
    ),
    FunctionDescription(
        "search",
        "Searches under `path`. mode 'grep': lines matching the regular expression `pattern` (RE2 syntax: "
        "no backreferences or lookaround), in files whose path matches the glob `include` if given. mode 'glob': file paths matching `pattern`, "
        "e.g. '**/*.py'.",
        {"type": "object", "properties": {
            "pattern": {"type": "string"},
            "path": {"type": "string", "default": "."},
            "mode": {"type": "string", "enum": ["grep", "glob"], "default": "grep"},
            "include": {"type": "string"},
        }, "required": ["pattern"], "additionalProperties": False},
    ),
    FunctionDescription(
        "apply_patch",
        "Applies a patch in the V4A format to one or more files: '*** Begin Patch', then for each file "
        "'*** Add File: <path>' (lines prefixed '+'), '*** Delete File: <path>', or '*** Update File: <path>' "
        "(optionally '*** Move to: <path>') followed by hunks: an optional '@@ <line to seek>' and lines prefixed "
        "' ' (context), '-' (remove) or '+' (add), with '*** End of File' to anchor at the end; then "
        "'*** End Patch'. If any part does not apply, no file is changed.",
        {"type": "object", "properties": {"patch": {"type": "string"}}, "required": ["patch"],
         "additionalProperties": False},
    ),
)


def _cut(text: str) -> str:
    if len(text) <= MAX_TEXT:
        return text
    half = MAX_TEXT // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters truncated ...]\n{text[-half:]}"


class FilesTool:
    """``files``: a function namespace over one workspace folder."""

    def __init__(self, workspace: Path, *, use_openat2: bool | None = None) -> None:
        self.ws = Workspace(Path(workspace), use_openat2=use_openat2)
        self._schemas = {f.name: f.parameters for f in FUNCTIONS}

    @property
    def name(self) -> str:
        return "files"

    def description(self) -> ToolDescription:
        return ToolDescription(name="files", description=DESCRIPTION, functions=FUNCTIONS)

    def close(self) -> None:
        self.ws.close()

    def call(self, recipient: str, content: str) -> ToolResult:
        fn = recipient.removeprefix("functions.").removeprefix("files.")
        if fn not in self._schemas:
            raise ModelError(f"Unknown function {recipient!r}.",
                             hint="Use one of: " + ", ".join(f"files.{f.name}" for f in FUNCTIONS) + ".")
        args = self._arguments(fn, content)
        try:
            text = getattr(self, f"_{fn}")(**args)
        except ModelError:
            raise
        except OSError as exc:
            path = str(args.get("path", exc.filename or ""))
            if exc.errno in (28, 27, 5, 30):  # ENOSPC, EFBIG, EIO, EROFS: the host's problem
                raise ToolFailure(f"files.{fn} failed: {exc.strerror}.", hint="Nothing was changed.") from exc
            raise explain(exc, path) from exc
        return ToolResult(recipient=recipient, text=text)

    def _arguments(self, fn: str, content: str) -> dict[str, Any]:
        stripped = content.strip()
        if fn == "apply_patch" and stripped.startswith("*** Begin Patch"):
            return {"patch": content}
        try:
            args = json.loads(stripped or "{}")
        except json.JSONDecodeError as exc:
            raise ModelError(f"The arguments of files.{fn} are not valid JSON: {exc.msg} at column {exc.colno}.",
                             hint="Send one JSON object.") from exc
        try:
            jsonschema.validate(args, self._schemas[fn])
        except jsonschema.ValidationError as exc:
            where = "/".join(map(str, exc.absolute_path)) or "arguments"
            raise ModelError(f"Invalid arguments for files.{fn}: {where}: {exc.message}.",
                             hint=f"Parameters: {json.dumps(self._schemas[fn]['properties'])}") from None
        return dict(args)

    # ------------------------------------------------------------------ functions

    def _read(self, path: str, start_line: int = 1, num_lines: int = 400) -> str:
        data, size = self.ws.read_bytes(path, MAX_READ)
        if b"\0" in data[:8192]:
            return f"[{path} is a binary file of {size} bytes; it is not shown]"
        text = data.decode("utf-8", errors="replace")
        notes = []
        if size > len(data):
            notes.append(f"only the first {len(data)} of {size} bytes can be read")
        if "\ufffd" in text and b"\xef\xbf\xbd" not in data:
            notes.append("bytes that are not UTF-8 are shown as \ufffd")
        lines = text.splitlines(keepends=True)
        chunk = lines[start_line - 1 : start_line - 1 + num_lines]
        if not lines:
            return f"[{path} is empty]"
        if not chunk:
            return f"[{path} has {len(lines)} lines; start_line {start_line} is past the end]"
        body = "".join(chunk)
        if len(body) > MAX_TEXT:
            body = body[:MAX_TEXT]
            shown = body.count("\n")
            chunk = chunk[: max(shown, 1)]
        end = start_line - 1 + len(chunk)
        if start_line > 1 or end < len(lines):
            notes.append(f"lines {start_line}-{end} of {len(lines)}"
                         + (f"; continue with start_line={end + 1}" if end < len(lines) else ""))
        return body + (f"\n[{'; '.join(notes)}]" if notes else "")

    def _write(self, path: str, content: str) -> str:
        data = content.encode("utf-8")
        if len(data) > MAX_WRITE:
            raise ModelError(f"The content is {len(data)} bytes; files.write takes at most {MAX_WRITE}.")
        self.ws.write_atomic(path, data)
        return f"Wrote {len(data)} bytes to {self.ws.relative(path)}."

    def _list(self, path: str = ".", depth: int = 1) -> str:
        rows: list[str] = []
        self._list_into(path, "", depth, rows)
        if not rows:
            return f"[{self.ws.relative(path)} is empty]"
        if len(rows) > MAX_LIST:
            rows = [*rows[:MAX_LIST], f"[... {len(rows) - MAX_LIST} more entries; list a sub-folder]"]
        return "\n".join(rows)

    def _list_into(self, path: str, prefix: str, depth: int, rows: list[str]) -> None:
        entries, more = self.ws.scandir(path)
        for name, st, target in entries:
            if len(rows) > MAX_LIST:
                return
            shown = prefix + escape_controls(name)
            if target is not None:
                rows.append(f"{shown} -> {escape_controls(target)}")
            elif stat.S_ISDIR(st.st_mode):
                rows.append(shown + "/")
                if depth > 1:
                    self._list_into(f"{path}/{name}", shown + "/", depth - 1, rows)
            elif stat.S_ISREG(st.st_mode):
                rows.append(f"{shown}  ({st.st_size} bytes)")
            else:
                kind = "fifo" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode) else "device"
                rows.append(f"{shown}  [{kind}]")
        if more:
            rows.append(f"[{prefix or './'} has more than {len(entries):,} entries; only those are listed]")

    def _search(self, pattern: str, path: str = ".", mode: str = "grep", include: str | None = None) -> str:
        deadline = time.monotonic() + SEARCH_SECONDS
        hits: list[str] = []
        stopped = ""
        if len(pattern) > MAX_PATTERN:
            raise ModelError(f"The pattern is {len(pattern)} characters; files.search takes at most {MAX_PATTERN}.")
        regex = compile_regex(pattern) if mode == "grep" else None
        walked = WalkStats()
        for rel, fd, st in self.ws.walk_files(path, walked):
            if time.monotonic() > deadline:
                stopped = f"stopped after {SEARCH_SECONDS:g} s"
                break
            if len(hits) >= MAX_MATCHES:
                stopped = f"stopped at {MAX_MATCHES} matches"
                break
            if regex is None:
                if _glob_match(rel, pattern):
                    hits.append(escape_controls(rel))
                continue
            if include and not _glob_match(rel, include):
                continue
            if st.st_size > MAX_SEARCH_FILE:
                continue
            hits += _grep_fd(fd, rel, regex, MAX_MATCHES - len(hits))
        skipped = walked.note()
        if skipped:
            skipped = f"\n[{skipped}: search a sub-folder, or use the python tool]"
        if not hits:
            what = "files" if regex is None else "lines"
            return f"[no {what} match {pattern!r} under {self.ws.relative(path)}]{skipped}"
        return "\n".join(hits) + (f"\n[{stopped}; narrow the search]" if stopped else "") + skipped

    def _apply_patch(self, patch: str) -> str:
        try:
            actions = parse_patch(patch)
            if not actions:
                raise PatchError("The patch contains no file action.")
        except PatchError as exc:
            raise ModelError(f"apply_patch failed and changed nothing. {exc}",
                             hint="Write the patch in the V4A format: '*** Begin Patch', then '*** Add File: ', "
                                  "'*** Update File: ' or '*** Delete File: ' sections, then '*** End Patch'.") from None
        try:
            changes = plan_patch(actions, self._read_text_or_none)
        except PatchError as exc:
            raise ModelError(f"apply_patch failed and changed nothing. {exc}",
                             hint="Read the file again and resend the whole patch with the context lines copied "
                                  "exactly.") from None
        done: list[tuple[str, str | None]] = []  # (path, old content) for rollback
        try:
            for path, new in changes.items():
                old = self._read_text_or_none(path)
                if new is None:
                    self.ws.remove(path)
                else:
                    self.ws.write_atomic(path, new.encode("utf-8"))
                done.append((path, old))
        except (OSError, ModelError):
            for path, old in reversed(done):
                if old is None:
                    self.ws.remove(path)
                else:
                    self.ws.write_atomic(path, old.encode("utf-8"))
            raise
        summary = ", ".join(f"{'D' if new is None else 'M'} {path}" for path, new in changes.items())
        return f"Done! {summary}"

    def _read_text_or_none(self, path: str) -> str | None:
        if not self.ws.exists(path):
            return None
        data, size = self.ws.read_bytes(path, MAX_WRITE + 1)
        if size > MAX_WRITE:
            raise PatchError(f"{path} is larger than {MAX_WRITE} bytes; it cannot be patched.")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise PatchError(f"{path} is not UTF-8 text; it cannot be patched.") from None


def _glob_match(rel: str, pattern: str) -> bool:
    pattern = pattern.removeprefix("./")
    if fnmatch.fnmatchcase(rel, pattern) or fnmatch.fnmatchcase(rel.rsplit("/", 1)[-1], pattern):
        return True
    return pattern.startswith("**/") and fnmatch.fnmatchcase(rel, pattern[3:])


def compile_regex(pattern: str) -> Any:
    """A model-chosen pattern, compiled by RE2: matching is linear in the text, whatever the pattern.

    Python's ``re`` backtracks, and holds the GIL while it does, so one pattern like ``(a+)+$`` could stop every
    thread of the process for hours; RE2 refuses the features that need backtracking instead.
    """
    options = re2.Options()
    options.log_errors = False
    options.max_mem = REGEX_MEMORY
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ModelError(f"Invalid regular expression {pattern!r}: {reason}.",
                         hint="Patterns use RE2 syntax: no backreferences (\\1) and no lookaround ((?=...), "
                              "(?<=...)); escape literal characters such as '(' or '['.") from None


def _grep_fd(fd: int, rel: str, regex: Any, room: int) -> list[str]:
    data = os.read(fd, MAX_SEARCH_FILE)
    if b"\0" in data[:8192]:
        return []
    out = []
    for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if regex.search(line[:10_000]):
            out.append(f"{escape_controls(rel)}:{n}: {escape_controls(line[:300], keep=chr(9))}")
            if len(out) >= room:
                break
    return out
