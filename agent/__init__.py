"""ossagent.agent: harmony, constrained decoding, the agent loop, its backends, the CLI and the server.

The main names load lazily (nothing heavy happens at import time)::

    from ossagent.agent import Agent, LocalBackend, RemoteBackend, ScriptedBackend, Limits, Transcript
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Agent": "ossagent.agent.loop",
    "RunResult": "ossagent.agent.loop",
    "RunStream": "ossagent.agent.loop",
    "Limits": "ossagent.agent.limits",
    "Transcript": "ossagent.agent.transcript",
    "LocalBackend": "ossagent.agent.backends.local",
    "RemoteBackend": "ossagent.agent.backends.remote",
    "ScriptedBackend": "ossagent.agent.backends.scripted",
    "Step": "ossagent.agent.backends.scripted",
    "FunctionTool": "ossagent.agent.functions",
    "Functions": "ossagent.agent.functions",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ossagent.agent' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
