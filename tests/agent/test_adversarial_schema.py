"""Adversarial schemas (issue 25): what a ``serve`` client or a caller can put in a function or response schema.

Patterns run on RE2, in linear time; no reference is ever retrieved from the network or disk; size is bounded
before anything recurses.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from ossagent.agent.schema import compile_schema, validation_errors
from ossagent.agent.schema_guard import REGISTRY, safe_validator_class
from ossagent.tools.base import UserError


@pytest.fixture()
def loopback() -> Iterator[tuple[str, list[str]]]:
    """A schema server on loopback that records every request reaching it."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/schema+json")
            self.end_headers()
            self.wfile.write(b'{"type": "integer"}')

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}/s.json", hits
    srv.shutdown()
    srv.server_close()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("pattern", [r"^(a+)+$", r"^(a|a)*b$", r"^(\w+\s?)*$"])
def test_catastrophic_pattern_is_validated_in_linear_time(pattern: str) -> None:
    compiled = compile_schema({"type": "object", "properties": {"s": {"type": "string", "pattern": pattern}},
                               "patternProperties": {pattern: {"type": "string"}}}, where="f", close=False)
    trap = "a" * 50_000 + "!"  # Python's re would backtrack for hours on each; the timeout mark fails the test
    assert validation_errors(compiled, {"s": trap, trap: "x"}) == [f"at $.s: {trap!r} does not match {pattern!r}"]


def test_additional_properties_next_to_pattern_properties_use_re2() -> None:
    compiled = compile_schema({"type": "object", "patternProperties": {"^(x+x+)+y$": {}},
                               "additionalProperties": False}, where="f", close=False)
    assert validation_errors(compiled, {"xxy": 1}) == []
    assert validation_errors(compiled, {"x" * 40_000: 1})[0].endswith("does not match any of the regexes: '^(x+x+)+y$'")


@pytest.mark.parametrize("schema", [
    {"type": "string", "pattern": r"(a)\1"},
    {"type": "string", "pattern": r"(?=a)a"},
    {"type": "object", "patternProperties": {r"(?<=a)b": {}}},
    {"type": "object", "patternProperties": {"^a": {}}, "unevaluatedProperties": False},
])
def test_patterns_re2_cannot_run_are_refused_at_compile_time(schema: dict[str, object]) -> None:
    with pytest.raises(UserError, match="not supported"):
        compile_schema(schema, where="f", lenient=True, close=False)


@pytest.mark.parametrize("key", ["$ref", "$dynamicRef"])
def test_references_are_never_retrieved(loopback: tuple[str, list[str]], tmp_path: Path, key: str) -> None:
    url, hits = loopback
    local = tmp_path / "s.json"
    local.write_text('{"type": "integer"}')
    for target in (url, local.as_uri(), str(local)):
        for schema in ({key: target}, {"type": "object", "properties": {"a": {key: target}}},
                       {"$id": url.rsplit("/", 1)[0] + "/", "type": "object", "properties": {"a": {key: "s.json"}}}):
            with pytest.raises(UserError, match="never fetched"):
                compile_schema(schema, where="f", lenient=True)
    # The validator itself retrieves nothing either, whatever the compile-time check let through.
    validator = safe_validator_class(jsonschema.Draft202012Validator)({key: url}, registry=REGISTRY)
    with pytest.raises(Exception, match=r"Unresolvable|not present|retriev"):
        list(validator.iter_errors("x"))
    assert hits == []


def test_local_references_still_work() -> None:
    schema = {"$defs": {"n": {"type": "integer"}}, "type": "object",
              "properties": {"a": {"$ref": "#/$defs/n"}}, "required": ["a"]}
    compiled = compile_schema(schema, where="f")
    assert validation_errors(compiled, {"a": 1}) == []
    assert validation_errors(compiled, {"a": "x"}) == ["at $.a: 'x' is not of type 'integer'"]


def test_deep_and_huge_schemas_are_refused_before_recursing() -> None:
    deep: dict[str, object] = {"type": "string"}
    for _ in range(300):
        deep = {"type": "object", "properties": {"a": deep}}
    with pytest.raises(UserError, match="too large"):
        compile_schema(deep, where="f")
    wide = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(30_000)}}
    with pytest.raises(UserError, match="too large"):
        compile_schema(wide, where="f")
