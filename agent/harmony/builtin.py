"""The built-in ``browser`` and ``python`` namespaces, with the exact texts gpt-oss was trained on.

The texts live in ``builtin_tools.json`` (a copy of openai-harmony's ``get_tool_namespace_config``
output); a test checks them against the reference.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from ossagent.tools.base import FunctionDescription, ToolDescription


@lru_cache(maxsize=1)
def _configs() -> dict[str, Any]:
    text = resources.files("ossagent.agent.harmony").joinpath("builtin_tools.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def builtin_namespace(name: str) -> ToolDescription:
    """``browser`` or ``python`` as trained; a fresh value each call (parameters are fresh dicts)."""
    try:
        raw = json.loads(json.dumps(_configs()[name]))
    except KeyError:
        raise ValueError(f"no built-in tool namespace {name!r}; there are {sorted(_configs())}") from None
    funcs = tuple(FunctionDescription(t["name"], t["description"], t.get("parameters")) for t in raw["tools"])
    return ToolDescription(raw["name"], raw["description"], funcs)


def browser_namespace() -> ToolDescription:
    return builtin_namespace("browser")


def python_namespace() -> ToolDescription:
    return builtin_namespace("python")
