"""The validator behind :mod:`ossagent.agent.schema`, made safe for schemas a client or model chose.

``jsonschema`` as shipped runs ``pattern``/``patternProperties`` with Python's backtracking ``re`` (one pattern
like ``(a+)+$`` holds the GIL for hours, freezing every client of ``serve``) and may retrieve ``$ref``/``$dynamicRef``
targets it does not hold, over the network or from disk. Here:

* ``pattern``, ``patternProperties`` and ``additionalProperties`` (which reads ``patternProperties``) match with RE2,
  linear in the text; the ``regex`` format is checked by RE2 too. Every pattern is compiled when the schema is,
  so a pattern RE2 cannot run (backreferences, lookaround) is refused where it is written.
* ``unevaluatedProperties`` next to ``patternProperties`` is refused: jsonschema evaluates that pair with ``re``.
* References resolve only inside the schema itself and the JSON Schema metaschemas: the registry retrieves
  nothing, and a reference it cannot resolve is refused at compile time.
* Size is bounded (:data:`MAX_SCHEMA_DEPTH`, :data:`MAX_SCHEMA_NODES`) before anything recurses into the schema.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import jsonschema
import re2
import referencing
import referencing.exceptions
import referencing.jsonschema
from jsonschema_specifications import REGISTRY as METASCHEMAS

from ossagent.tools.base import UserError

MAX_SCHEMA_DEPTH = 64  # nested JSON containers in one schema
MAX_SCHEMA_NODES = 20_000  # JSON values in one schema
REGEX_MEMORY = 8 << 20  # bytes RE2 may use for one compiled pattern
_DATA_KEYS = frozenset({"const", "enum", "default", "examples"})  # values that are instances, not schemas


class SchemaLimitError(UserError):
    """A schema this process refuses to run: too large, an unsafe pattern, or a reference it cannot resolve."""


def _refuse(uri: str) -> referencing.Resource[Any]:
    raise referencing.exceptions.NoSuchResource(ref=uri)  # type: ignore[call-arg]


# Retrieves nothing: jsonschema adds the metaschemas; every other reference must be inside the schema.
REGISTRY: referencing.Registry[Any] = referencing.Registry(retrieve=_refuse)  # type: ignore[call-arg]


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> Any:
    """``pattern`` compiled by RE2; :class:`re2.error` when RE2 cannot run it."""
    options = re2.Options()
    options.log_errors = False
    options.max_mem = REGEX_MEMORY
    return re2.compile(pattern, options)


def _search(pattern: str, text: str) -> bool:
    return compile_pattern(pattern).search(text) is not None


def _pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and not _search(patrn, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {patrn!r}")


def _pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any,
                        schema: Any) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for patrn, subschema in patterns.items():
        for key, value in instance.items():
            if _search(patrn, key):
                yield from validator.descend(value, subschema, path=key, schema_path=patrn)


def _additional_properties(validator: Any, extra_schema: Any, instance: Any,
                           schema: Any) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    declared = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = sorted((k for k in instance if k not in declared and not any(_search(p, k) for p in patterns)), key=str)
    if validator.is_type(extra_schema, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], extra_schema, path=extra)
    elif not extra_schema and extras:
        listed, many = ", ".join(repr(k) for k in extras), len(extras) > 1
        if patterns:
            yield jsonschema.ValidationError(f"{listed} {'do' if many else 'does'} not match any of the regexes: "
                                             + ", ".join(repr(p) for p in sorted(patterns)))
        else:
            yield jsonschema.ValidationError(
                f"Additional properties are not allowed ({listed} {'were' if many else 'was'} unexpected)")


@functools.cache
def safe_validator_class(cls: type[Any]) -> type[Any]:
    """``cls`` with the pattern keywords on RE2."""
    return jsonschema.validators.extend(cls, validators={
        "pattern": _pattern, "patternProperties": _pattern_properties, "additionalProperties": _additional_properties,
    })


def format_checker(cls: type[Any]) -> jsonschema.FormatChecker:
    """``cls``'s format checker with ``regex`` checked by RE2."""
    checker = jsonschema.FormatChecker(())
    checker.checkers = dict(cls.FORMAT_CHECKER.checkers)
    checker.checks("regex", raises=re2.error)(lambda value: not isinstance(value, str) or bool(compile_pattern(value)))
    return checker


def _walk(schema: Any, where: str) -> Iterator[dict[str, Any]]:
    """Every object of ``schema`` that is itself a schema (not ``const``/``enum`` data), iteratively, bounded."""
    stack: list[tuple[Any, int]] = [(schema, 1)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if depth > MAX_SCHEMA_DEPTH or nodes > MAX_SCHEMA_NODES:
            raise SchemaLimitError(f"{where}: the schema is too large (at most {MAX_SCHEMA_DEPTH} levels of "
                                   f"nesting and {MAX_SCHEMA_NODES} values)")
        if isinstance(node, dict):
            yield node
            stack += [(v, depth + 1) for k, v in node.items() if k not in _DATA_KEYS]
        elif isinstance(node, list):
            stack += [(v, depth + 1) for v in node]


def check_schema_safety(schema: dict[str, Any], cls: type[Any], where: str) -> None:
    """Refuse what the safe validator cannot run: size, patterns RE2 rejects, references outside the schema."""
    has_unevaluated = has_pattern_properties = False
    for node in _walk(schema, where):
        patterns = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        if isinstance(node.get("patternProperties"), dict):
            has_pattern_properties = True
            patterns += list(node["patternProperties"])
        has_unevaluated = has_unevaluated or "unevaluatedProperties" in node
        for patrn in patterns:
            try:
                compile_pattern(patrn)
            except re2.error as exc:
                raise SchemaLimitError(f"{where}: pattern {patrn!r} is not supported: {exc}. Patterns run on RE2: "
                                       "no backreferences and no lookaround.") from None
    if has_unevaluated and has_pattern_properties:
        raise SchemaLimitError(f"{where}: unevaluatedProperties together with patternProperties is not supported")
    _check_references(schema, cls, where)


def _check_references(schema: dict[str, Any], cls: type[Any], where: str) -> None:
    """Resolve every ``$ref``/``$dynamicRef`` against the schema itself; nothing is retrieved."""
    spec = referencing.jsonschema.specification_with(cls.META_SCHEMA.get("$id", ""),
                                                     default=referencing.jsonschema.DRAFT202012)
    registry = METASCHEMAS.combine(REGISTRY)
    stack: list[tuple[Any, Any]] = [(schema, registry.resolver_with_root(
        spec.create_resource(schema)))]
    while stack:  # the size was bounded by check_schema_safety's walk
        node, resolver = stack.pop()
        if isinstance(node, list):
            stack += [(v, resolver) for v in node]
            continue
        if not isinstance(node, dict):
            continue
        if isinstance(node.get("$id"), str) and node is not schema:
            resolver = resolver.in_subresource(spec.create_resource(node))
        for key in ("$ref", "$dynamicRef"):
            ref = node.get(key)
            if isinstance(ref, str):
                try:
                    resolver.lookup(ref)
                except referencing.exceptions.Unresolvable:
                    raise SchemaLimitError(f"{where}: {key} {ref!r} does not point inside the schema; schemas are "
                                           "never fetched from the network or disk: put the target in $defs") from None
        stack += [(v, resolver) for k, v in node.items() if k not in _DATA_KEYS]
