"""Arguments of namespace tools (``page.*``, ``browser.*``, an MCP server's tools) are decoded under their
parameter schemas, like function calls: every call a random sampler writes under the hook parses and
validates, and without ``builtin_schemas`` the same sampler writes bodies that do not."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from ossagent.agent.constrain import TurnConstraints
from ossagent.agent.functions import Functions
from ossagent.agent.grammar_hooks import namespace_schemas
from ossagent.agent.harmony.builtin import browser_namespace
from ossagent.agent.harmony.tokens import CALL
from ossagent.agent.prompt import PromptConfig
from ossagent.tools.base import FunctionDescription, ToolDescription
from ossagent.tools.browser.action_tool import DESCRIPTION, FUNCTIONS

VOCAB = 201_088
N = 40
# the input schema the mcp SDK's MCPServer derives for tests/agent/mcp/server.py's plan_trip
PLAN_TRIP = {
    "type": "object",
    "$defs": {
        "Stop": {"properties": {"city": {"type": "string"}, "nights": {"maximum": 30, "minimum": 1, "type": "integer"}},
                 "required": ["city", "nights"], "type": "object"},
        "Traveller": {"properties": {"name": {"type": "string"},
                                     "age": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}},
                      "required": ["name"], "type": "object"},
    },
    "properties": {"stops": {"items": {"$ref": "#/$defs/Stop"}, "type": "array"},
                   "travellers": {"items": {"$ref": "#/$defs/Traveller"}, "type": "array"},
                   "budget": {"anyOf": [{"type": "number"}, {"type": "null"}], "default": None}},
    "required": ["stops", "travellers"],
}
CONFIG = PromptConfig(builtin_tools=(
    browser_namespace(), ToolDescription("page", DESCRIPTION, FUNCTIONS),
    ToolDescription("trips", "Tools of the MCP server `trips`.", (FunctionDescription("plan_trip", "Plans.", PLAN_TRIP),)),
))
SCHEMAS = namespace_schemas(CONFIG)
RECIPIENTS = sorted(SCHEMAS)


@pytest.fixture(scope="module")
def constraints(enc: Any) -> TurnConstraints:
    return TurnConstraints(Functions([]), encoding=enc, vocab_size=VOCAB, tool_choice="required",
                           builtin_recipients=RECIPIENTS, builtin_schemas=SCHEMAS, free_text_limit=6)


def test_namespace_schemas_cover_every_function() -> None:
    assert "page.click" in SCHEMAS and "browser.search" in SCHEMAS and "trips.plan_trip" in SCHEMAS
    assert len(SCHEMAS) == len(FUNCTIONS) + 3 + 1


def test_namespace_calls_always_validate(constraints: TurnConstraints, sampler: Any, run_hook: Any,
                                         parse_turn: Any) -> None:
    seen = set()
    for i in range(N):
        prefill: list[int] = []
        if i % 2:  # half start from a header naming the function, so every schema is exercised
            target = RECIPIENTS[(i // 2) % len(RECIPIENTS)]
            prefill = constraints.encoding.encode(f"<|channel|>commentary to={target} <|constrain|>json<|message|>",
                                                  allowed_special="all")
        out = run_hook(constraints.hook(prefill), sampler(i), max_tokens=800)
        assert out[-1] == CALL, (i, constraints.encoding.decode(out[-60:]))
        last = parse_turn(prefill + out)[-1]
        args = json.loads(last.content[0].text)
        jsonschema.validate(args, SCHEMAS[last.recipient])
        seen.add(last.recipient)
    assert {"trips.plan_trip", "page.click", "page.type"} <= seen


def test_without_schemas_the_same_sampler_writes_invalid_bodies(enc: Any, sampler: Any, run_hook: Any,
                                                                 parse_turn: Any) -> None:
    free = TurnConstraints(Functions([]), encoding=enc, vocab_size=VOCAB, tool_choice="required",
                           builtin_recipients=RECIPIENTS, free_text_limit=6)
    bad = 0
    for i in range(10):
        prefill = enc.encode("<|channel|>commentary to=page.click <|constrain|>json<|message|>", allowed_special="all")
        out = run_hook(free.hook(prefill), sampler(i), max_tokens=200)
        try:
            jsonschema.validate(json.loads(parse_turn(prefill + out)[-1].content[0].text), SCHEMAS["page.click"])
        except (ValueError, jsonschema.ValidationError, IndexError):
            bad += 1
    assert bad >= 8
