"""Structured final answers: a pydantic model or a JSON Schema the final message must follow.

The schema goes into the developer message (harmony's "# Response Formats" block) and, when the
constrained-decoding hook is available, also constrains the final channel's tokens. The answer is parsed
and validated here, so a run's ``output`` is a typed object or ``None`` with an error saying why.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import jsonschema

from ossagent.tools.base import UserError


class OutputError(ValueError):
    """The model's final answer does not follow the requested format (the model's fault)."""


def _is_pydantic_model(obj: Any) -> bool:
    return isinstance(obj, type) and hasattr(obj, "model_json_schema") and hasattr(obj, "model_validate")


@dataclass(frozen=True)
class AnswerFormat:
    name: str
    schema: dict[str, Any]
    description: str | None = None
    model: Any = None  # the pydantic class, when one was given

    @classmethod
    def from_spec(cls, spec: Any) -> AnswerFormat | None:
        """Accept a pydantic model class, a JSON Schema dict, or an OpenAI ``json_schema`` object
        (``{"name": ..., "schema": ..., "description": ...}``)."""
        if spec is None:
            return None
        if isinstance(spec, AnswerFormat):
            return spec
        if _is_pydantic_model(spec):
            schema = spec.model_json_schema()
            return cls(_name(spec.__name__), schema, (spec.__doc__ or "").strip() or None, spec)
        if isinstance(spec, dict):
            if "schema" in spec and isinstance(spec["schema"], dict):
                name, schema, desc = spec.get("name") or "response", spec["schema"], spec.get("description")
            else:
                name, schema, desc = str(spec.get("title") or "response"), spec, None
            try:
                jsonschema.validators.validator_for(schema).check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise UserError(f"response format {name!r} is not a valid JSON Schema: {exc.message}") from exc
            return cls(_name(name), schema, desc)
        raise UserError(
            f"response_format must be a pydantic model class or a JSON Schema dict, not {type(spec).__name__}"
        )

    def prompt_entry(self) -> tuple[str, dict[str, Any], str | None]:
        return (self.name, self.schema, self.description)

    def parse(self, text: str) -> Any:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise OutputError(f"the final answer is not JSON: {exc}") from exc
        if self.model is not None:
            try:
                return self.model.model_validate(value)
            except Exception as exc:  # pydantic.ValidationError
                raise OutputError(f"the final answer does not match {self.name}: {exc}") from exc
        errors = sorted(jsonschema.validators.validator_for(self.schema)(self.schema).iter_errors(value),
                        key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(p) for p in errors[0].path) or "(root)"
            raise OutputError(f"the final answer does not match {self.name} at {where}: {errors[0].message}")
        return value


def _name(raw: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", raw).strip("_") or "response"
