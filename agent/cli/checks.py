"""Common command-line mistakes, caught before any model loads: each is one line and exit status 2.

:func:`preflight` checks what a person typed for ``run``, ``chat`` and ``serve``: a ``--model`` folder that is
not a checkpoint, a ``--workspace`` that is a file, a ``--resume`` or ``--schema`` file that is missing (``not
found``) or broken (the JSON error), numbers out of range, a ``--remote`` server that cannot be reached or
refuses (with a hint when the URL lacks ``/v1``). ``run -`` reads the task from standard input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from ossagent.agent.backends.discovery import is_checkpoint
from ossagent.tools.base import UserError


def _model(value: str) -> None:
    path = Path(value).expanduser()
    if not path.exists():
        raise UserError(f"--model {value}: not found")
    if not path.is_dir():
        raise UserError(f"--model {value} is a file; give the checkpoint's folder")
    if not is_checkpoint(path):
        raise UserError(f"--model {value} is not a gpt-oss checkpoint (no config.json or original/config.json)")


def _workspace(value: str) -> None:
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"--workspace {value} is a file, not a folder")


def _resume(value: str) -> None:
    from ossagent.agent.transcript import Transcript

    path = Path(value).expanduser()
    if not path.is_file():
        raise UserError(f"--resume {value}: not found" if not path.exists() else f"--resume {value} is not a file")
    try:
        Transcript.load(path)
    except (ValueError, OSError, TypeError, KeyError) as exc:  # TranscriptError and JSON errors are ValueErrors
        raise UserError(f"--resume {value} is not an ossagent transcript: {exc}") from exc


def schema_value(value: str) -> Any:
    """A JSON Schema given inline (``{...}``) or as a file; a missing file is "not found", not a JSON error."""
    text, where = value, "--schema"
    if not value.lstrip().startswith(("{", "[")):
        path = Path(value).expanduser()
        if not path.is_file():
            raise UserError(f"--schema {value}: not found (give a JSON Schema file or inline JSON)")
        text, where = path.read_text(encoding="utf-8"), f"--schema {value}"
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where} is not valid JSON: {exc}") from exc
    if not isinstance(schema, dict):
        raise UserError(f"{where} must be a JSON object (a JSON Schema)")
    return schema


def _numbers(args: argparse.Namespace) -> None:
    port = getattr(args, "port", None)
    if port is not None and not 0 <= port <= 65535:
        raise UserError(f"--port {port} is not a port: use 1-65535, or 0 for any free one")
    for flag, lo in (("max_turns", 1), ("max_tokens", 1), ("slots", 1)):
        value = getattr(args, flag, None)
        if value is not None and value < lo:
            raise UserError(f"--{flag.replace('_', '-')} must be at least {lo}, not {value}")
    timeout = getattr(args, "timeout", None)
    if timeout is not None and timeout <= 0:
        raise UserError(f"--timeout must be a positive number of seconds, not {timeout}")
    temperature = getattr(args, "temperature", None)
    if temperature is not None and not 0.0 <= temperature <= 2.0:
        raise UserError(f"--temperature must be within [0, 2], not {temperature}")


def remote_hint(url: str) -> str:
    return "" if url.rstrip("/").endswith("/v1") else f" (OpenAI-compatible URLs usually end in /v1: {url.rstrip('/')}/v1)"


def check_remote(url: str, api_key: str | None, timeout: float = 10.0) -> None:
    """Ask the server for its models: unreachable, refused or not OpenAI-compatible is a user error now,
    not a failed run later."""
    import httpx

    if not url.startswith(("http://", "https://")):
        raise UserError(f"--remote {url}: the URL must start with http:// or https://")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        resp = httpx.get(url.rstrip("/") + "/models", headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise UserError(f"--remote {url}: cannot reach the server ({type(exc).__name__}: {exc})") from exc
    if resp.status_code in (401, 403):
        raise UserError(f"--remote {url} refused the API key (HTTP {resp.status_code}); pass --api-key")
    if resp.status_code != 200:
        raise UserError(f"--remote {url} answered HTTP {resp.status_code} for /models{remote_hint(url)}")


def read_task(stdin: TextIO) -> str:
    task = stdin.read().strip()
    if not task:
        raise UserError("the task '-' means standard input, and it was empty")
    return task


def preflight(args: argparse.Namespace, stdin: TextIO | None = None) -> None:
    """Check ``args`` of run/chat/serve (and read a ``-`` task); raises :class:`UserError` (exit 2)."""
    if args.command not in ("run", "chat", "serve"):
        return
    _numbers(args)
    if getattr(args, "task", None) == "-":
        args.task = read_task(stdin or sys.stdin)
    if args.model:
        _model(args.model)
    _workspace(args.workspace)
    if getattr(args, "resume", None):
        _resume(args.resume)
    if getattr(args, "schema", None):
        schema_value(args.schema)
    if args.remote and not args.scripted:
        check_remote(args.remote, args.api_key)
