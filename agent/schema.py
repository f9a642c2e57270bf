"""JSON Schemas for function arguments and structured outputs: checked, normalised and compiled once.

A schema is accepted only when all three hold, so a bad declaration fails where it is written:

1. it is a valid JSON Schema (the metaschema of its ``$schema``, Draft 2020-12 by default);
2. llguidance can compile it in strict mode, so every keyword is enforced while decoding; and
3. :func:`jsonschema` can validate instances against it (the second check after decoding).

Strict compile failures become :class:`UnsupportedSchemaError` naming the keyword llguidance rejects.
Two relaxations exist, each opt-in or recorded, never silent:

* ``oneOf`` is decoded as ``anyOf`` (llguidance's ``coerce_one_of``); the jsonschema check afterwards
  still rejects an instance that matches several branches. Recorded in :attr:`CompiledSchema.notes`.
* ``lenient=True`` lets llguidance skip keywords it does not implement; they are listed in
  :attr:`CompiledSchema.notes` and still enforced by the jsonschema check after decoding.

Objects that list ``properties`` and say nothing about extra keys are closed for decoding
(``additionalProperties: false``, as OpenAI's strict mode does): the model writes only declared keys,
which is a subset of what the original schema accepts. Validation uses the schema as declared. ``format: date`` is decoded with an exact pattern (see
:data:`DATE_PATTERN`), since llguidance's format is looser than the validator.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import llguidance as llg

from ossagent.agent.schema_guard import REGISTRY, check_schema_safety, format_checker, safe_validator_class
from ossagent.tools.base import UserError

# Compact JSON: no whitespace between tokens, so a weak model cannot loop on spaces or newlines.
JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": False}
_COMBINATOR_KEYS = (
    "allOf", "anyOf", "oneOf", "not", "$ref", "dependentSchemas", "if", "unevaluatedProperties", "patternProperties",
)


# RFC 3339 full-date with the days of each month and leap years, years 0001-9999 (Python's date range).
# llguidance's own "date" format accepts 2023-02-29, which the validator (date.fromisoformat) rejects.
_YEAR = r"(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_LEAP = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
DATE_PATTERN = (
    rf"^(?:{_YEAR}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    rf"|02-(?:0[1-9]|1[0-9]|2[0-8]))|{_LEAP}-02-29)$"
)


class SchemaError(UserError):
    """A schema that is not valid JSON Schema (or not JSON at all)."""


class UnsupportedSchemaError(UserError):
    """A valid schema using a feature the constrained decoder cannot enforce."""


@dataclass(frozen=True)
class CompiledSchema:
    """A checked schema: what the model is shown, what decoding enforces, what validation checks."""

    schema: dict[str, Any]  # as declared (validation uses this)
    decode_schema: dict[str, Any]  # normalised for the grammar (closed objects, JSON options)
    grammar_json: str = field(repr=False)  # the %json argument of the Lark grammar
    notes: tuple[str, ...] = ()  # relaxations in force while decoding, for the caller to read
    validator: Any = field(repr=False, compare=False, default=None)


def _check_json(value: Any, where: str) -> None:
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{where}: the schema is not JSON-serialisable: {exc}") from exc
    if not text:
        raise SchemaError(f"{where}: empty schema")


def close_objects(schema: Any) -> Any:
    """A copy in which objects with ``properties`` and no rule for extra keys forbid extra keys.

    ``format: date`` becomes an equivalent pattern that also knows month lengths and leap years.

    ``allOf`` branches, and objects whose properties are combined with ``anyOf``/``oneOf``/``allOf``/
    ``$ref``/``if`` (and those combinators' branches), are left alone: closing them would reject keys
    that another part of the schema adds.
    """
    if isinstance(schema, list):
        return [close_objects(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    combined = "properties" in schema and any(k in schema for k in _COMBINATOR_KEYS)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("const", "enum", "default", "examples", "allOf") or (combined and key in _COMBINATOR_KEYS):
            out[key] = copy.deepcopy(value)
        elif key in ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas"):
            out[key] = {k: close_objects(v) for k, v in value.items()} if isinstance(value, dict) else value
        else:
            out[key] = close_objects(value)
    if out.get("format") == "date" and "pattern" not in out:
        del out["format"]
        out["pattern"] = DATE_PATTERN
    if (
        isinstance(out.get("properties"), dict)
        and "additionalProperties" not in out
        and not any(k in out for k in _COMBINATOR_KEYS)
    ):
        out["additionalProperties"] = False
    return out


def _llg_compile(decode_schema: dict[str, Any], options: dict[str, Any]) -> tuple[str | None, list[str]]:
    """Compile with llguidance (no tokenizer needed); returns (error, warnings)."""
    body = json.dumps({**decode_schema, "x-guidance": {**JSON_OPTIONS, **options}}, ensure_ascii=False)
    grammar = llg.LLMatcher.grammar_from_lark(f"start: body\nbody: %json {body}")
    is_err, msgs = llg.LLMatcher.validate_grammar_with_warnings(grammar)
    if is_err:
        return _short(msgs[0] if msgs else "unknown llguidance error"), []
    return None, [_short(m) for m in msgs]


def _short(msg: str) -> str:
    """llguidance's first line, without the echo of the whole grammar."""
    first = msg.strip().splitlines()[0] if msg.strip() else msg
    return first.split("failed to compile JSON schema: ", 1)[-1]


def compile_schema(schema: Any, *, where: str, lenient: bool = False, close: bool = True) -> CompiledSchema:
    """Check ``schema`` and compile it for decoding; raise a :class:`UserError` subclass if it cannot be."""
    if isinstance(schema, bool) or not isinstance(schema, dict):
        raise SchemaError(f"{where}: a schema must be a JSON object (dict), got {type(schema).__name__}")
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    check_schema_safety(schema, cls, where)
    _check_json(schema, where)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise SchemaError(f"{where}: not a valid JSON Schema at {path}: {exc.message}") from exc
    validator = safe_validator_class(cls)(schema, format_checker=format_checker(cls), registry=REGISTRY)
    decode_schema = close_objects(schema) if close else copy.deepcopy(schema)
    notes: list[str] = []
    options: dict[str, Any] = {}
    err, warnings = _llg_compile(decode_schema, options)
    if err is not None and "oneOf" in err:
        options["coerce_one_of"] = True
        err, warnings = _llg_compile(decode_schema, options)
        notes.append("oneOf is decoded as anyOf; validation after decoding enforces exactly one branch")
    if err is not None and lenient:
        options["lenient"] = True
        err, warnings = _llg_compile(decode_schema, options)
        notes += [_lenient_note(w, cls.FORMAT_CHECKER.checkers) for w in warnings]
    if err is not None:
        hint = "" if lenient else (
            " Pass lenient=True to decode without it (the arguments are still validated afterwards),"
            " or remove it from the schema."
        )
        raise UnsupportedSchemaError(f"{where}: the constrained decoder cannot enforce this schema: {err}.{hint}")
    if options.get("coerce_one_of"):
        warnings = [w for w in warnings if "oneOf" not in w]
    if warnings and not lenient:
        raise UnsupportedSchemaError(f"{where}: the constrained decoder would ignore part of this schema: "
                                     + "; ".join(warnings))
    grammar_json = json.dumps({**decode_schema, "x-guidance": {**JSON_OPTIONS, **options}}, ensure_ascii=False)
    return CompiledSchema(schema, decode_schema, grammar_json, tuple(notes), validator)


def _lenient_note(warning: str, checkers: Any) -> str:
    fmt = warning.split("Unknown format: ", 1)[1].strip() if "Unknown format: " in warning else None
    if fmt is not None and fmt not in checkers:
        return (f"format {fmt!r} is not enforced: the decoder does not know it and no validator for it is "
                "installed (it is an annotation only, as JSON Schema 2020-12 allows)")
    return f"not enforced while decoding (validated afterwards): {warning}"


def validation_errors(compiled: CompiledSchema, instance: Any, limit: int = 3) -> list[str]:
    """Readable errors of ``instance`` against the declared schema (empty list when valid)."""
    errors = sorted(compiled.validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    out = []
    for err in errors[:limit]:
        path = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        out.append(f"at ${path}: {err.message}")
    if len(errors) > limit:
        out.append(f"... and {len(errors) - limit} more")
    return out


def loads_strict(text: str) -> Any:
    """``json.loads`` that rejects NaN/Infinity, which JSON Schema validators would otherwise accept."""

    def bad_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    value = json.loads(text, parse_constant=bad_constant)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("non-finite number")
    return value
