"""The config file: defaults for command-line flags, in TOML, at ``<ossagent home>/config.toml``.

Keys are flag names (``max-tokens`` or ``max_tokens``); top-level keys apply to every command that has the
flag, a ``[run]``, ``[chat]``, ``[serve]`` (any command's name) table only to that command. A flag typed on
the command line wins over the file. For example::

    model = "~/models/gpt-oss-20b"
    tools = ["python", "browser"]     # or "python,browser"
    reasoning = "high"

    [serve]
    port = 8080
    cors-origin = ["http://localhost:3000"]

An unknown key or a value of the wrong kind is one line and exit status 2 (the file's fault, said before any
model loads).
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

from ossagent.tools.base import UserError

FILE_NAME = "config.toml"


def load(path: Path) -> dict[str, Any]:
    """The file's table, or an empty one when there is no file."""
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a valid TOML config file: {exc}") from exc


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps its sub-commands here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _value(action: argparse.Action, value: Any, where: str) -> Any:
    if isinstance(value, list) and action.nargs is None and action.dest == "tools":
        value = ",".join(str(v) for v in value)
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        if not isinstance(value, bool):
            raise UserError(f"{where}: must be true or false, not {value!r}")
        return value
    if isinstance(action, argparse._AppendAction):
        values = value if isinstance(value, list) else [value]
        return [action.type(v) if callable(action.type) else v for v in values]
    if isinstance(value, list | dict):
        raise UserError(f"{where}: must be a single value, not {value!r}")
    try:
        out = action.type(value) if callable(action.type) else value
    except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
        raise UserError(f"{where}: {exc}") from exc
    if action.choices is not None and out not in action.choices:
        raise UserError(f"{where}: {out!r} is not one of {', '.join(map(str, action.choices))}")
    return out


def apply(parser: argparse.ArgumentParser, args: argparse.Namespace, table: dict[str, Any], path: Path) -> None:
    """Fill ``args`` from the file where the command line left a flag at its default."""
    subs = subparsers(parser)
    sub = subs.get(args.command)
    if sub is None or not table:
        return
    actions = {a.dest: a for a in sub._actions if a.option_strings}
    scoped = table.get(args.command, {})
    if not isinstance(scoped, dict):
        raise UserError(f"{path}: [{args.command}] must be a table")
    general = {k: v for k, v in table.items() if k not in subs}
    known = {a.dest for p in subs.values() for a in p._actions if a.option_strings}
    chosen: dict[str, tuple[str, Any]] = {}  # dest -> (where, value); the command's table wins
    for scope, values in (("", general), (f"[{args.command}] ", scoped)):
        for key, value in values.items():
            dest = key.replace("-", "_")
            if dest not in known:
                raise UserError(f"{path}: {scope}unknown setting {key!r} (keys are flag names, e.g. max-tokens)")
            chosen[dest] = (f"{path}: {scope}{key}", value)
    for dest, (where, value) in chosen.items():
        action = actions.get(dest)
        if action is None or dest in ("help", "version"):
            continue  # a flag of other commands
        if getattr(args, dest, None) == sub.get_default(dest):
            setattr(args, dest, _value(action, value, where))
