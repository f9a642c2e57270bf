"""Read a chat-completions or responses request into one :class:`GenRequest`; bad input -> 400 with the param.

Chat messages and response items become transcript messages (:class:`~ossagent.agent.transcript.Msg`):
system/developer text becomes the developer instructions, assistant ``reasoning_content`` becomes an
``analysis`` message, ``tool_calls`` become ``functions.NAME`` calls on ``commentary``, and ``tool`` messages
their answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ossagent.agent.server.errors import bad_request
from ossagent.agent.transcript import Msg
from ossagent.tools.base import FunctionDescription

EFFORT_ALIASES = {"minimal": "low", "low": "low", "medium": "medium", "high": "high"}


@dataclass
class GenRequest:
    model: str
    messages: list[Msg]
    instructions: str | None = None
    functions: list[FunctionDescription] = field(default_factory=list)
    tool_choice: str | tuple[str, str] = "auto"  # "auto" | "none" | "required" | ("function", name)
    response_format: dict[str, Any] | None = None  # {"name", "schema", "description"}
    reasoning: str | None = None
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    previous_response_id: str | None = None
    truncation: str = "disabled"  # "auto": compact a conversation longer than the window (Responses API)
    extra: dict[str, Any] = field(default_factory=dict)


def _text(content: Any, param: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for i, part in enumerate(content):
            if not isinstance(part, dict):
                raise bad_request("content parts must be objects", f"{param}[{i}]")
            kind = part.get("type")
            if kind in ("text", "input_text", "output_text"):
                out.append(str(part.get("text", "")))
            else:
                raise bad_request(f"content part type {kind!r} is not supported (text only)", f"{param}[{i}].type")
        return "".join(out)
    raise bad_request("content must be a string or a list of text parts", param)


def _number(body: dict[str, Any], key: str, default: float, lo: float, hi: float, lo_open: bool = False) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_request(f"{key} must be a number", key)
    if value > hi or value < lo or (lo_open and value == lo):
        raise bad_request(f"{key} must be within {'(' if lo_open else '['}{lo}, {hi}], got {value}", key)
    return float(value)


def _int(body: dict[str, Any], key: str, minimum: int = 1) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise bad_request(f"{key} must be an integer >= {minimum}", key)
    return value


def _effort(value: Any, param: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in EFFORT_ALIASES:
        raise bad_request("reasoning effort must be one of low, medium, high", param)
    return EFFORT_ALIASES[value.lower()]


def _function(name: Any, desc: Any, params: Any, param: str) -> FunctionDescription:
    if not isinstance(name, str) or not name or not name.replace("_", "a").replace("-", "a").isalnum():
        raise bad_request("function name must be a non-empty string of letters, digits, _ and -", f"{param}.name")
    if params is not None and not isinstance(params, dict):
        raise bad_request("parameters must be a JSON Schema object", f"{param}.parameters")
    return FunctionDescription(name, str(desc or ""), params)


def _tool_choice(value: Any, names: list[str], flat: bool) -> str | tuple[str, str]:
    if value is None:
        return "auto"
    if isinstance(value, str):
        if value not in ("auto", "none", "required"):
            raise bad_request("tool_choice must be auto, none, required or a function", "tool_choice")
        if value == "required" and not names:
            raise bad_request("tool_choice is required but no tools were given", "tool_choice")
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        name = value.get("name") if flat else (value.get("function") or {}).get("name")
        if name not in names:
            raise bad_request(f"tool_choice names {name!r}, which is not among the tools", "tool_choice")
        return ("function", str(name))
    raise bad_request("tool_choice must be auto, none, required or a function", "tool_choice")


def _json_schema_format(fmt: Any, param: str) -> dict[str, Any] | None:
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise bad_request("response format must be an object", param)
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"name": "json_object", "schema": {"type": "object"}, "description": None}
    if kind == "json_schema":
        spec = fmt.get("json_schema", fmt)  # chat nests it; responses has it flat
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise bad_request("json_schema.schema must be a JSON Schema object", f"{param}.json_schema.schema")
        return {"name": spec.get("name") or "response", "schema": schema, "description": spec.get("description")}
    raise bad_request(f"response format type {kind!r} is not supported", f"{param}.type")


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise bad_request("stop must be a non-empty string or a list of up to 4 of them", "stop")
    return tuple(stops)


def _common(body: dict[str, Any]) -> dict[str, Any]:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("you must provide a model parameter", "model")
    return {
        "model": model,
        "temperature": _number(body, "temperature", 1.0, 0.0, 2.0),
        "top_p": _number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True),
        "seed": _int(body, "seed", minimum=-(2**63)),
        "stream": bool(body.get("stream") or False),
    }


def parse_chat(body: dict[str, Any]) -> GenRequest:
    common = _common(body)
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise bad_request("messages must be a non-empty array", "messages")
    if body.get("n") not in (None, 1):
        raise bad_request("only n=1 is supported", "n")
    names: list[str] = []
    functions = []
    for i, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            raise bad_request("only tools of type 'function' are supported", f"tools[{i}]")
        fn = tool["function"]
        functions.append(_function(fn.get("name"), fn.get("description"), fn.get("parameters"), f"tools[{i}].function"))
        names.append(functions[-1].name)
    instructions: list[str] = []
    msgs: list[Msg] = []
    call_names: dict[str, str] = {}
    for i, m in enumerate(raw):
        p = f"messages[{i}]"
        if not isinstance(m, dict):
            raise bad_request("each message must be an object", p)
        role = m.get("role")
        if role in ("system", "developer"):
            instructions.append(_text(m.get("content"), f"{p}.content"))
        elif role == "user":
            msgs.append(Msg("user", _text(m.get("content"), f"{p}.content")))
        elif role == "assistant":
            reasoning = m.get("reasoning_content") or m.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                msgs.append(Msg("assistant", reasoning, channel="analysis"))
            calls = m.get("tool_calls") or []
            text = _text(m.get("content"), f"{p}.content")
            if text:
                msgs.append(Msg("assistant", text, channel="commentary" if calls else "final"))
            for j, c in enumerate(calls):
                fn = c.get("function") if isinstance(c, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise bad_request("tool_calls need function.name and function.arguments", f"{p}.tool_calls[{j}]")
                call_id = str(c.get("id") or f"call_{i}_{j}")
                call_names[call_id] = fn["name"]
                msgs.append(Msg("assistant", str(fn.get("arguments") or "{}"), recipient=f"functions.{fn['name']}",
                                channel="commentary", content_type="<|constrain|>json", meta={"call_id": call_id}))
        elif role == "tool":
            tool_call_id = m.get("tool_call_id")
            name = call_names.get(str(tool_call_id)) or m.get("name")
            if not name:
                raise bad_request(f"tool message answers unknown tool_call_id {tool_call_id!r}", f"{p}.tool_call_id")
            msgs.append(Msg("tool", _text(m.get("content"), f"{p}.content"), name=f"functions.{name}",
                            recipient="assistant", channel="commentary", meta={"call_id": tool_call_id}))
        else:
            raise bad_request(f"unknown role {role!r}", f"{p}.role")
    if not msgs:
        raise bad_request("messages must contain at least one user message", "messages")
    max_tokens = _int(body, "max_completion_tokens") or _int(body, "max_tokens")
    opts = body.get("stream_options") or {}
    return GenRequest(
        messages=msgs, instructions="\n\n".join(instructions) if instructions else None, functions=functions,
        tool_choice=_tool_choice(body.get("tool_choice"), names, flat=False),
        response_format=_json_schema_format(body.get("response_format"), "response_format"),
        reasoning=_effort(body.get("reasoning_effort") or (body.get("reasoning") or {}).get("effort"),
                          "reasoning_effort"),
        max_tokens=max_tokens, stop=_stop(body.get("stop")),
        include_usage=bool(isinstance(opts, dict) and opts.get("include_usage")), **common,
    )


def _input_items(value: Any, known_calls: dict[str, str]) -> tuple[list[Msg], list[str]]:
    if isinstance(value, str):
        return [Msg("user", value)], []
    if not isinstance(value, list) or not value:
        raise bad_request("input must be a string or a non-empty array of items", "input")
    msgs: list[Msg] = []
    instructions: list[str] = []
    names = dict(known_calls)
    for i, item in enumerate(value):
        p = f"input[{i}]"
        if not isinstance(item, dict):
            raise bad_request("each input item must be an object", p)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            text = _text(item.get("content"), f"{p}.content")
            if role in ("system", "developer"):
                instructions.append(text)
            elif role in ("user", "assistant"):
                msgs.append(Msg(role, text, channel="final" if role == "assistant" else None))
            else:
                raise bad_request(f"unknown role {role!r}", f"{p}.role")
        elif kind == "reasoning":
            parts = item.get("content") or []
            text = "".join(str(c.get("text", "")) for c in parts if isinstance(c, dict))
            if text:
                msgs.append(Msg("assistant", text, channel="analysis"))
        elif kind == "function_call":
            name, call_id = item.get("name"), str(item.get("call_id") or f"call_{i}")
            if not isinstance(name, str):
                raise bad_request("function_call items need a name", f"{p}.name")
            names[call_id] = name
            msgs.append(Msg("assistant", str(item.get("arguments") or "{}"), recipient=f"functions.{name}",
                            channel="commentary", content_type="<|constrain|>json", meta={"call_id": call_id}))
        elif kind == "function_call_output":
            call_id = str(item.get("call_id"))
            if call_id not in names:
                raise bad_request(f"function_call_output answers unknown call_id {call_id!r}", f"{p}.call_id")
            output = item.get("output")
            msgs.append(Msg("tool", output if isinstance(output, str) else json.dumps(output),
                            name=f"functions.{names[call_id]}", recipient="assistant", channel="commentary",
                            meta={"call_id": call_id}))
        else:
            raise bad_request(f"input item type {kind!r} is not supported", f"{p}.type")
    return msgs, instructions


def parse_responses(body: dict[str, Any], known_calls: dict[str, str] | None = None) -> GenRequest:
    """known_calls: call_id -> function name of calls made in the ``previous_response_id`` conversation."""
    common = _common(body)
    msgs, instructions = _input_items(body.get("input"), known_calls or {})
    if isinstance(body.get("instructions"), str):
        instructions.insert(0, body["instructions"])
    functions = []
    for i, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise bad_request("only tools of type 'function' are supported", f"tools[{i}]")
        functions.append(_function(tool.get("name"), tool.get("description"), tool.get("parameters"), f"tools[{i}]"))
    text = body.get("text") or {}
    reasoning = body.get("reasoning") or {}
    return GenRequest(
        messages=msgs, instructions="\n\n".join(instructions) if instructions else None, functions=functions,
        tool_choice=_tool_choice(body.get("tool_choice"), [f.name for f in functions], flat=True),
        response_format=_json_schema_format(text.get("format") if isinstance(text, dict) else None, "text.format"),
        reasoning=_effort(reasoning.get("effort") if isinstance(reasoning, dict) else None, "reasoning.effort"),
        max_tokens=_int(body, "max_output_tokens"), previous_response_id=body.get("previous_response_id"),
        truncation=_truncation(body.get("truncation")), **common,
    )


def _truncation(value: Any) -> str:
    if value is None:
        return "disabled"
    if value not in ("auto", "disabled"):
        raise bad_request("truncation must be 'auto' or 'disabled'", "truncation")
    return str(value)
