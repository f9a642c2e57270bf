"""JSON Schema -> the TypeScript-like parameter types of ``namespace functions``.

gpt-oss was trained on openai-harmony's rendering, so this follows it exactly, oddities included
(docs: harmony-format.md §3.5 and §4). The ones a reader would otherwise "fix":

* A nested object's description is printed twice (above the key and glued after ``key:``).
* Arrays are ``TS(items) + "[]"`` without parentheses: ``"a" | "b"[]``.
* ``anyOf``, ``allOf``, ``const``, enum without type, ``{}`` and type ``"null"`` all render as ``any``.
* Only the first line of a multi-line property description is commented.
* A top-level ``oneOf`` gives broken TS (a variant description swallows ``) => any;``). We keep it:
  the model saw exactly this in training, and "fixing" it would change the prompt tokens.
* Non-enum string defaults are quoted without escaping; enum string defaults are unquoted; every
  other default is compact JSON as serde_json writes it (``1e20``, ``1.0``).
"""

from __future__ import annotations

import decimal
import json
import math
from typing import Any


def _get(schema: Any, key: str) -> Any:
    return schema.get(key) if isinstance(schema, dict) else None


def _is_enum(schema: Any) -> bool:
    values = _get(schema, "enum")
    return isinstance(values, list) and len(values) > 0


def serde_float(value: float) -> str:
    """A float as serde_json prints it (the ``ryu`` crate): ``1.0``, ``0.00001``, ``1e-7``, ``1e16``.

    The digits are the shortest round-trip ones (as Python's ``repr``); the layout is ryu's: plain
    decimal while the decimal point sits within (-5, 16] places of the first digit, else ``De±x``.
    """
    if not math.isfinite(value):
        return "null"  # serde_json writes non-finite floats as null
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0.0"
    dec = decimal.Decimal(repr(abs(value)))
    _, digit_tuple, exp = dec.as_tuple()
    assert isinstance(exp, int)
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exp += len(digit_tuple) - len(digits)
    length = len(digits)
    kk = length + exp  # the decimal point sits after `kk` digits
    if exp >= 0 and kk <= 16:
        text = digits + "0" * exp + ".0"
    elif 0 < kk <= 16:
        text = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        text = "0." + "0" * (-kk) + digits
    elif length == 1:
        text = f"{digits}e{kk - 1}"
    else:
        text = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return sign + text


_U64_MAX = 2**64 - 1
_POW10 = [float(f"1e{i}") for i in range(309)]


def _serde_number(text: str) -> int | float:
    """A JSON number's text as serde_json (without ``float_roundtrip``) reads it.

    Integers that fit i64/u64 stay exact. Otherwise it keeps the decimal digits that fit a u64
    (further integer digits raise the exponent, further fraction digits are dropped) and does one
    multiplication or division by a power of ten. That is not always the nearest double:
    ``4.667531552368925e-233`` reads back as ``4.6675315523689245e-233``, and the reference prints that.
    """
    negative = text.startswith("-")
    mantissa, _, exp_text = text.lstrip("-").lower().partition("e")
    whole, _, frac = mantissa.partition(".")
    if not exp_text and not frac and "." not in mantissa:
        value = int(text)
        if -(2**63) <= value <= _U64_MAX:
            return value
    significand = 0
    exponent = int(exp_text or "0")
    for i, ch in enumerate(whole):
        d = ord(ch) - 48
        if significand > (_U64_MAX - d) // 10:
            exponent += len(whole) - i
            break
        significand = significand * 10 + d
    else:
        for ch in frac:
            d = ord(ch) - 48
            if significand > (_U64_MAX - d) // 10:
                break
            significand = significand * 10 + d
            exponent -= 1
    return _f64_from_parts(significand, exponent, negative)


def _f64_from_parts(significand: int, exponent: int, negative: bool) -> float:
    f = float(significand)
    while True:
        if abs(exponent) < len(_POW10):
            f = f * _POW10[exponent] if exponent >= 0 else f / _POW10[-exponent]
            break
        if f == 0.0 or exponent >= 0:
            break
        f /= 1e308
        exponent += 308
    return -f if negative else f


def json_compact(value: Any) -> str:
    """Compact JSON in the given key order, as the reference prints it after a serde_json round trip."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        number = _serde_number(json.dumps(value))
        return str(number) if isinstance(number, int) else serde_float(number)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json_compact(str(k))}:{json_compact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(json_compact(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _default_text(schema: dict[str, Any], default: Any) -> str:
    if isinstance(default, str):
        return default if _is_enum(schema) else f'"{default}"'
    return json_compact(default)


def _with_nullable(schema: Any, type_str: str) -> str:
    if _get(schema, "nullable") is True and "null" not in type_str:
        return f"{type_str} | null"
    return type_str


def _variant_comments(variant: Any, skip_description: bool, property_desc: str | None) -> str:
    comments: list[str] = []
    desc = _get(variant, "description")
    if not skip_description and isinstance(desc, str) and desc != property_desc:
        comments.append(desc)
    if isinstance(variant, dict) and "default" in variant:
        comments.append("default: " + _default_text(variant, variant["default"]))
    return f" // {' '.join(comments)}" if comments else ""


def _top_one_of(variants: list[Any], indent: str) -> str:
    out = []
    for variant in variants:
        type_str = _with_nullable(variant, to_typescript(variant, indent + "   "))
        out.append(f"\n{indent} | {type_str}{_variant_comments(variant, False, None)}")
    return "".join(out)


def _one_of_property(key: str, val: dict[str, Any], variants: list[Any], opt: str, indent: str) -> str:
    out = []
    desc = val.get("description")
    property_desc = desc if isinstance(desc, str) else None
    first_desc = _get(variants[0], "description") if variants else None
    above = property_desc is not None and not (isinstance(first_desc, str) and first_desc == property_desc)
    if above:
        out.append(f"{indent}// {property_desc}\n")
    if "default" in val:
        out.append(f"{indent}// default: {_default_text(val, val['default'])}\n")
    out.append(f"{indent}{key}{opt}:\n")
    for i, variant in enumerate(variants):
        type_str = _with_nullable(variant, to_typescript(variant, indent + "   "))
        comments = _variant_comments(variant, i == 0 and above, property_desc)
        out.append(f"{indent} | {type_str}{comments}\n")
    out.append(f"{indent},\n")
    return "".join(out)


def _property(key: str, val: Any, required: set[str], indent: str) -> str:
    out = []
    title = _get(val, "title")
    if isinstance(title, str):
        out.append(f"{indent}// {title}\n{indent}//\n")
    has_one_of = isinstance(val, dict) and "oneOf" in val  # even `"oneOf": null` counts (serde `get`)
    one_of = _get(val, "oneOf")
    desc = _get(val, "description")
    if not has_one_of and isinstance(desc, str):
        out.append(f"{indent}// {desc}\n")
    examples = _get(val, "examples")
    if isinstance(examples, list) and examples:
        out.append(f"{indent}// Examples:\n")
        out.extend(f'{indent}// - "{ex}"\n' for ex in examples if isinstance(ex, str))
    opt = "" if key in required else "?"
    if isinstance(one_of, list):
        out.append(_one_of_property(key, val, one_of, opt, indent))
        return "".join(out)
    type_str = _with_nullable(val, to_typescript(val, indent + "    "))
    out.append(f"{indent}{key}{opt}: {type_str},")
    if not has_one_of and isinstance(val, dict) and "default" in val:
        out.append(f" // default: {_default_text(val, val['default'])}")
    out.append("\n")
    return "".join(out)


def _object(schema: dict[str, Any], indent: str) -> str:
    out = []
    desc = schema.get("description")
    if isinstance(desc, str):
        out.append(f"{indent}// {desc}\n")
    out.append("{\n")
    props = schema.get("properties")
    if isinstance(props, dict):
        req = schema.get("required")
        required = {r for r in req if isinstance(r, str)} if isinstance(req, list) else set()
        for key, val in props.items():
            out.append(_property(key, val, required, indent))
    out.append(f"{indent}}}")
    return "".join(out)


def to_typescript(schema: Any, indent: str = "") -> str:
    """Render one schema; ``indent`` is the current nesting indent (``""`` for the parameters)."""
    one_of = _get(schema, "oneOf")
    if isinstance(one_of, list):
        return _top_one_of(one_of, indent)
    ty = _get(schema, "type")
    if isinstance(ty, list):
        names = ["number" if t == "integer" else t for t in ty if isinstance(t, str)]
        if names:
            return " | ".join(names)
    if not isinstance(ty, str):
        return "any"
    if ty == "object":
        return _object(schema, indent)
    if ty == "string":
        values = schema.get("enum")
        if isinstance(values, list):
            members = [f'"{v}"' for v in values if isinstance(v, str)]
            if members:
                return " | ".join(members)
        return "string"
    if ty in ("number", "integer"):
        return "number"
    if ty == "boolean":
        return "boolean"
    if ty == "array":
        if "items" in schema:
            return to_typescript(schema["items"], indent) + "[]"
        return "Array<any>"
    return "any"
