"""Structured final answers: what users may pass as ``response_format``, turned into a
:class:`~ossagent.agent.functions.ResponseFormat` (which renders in the developer message, constrains the
final channel through the turn hook, and parses the answer into a typed object)."""

from __future__ import annotations

import re
from typing import Any

from ossagent.agent.functions import ResponseFormat
from ossagent.tools.base import ModelError, UserError

OutputError = ModelError  # a final answer that does not follow the format is the model's fault


def response_format(spec: Any) -> ResponseFormat | None:
    """Accept a pydantic model class, a JSON Schema dict, an OpenAI ``json_schema`` object
    (``{"name", "schema", "description"}``) or a ready :class:`ResponseFormat`."""
    if spec is None or isinstance(spec, ResponseFormat):
        return spec
    if isinstance(spec, type) and hasattr(spec, "model_json_schema"):
        return ResponseFormat.from_model(spec)
    if isinstance(spec, dict):
        if isinstance(spec.get("schema"), dict):
            name, schema, desc = spec.get("name") or "response", spec["schema"], spec.get("description") or ""
        else:
            name, schema, desc = str(spec.get("title") or "response"), spec, ""
        return ResponseFormat.from_schema(_name(name), schema, desc)
    raise UserError(
        f"response_format must be a pydantic model class or a JSON Schema dict, not {type(spec).__name__}"
    )


def _name(raw: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", raw).strip("_") or "response"
