"""An MCP server's words are untrusted: what it says about its tools is shown to the model, made inert.

No harmony markup passes (special-token spellings are removed, stray ``<|``/``|>`` defused), text that the
renderer does not comment line by line (schema descriptions, titles, enum values, defaults, property names)
is kept on one line so it cannot start a line of the developer message, and every text is length-capped.
"""

from __future__ import annotations

import re
from typing import Any

_SPECIAL = re.compile(r"<\|[^<>|]{0,64}\|>")
_NEWLINES = re.compile(r"\s*[\r\n\u2028\u2029\x0b\x0c\x85]+\s*")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def inert(text: str, *, limit: int = 2000, one_line: bool = False) -> str:
    """``text`` without harmony markup or control characters, at most ``limit`` characters."""
    out = _SPECIAL.sub("", text)
    out = out.replace("<|", "<").replace("|>", ">")
    out = _CONTROL.sub("", out)
    if one_line:
        out = _NEWLINES.sub(" ", out)
    out = out.strip()
    return out if len(out) <= limit else out[: limit - 1] + "…"


def inert_schema(schema: Any, *, limit: int = 500) -> Any:
    """A copy of a JSON Schema whose strings (keys included) are inert one-liners; ``pattern`` is kept."""
    if isinstance(schema, dict):
        return {inert(k, limit=100, one_line=True) if isinstance(k, str) else k:
                (v if k == "pattern" else inert_schema(v, limit=limit)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [inert_schema(v, limit=limit) for v in schema]
    if isinstance(schema, str):
        return inert(schema, limit=limit, one_line=True)
    return schema
