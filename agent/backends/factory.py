"""Build a backend from what a person typed or configured (the CLI, ``make demo``, examples)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from ossagent.agent.backends.base import Backend
from ossagent.agent.backends.discovery import demo_fallback, find_model
from ossagent.agent.settings import Settings
from ossagent.tools.base import UserError

NO_MODEL_HELP = """\
No gpt-oss checkpoint was found. To get one (about 13 GB):

    ossagent download openai/gpt-oss-20b        # needs network access and huggingface-hub

or point ossagent at a folder you already have:

    ossagent run --model /path/to/gpt-oss-20b "your task"     (or set OSSAGENT_MODEL)

A remote OpenAI-compatible server works too:

    ossagent run --remote http://host:8000/v1 --remote-model gpt-oss-20b "your task"
"""


def load_script(path: str | Path) -> list[str]:
    """A scripted model's replies: a JSON array of harmony strings, or one JSON string per line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read script {p}: {exc}") from exc
    try:
        data = json.loads(text)
        steps = data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        try:
            steps = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise UserError(f"{p}: not a JSON array nor JSON lines of strings: {exc}") from exc
    if not all(isinstance(s, str) for s in steps):
        raise UserError(f"{p}: every step must be a string of harmony text")
    return steps


def build_backend(
    settings: Settings, *, model: str | None = None, remote: str | None = None, remote_model: str | None = None,
    api_key: str | None = None, scripted: str | None = None, progress: Callable[[str], None] | None = None,
    weights: str = "bf16",
    slots: int | None = 1, kv_memory_gb: float | None = None, context: int | None = None,
    adapter: str | Sequence[str] | None = None, attention: str = "plain",
) -> Backend:
    """Pick the backend: a script, a remote server, or a local checkpoint (the default; the built-in demo
    model when none is configured, see :func:`demo_fallback`). ``slots`` and ``kv_memory_gb`` size a local
    model's batch engine (see :class:`~ossagent.agent.backends.local.LocalBackend`); ``context``: the window in
    tokens (the local engine's cache length; a remote model's window)."""
    if scripted:
        from ossagent.agent.backends.scripted import ScriptedBackend

        return ScriptedBackend(load_script(scripted), constrained=True)
    if remote:
        from ossagent.agent.backends.remote import RemoteBackend

        return RemoteBackend(remote, remote_model or "gpt-oss-20b", api_key=api_key, context_window=context)
    folder = Path(model).expanduser() if model else find_model(settings)
    if folder is None:
        folder = demo_fallback(settings)
    if folder is None:
        raise UserError(NO_MODEL_HELP)
    from ossagent.agent.backends.local import DEFAULT_KV_MEMORY_GB, LocalBackend

    return LocalBackend.from_pretrained(folder, device=settings.device, tokenizer=settings.tokenizer,
                                        tiktoken_cache_dir=settings.tiktoken_cache_dir, progress=progress,
                                        weights=weights, slots=slots,
                                        kv_memory_gb=DEFAULT_KV_MEMORY_GB if kv_memory_gb is None else kv_memory_gb,
                                        context=context, adapter=adapter, attention=attention)


def example_backend(script: Sequence[str], *, use_model: bool = True, quiet: bool = False) -> tuple[Backend, bool]:
    """For examples and ``make demo``: the configured model when there is one, else ``script`` replayed.

    Returns (backend, scripted). Reads the environment (an entry point's job) through :class:`Settings`.
    """
    import sys

    from ossagent.agent.backends.scripted import ScriptedBackend

    settings = Settings.from_env()
    folder = find_model(settings) if use_model else None
    if folder is not None:
        from ossagent.agent.backends.local import LocalBackend

        if not quiet:
            print(f"[using the model at {folder}]", file=sys.stderr)
        return LocalBackend.from_pretrained(folder, device=settings.device, tokenizer=settings.tokenizer,
                                            tiktoken_cache_dir=settings.tiktoken_cache_dir), False
    if use_model and not quiet:
        print("[no gpt-oss checkpoint configured: replaying a scripted model so you can see the whole flow]\n"
              "[to use a real model: `ossagent download openai/gpt-oss-20b` or set OSSAGENT_MODEL=/path]\n",
              file=sys.stderr)
    return ScriptedBackend(list(script), constrained=True), True  # scripts obey the same grammar as a model
