"""Read a Responses API request (``POST /v1/responses``) into one :class:`GenRequest`; bad input -> 400.

The body is the pydantic model :class:`ResponsesRequest` (the shared field types and error mapping are in
agent/server/requests.py). Input items become transcript messages: ``message`` items by role (system and
developer text as instructions), ``reasoning`` as ``analysis``, ``function_call`` / ``function_call_output``
as ``functions.NAME`` calls and their answers, and a ``code_interpreter_call`` this server ran as the python
call with its logs. MCP tools and approvals are read apart (agent/server/mcp.py).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

from ossagent.agent.server.errors import bad_request
from ossagent.agent.server.requests import (
    Arguments,
    Count,
    FunctionName,
    GenRequest,
    SchemaObject,
    _answer,
    _call,
    _Common,
    _instructions,
    _invalid,
    _Item,
    _text,
    _validate,
    effort,
    response_format,
    tool_choice,
)
from ossagent.agent.transcript import Msg
from ossagent.tools.base import FunctionDescription


class ResponsesTool(_Item):
    not_an_object: ClassVar[str] = "only tools of type 'function' are supported"
    type: str
    name: FunctionName
    description: Any = None
    parameters: SchemaObject = None

    @classmethod
    def _shape(cls, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("type") != "function":
            raise _invalid(cls.not_an_object)
        return data


class InputItem(_Item):
    not_an_object: ClassVar[str] = "each input item must be an object"
    type: str = "message"
    role: Any = None
    content: Any = None
    name: Any = None
    call_id: Any = None
    arguments: Arguments = None
    output: Any = None
    id: Any = None
    code: Any = None  # code_interpreter_call
    outputs: Any = None  # code_interpreter_call

    @classmethod
    def _shape(cls, data: dict[str, Any]) -> dict[str, Any]:
        kind = data.get("type", "message")
        if kind not in ("message", "reasoning", "function_call", "function_call_output", "code_interpreter_call",
                        "web_search_call"):
            raise _invalid(f"input item type {kind!r} is not supported", ".type")
        if kind == "message":
            text = _text_at(data.get("content"), ".content")
            if data.get("role") not in ("system", "developer", "user", "assistant"):
                raise _invalid(f"unknown role {data.get('role')!r}", ".role")
            return {**data, "content": text}
        if kind == "function_call" and not isinstance(data.get("name"), str):
            raise _invalid("function_call items need a name", ".name")
        return data


def _python_call(item: InputItem) -> list[Msg]:
    """A ``code_interpreter_call`` item sent back as input: the python call and its answer (none unanswered)."""
    logs = [o.get("logs") for o in item.outputs or [] if isinstance(o, dict) and o.get("type") == "logs"]
    if not isinstance(item.code, str) or not logs:
        return []
    meta = {"call_id": str(item.id)}
    return [Msg("assistant", item.code, recipient="python", channel="analysis", meta=meta),
            Msg("tool", "".join(str(x) for x in logs), name="python", recipient="assistant", channel="analysis",
                meta=dict(meta))]


def _text_at(content: Any, suffix: str) -> str:
    try:
        return _text(content)
    except PydanticCustomError as exc:
        ctx = exc.context or {}
        raise _invalid(str(ctx["message"]), suffix + str(ctx.get("suffix", ""))) from None


def _input(value: Any) -> Any:
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise _invalid("input must be a string or a non-empty array of items")
    return value


class ResponsesRequest(_Common):
    input: Annotated[list[InputItem], BeforeValidator(_input)] = Field(None, validate_default=True)
    instructions: Any = None
    tools: Annotated[list[ResponsesTool], BeforeValidator(lambda v: v or [])] = Field(default_factory=list)
    text: Any = None
    max_output_tokens: Count = None
    previous_response_id: Any = None
    truncation: Any = None  # "auto" | "disabled" (see _truncation)

    def conversation(self, known_calls: dict[str, str]) -> tuple[list[Msg], list[str]]:
        msgs: list[Msg] = []
        instructions: list[str] = []
        names = dict(known_calls)
        for i, item in enumerate(self.input):
            if item.type == "message":
                if item.role in ("system", "developer"):
                    instructions.append(item.content)
                else:
                    msgs.append(Msg(item.role, item.content, channel="final" if item.role == "assistant" else None))
            elif item.type == "reasoning":
                text = "".join(str(c.get("text", "")) for c in item.content or [] if isinstance(c, dict))
                if text:
                    msgs.append(Msg("assistant", text, channel="analysis"))
            elif item.type == "code_interpreter_call":  # a python call this server ran: the call and its logs
                msgs += _python_call(item)
            elif item.type == "web_search_call":  # the pages it read are not in the item: nothing to restore
                continue
            elif item.type == "function_call":
                call_id = str(item.call_id or f"call_{i}")
                names[call_id] = item.name
                msgs.append(_call(item.name, item.arguments, call_id))
            else:
                call_id = str(item.call_id)
                if call_id not in names:
                    raise bad_request(f"function_call_output answers unknown call_id {call_id!r}", f"input[{i}].call_id")
                output = item.output if isinstance(item.output, str) else json.dumps(item.output)
                msgs.append(_answer(output, names[call_id], call_id))
        return msgs, instructions


def parse_responses(body: dict[str, Any], known_calls: dict[str, str] | None = None) -> GenRequest:
    """known_calls: call_id -> function name of calls made in the ``previous_response_id`` conversation."""
    from ossagent.agent.server.mcp import MCPRequest, split_body

    mcp = MCPRequest()
    body, only_decisions = split_body(body, mcp)
    req: ResponsesRequest = _validate(ResponsesRequest, body)
    msgs, instructions = ([], []) if only_decisions else req.conversation(known_calls or {})
    if isinstance(req.instructions, str):
        instructions.insert(0, req.instructions)
    functions = [FunctionDescription(t.name, str(t.description or ""), t.parameters) for t in req.tools]
    text = req.text if isinstance(req.text, dict) else {}
    reasoning = req.reasoning if isinstance(req.reasoning, dict) else {}
    return GenRequest(
        model=req.model, messages=msgs, instructions=_instructions(instructions), functions=functions,
        tool_choice=tool_choice(req.tool_choice, [f.name for f in functions], flat=True),
        response_format=response_format(text.get("format"), "text.format"),
        reasoning=effort(reasoning.get("effort"), "reasoning.effort"),
        max_tokens=req.max_output_tokens, previous_response_id=req.previous_response_id,
        temperature=req.temperature, top_p=req.top_p, seed=req.seed, stream=req.stream, extra={"mcp": mcp},
        truncation=_truncation(req.truncation),
    )


def _truncation(value: Any) -> str:
    if value is None:
        return "disabled"
    if value not in ("auto", "disabled"):
        raise bad_request("truncation must be 'auto' or 'disabled'", "truncation")
    return str(value)
