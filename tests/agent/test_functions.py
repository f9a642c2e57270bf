"""Declaring function tools and response formats: schemas from JSON Schema, callables and pydantic models,
errors at declaration, validation after decoding, and the model-visible texts (golden files)."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import jsonschema
import pydantic
import pytest

from ossagent.agent.functions import Functions, FunctionTool, ResponseFormat, parse_docstring
from ossagent.agent.schema import DATE_PATTERN, SchemaError, UnsupportedSchemaError, close_objects
from ossagent.tools.base import ModelError, ToolDescription, UserError

GOLDEN = Path(__file__).parent / "golden_functions"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if not path.exists():  # first run writes it; review the diff like any other change
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; delete it to regenerate and review"


def book_table(
    restaurant: str,
    party_size: Annotated[int, pydantic.Field(ge=1, le=12)],
    date: datetime.date,
    seating: Literal["indoor", "outdoor"] = "indoor",
    notes: str | None = None,
) -> dict[str, Any]:
    """Book a table at a restaurant.

    Args:
        restaurant: Name of the restaurant.
        party_size: How many people
            are coming.
        date: The day of the booking.
        seating: Where to sit.
    """
    return {"restaurant": restaurant, "party_size": party_size, "date": date.isoformat(), "seating": seating}


class Address(pydantic.BaseModel):
    street: str
    postcode: str = pydantic.Field(pattern=r"^[0-9]{5}$")


class Customer(pydantic.BaseModel):
    """Create a customer record."""

    name: str = pydantic.Field(description="Full name", max_length=80)
    address: Address | None = None
    tags: list[str] = []


def test_from_callable_schema_and_description() -> None:
    tool = FunctionTool.from_callable(book_table)
    assert tool.description == "Book a table at a restaurant."
    _golden("book_table.schema.json", json.dumps(tool.parameters, indent=2) + "\n")
    props = tool.parameters["properties"]
    assert props["party_size"]["description"] == "How many people are coming."
    assert props["date"]["format"] == "date"
    assert tool.parameters["required"] == ["restaurant", "party_size", "date"]
    assert tool.parameters["additionalProperties"] is False


def test_from_callable_runs_with_validated_typed_arguments() -> None:
    fns = Functions([book_table])
    result = fns.call("functions.book_table", '{"restaurant":"Chez Paul","party_size":4,"date":"2026-12-24"}')
    assert json.loads(result.text) == {"restaurant": "Chez Paul", "party_size": 4, "date": "2026-12-24",
                                       "seating": "indoor"}
    assert result.recipient == "functions.book_table"
    with pytest.raises(ModelError, match="party_size"):
        fns.call("functions.book_table", '{"restaurant":"x","party_size":40,"date":"2026-12-24"}')


def test_from_model_typed_call_with_inlined_references() -> None:
    tool = FunctionTool.from_model(Customer)
    assert tool.name == "Customer" and tool.description == "Create a customer record."
    assert "$defs" not in tool.parameters and "$ref" not in json.dumps(tool.parameters)
    _golden("customer.schema.json", json.dumps(tool.parameters, indent=2) + "\n")
    call = Functions([tool]).parse_call("functions.Customer",
                                        '{"name":"Ada","address":{"street":"1 Main","postcode":"12345"}}')
    assert isinstance(call.typed, Customer) and call.typed.address == Address(street="1 Main", postcode="12345")


class Node(pydantic.BaseModel):
    value: int
    children: list[Node] = []


def test_recursive_model_keeps_its_definitions() -> None:
    tool = FunctionTool.from_model(Node, name="tree")
    assert "$defs" in tool.parameters
    call = Functions([tool]).parse_call("tree", '{"value":1,"children":[{"value":2}]}')
    assert call.typed.children[0].value == 2


def test_from_schema_without_parameters_takes_an_empty_object() -> None:
    tool = FunctionTool.from_schema("current_time", None, "What time is it?")
    assert Functions([tool]).parse_call("functions.current_time", "{}").arguments == {}
    with pytest.raises(ModelError):
        Functions([tool]).parse_call("functions.current_time", '{"tz":"UTC"}')


def test_description_is_the_functions_namespace() -> None:
    desc = Functions([book_table, Customer]).description()
    assert isinstance(desc, ToolDescription) and desc.name == "functions"
    assert [f.name for f in desc.functions] == ["book_table", "Customer"]


@pytest.mark.parametrize("name", ["", "get weather", "functions.x", "1abc", "a" * 65, "naïve", None])
def test_bad_names_fail_at_declaration(name: Any) -> None:
    with pytest.raises(UserError, match="not allowed"):
        FunctionTool.from_schema(name, {"type": "object"})


def test_declaration_errors_are_clear() -> None:
    with pytest.raises(UserError, match="declared twice"):
        Functions([book_table, book_table])
    with pytest.raises(UserError, match="no type hint"):
        FunctionTool.from_callable(lambda x: x, name="f")
    with pytest.raises(UserError, match=r"\*args"):
        FunctionTool.from_callable(lambda *args: None, name="f")
    with pytest.raises(UserError, match='"type": "object"'):
        FunctionTool.from_schema("f", {"type": "string"})
    with pytest.raises(SchemaError, match="not a valid JSON Schema at properties/a/type"):
        FunctionTool.from_schema("f", {"type": "object", "properties": {"a": {"type": "strng"}}})
    with pytest.raises(SchemaError, match="not JSON-serialisable"):
        FunctionTool.from_schema("f", {"type": "object", "default": float("nan")})


def test_unsupported_features_are_reported_not_ignored() -> None:
    schema = {"type": "object", "properties": {"site": {"type": "string", "format": "url"}}}
    with pytest.raises(UnsupportedSchemaError, match=r"Unknown format: url.*lenient=True"):
        FunctionTool.from_schema("visit", schema)
    tool = FunctionTool.from_schema("visit", schema, lenient=True)
    assert any("'url' is not enforced" in n for n in tool.notes)  # no validator knows "url" either
    email = {"type": "object", "properties": {"to": {"type": "string", "format": "idn-email"}}}
    notes = FunctionTool.from_schema("mail", email, lenient=True).notes
    assert any("validated afterwards" in n and "idn-email" in n for n in notes)
    deps = {"type": "object", "properties": {"a": {"type": "string"}}, "dependencies": {"a": ["b"]}}
    with pytest.raises(UnsupportedSchemaError, match="dependencies"):
        FunctionTool.from_schema("dep", deps)


def test_one_of_is_decoded_as_any_of_and_recorded() -> None:
    schema = {"type": "object", "properties": {"v": {"oneOf": [{"type": "integer"}, {"type": "number"}]}}}
    tool = FunctionTool.from_schema("pick", schema)
    assert tool.notes == ("oneOf is decoded as anyOf; validation after decoding enforces exactly one branch",)
    fns = Functions([tool])
    assert fns.parse_call("pick", '{"v":1.5}').arguments == {"v": 1.5}
    with pytest.raises(ModelError, match="valid under each of"):
        fns.parse_call("pick", '{"v":2}')  # an integer is also a number: both branches match


def test_model_errors_tell_the_model_what_to_fix() -> None:
    fns = Functions([book_table])
    texts = []
    for recipient, body in [
        ("functions.book_tabel", "{}"),
        ("functions.book_table", "{'restaurant': 'x'}"),
        ("functions.book_table", "[1, 2]"),
        ("functions.book_table", '{"restaurant":"x","party_size":0,"date":"2026-02-30","extra":true}'),
        ("functions.book_table", '{"restaurant":"x","party_size":2,"date":"2026-01-01","seating":NaN}'),
    ]:
        with pytest.raises(ModelError) as info:
            fns.parse_call(recipient, body)
        texts.append(f"{recipient} {body}\n{info.value.for_model()}\n")
    _golden("model_errors.txt", "\n".join(texts))


def test_response_format_gives_a_typed_object() -> None:
    rf = ResponseFormat.from_model(Customer, name="customer")
    assert rf.description == "Create a customer record."
    value = rf.parse('{"name":"Ada","tags":["vip"]}')
    assert isinstance(value, Customer) and value.tags == ["vip"]
    with pytest.raises(ModelError, match="does not match the customer format"):
        rf.parse('{"tags":["vip"]}')
    plain = ResponseFormat.from_schema("answer", {"type": "object", "properties": {"n": {"type": "integer"}}})
    assert plain.parse('{"n":3}') == {"n": 3}
    with pytest.raises(ModelError, match="not valid JSON"):
        plain.parse("n = 3")


def test_decoding_closes_objects_but_validation_keeps_the_declared_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "string"}}}},
              "allOf": [{"properties": {"c": {"type": "integer"}}}]}
    closed = close_objects(schema)
    assert "additionalProperties" not in closed  # combined with allOf: left open
    assert closed["properties"]["a"]["additionalProperties"] is False
    tool = FunctionTool.from_schema("f", {"type": "object", "properties": {"a": {"type": "string"}}})
    assert tool.compiled.decode_schema["additionalProperties"] is False
    assert Functions([tool]).parse_call("f", '{"a":"x","b":1}').arguments == {"a": "x", "b": 1}


def test_date_pattern_equals_python_dates() -> None:
    """The decoding pattern for format: date accepts exactly what the validator accepts."""
    pattern = re.compile(DATE_PATTERN)
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    years = [*range(1, 30), 100, 400, 1600, 1700, 1900, *range(1995, 2035), 2100, 2400, 9999]
    for year in years:
        for month in range(0, 14):
            for day in range(0, 33):
                text = f"{year:04d}-{month:02d}-{day:02d}"
                assert bool(pattern.match(text)) == checker.conforms(text, "date"), text
    assert not pattern.match("0000-01-01") and not pattern.match("2026-1-01")


def test_docstring_styles() -> None:
    summary, params = parse_docstring(
        """Do a thing.

        More about it.

        :param x: the x value
            continued.
        :param int y: the y value
        :returns: nothing
        """
    )
    assert summary == "Do a thing.\n\nMore about it."
    assert params == {"x": "the x value continued.", "y": "the y value"}
    assert parse_docstring(None) == ("", {})


def test_functions_is_a_tool() -> None:
    from ossagent.tools.base import Tool

    fns = Functions([book_table])
    assert isinstance(fns, Tool) and fns.name == "functions"
    with pytest.raises(UserError, match="no implementation"):
        Functions([FunctionTool.from_schema("remote", None)]).call("functions.remote", "{}")
