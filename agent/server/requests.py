"""Read a chat-completions request into one :class:`GenRequest`; bad input -> 400 with the param. The field
types, the error mapping and the readers shared with the other endpoints (effort, response format, tool choice)
live here too: the Responses request is read in agent/server/responses_request.py, the raw-prompt one in
agent/server/completions.py.

The bodies are pydantic models of the OpenAI shapes (:class:`ChatCompletionRequest`); what is wrong with one
becomes an OpenAI-shaped 400 whose ``param`` is the path of the bad field (``messages[0].role``). Chat messages
become transcript messages (:class:`~ossagent.agent.transcript.Msg`): system/developer text becomes the developer
instructions, assistant ``reasoning_content`` becomes an ``analysis`` message, ``tool_calls`` become
``functions.NAME`` calls on ``commentary``, and ``tool`` messages their answers. This is the server's edge: the
effort alias ``minimal`` and the OpenAI tool-choice forms are read here into :class:`ReasoningEffort` and
:class:`ToolChoice`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ossagent.agent.choices import ReasoningEffort, ToolChoice
from ossagent.agent.server.errors import APIError, bad_request
from ossagent.agent.transcript import Msg
from ossagent.tools.base import FunctionDescription

EFFORT_ALIASES = {"minimal": "low", "low": "low", "medium": "medium", "high": "high"}
TEXT_PARTS = ("text", "input_text", "output_text")


@dataclass
class GenRequest:
    model: str
    messages: list[Msg]
    instructions: str | None = None
    functions: list[FunctionDescription] = field(default_factory=list)
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    response_format: dict[str, Any] | None = None  # {"name", "schema", "description"}
    reasoning: ReasoningEffort | None = None
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


# ------------------------------------------------------------------------------ errors
def _invalid(message: str, suffix: str = "", param: str | None = None) -> PydanticCustomError:
    """A validation error with the request's own message; the param is the field's path + ``suffix``, or
    ``param`` when given."""
    ctx: dict[str, Any] = {"message": message, "suffix": suffix}
    if param is not None:
        ctx["param"] = param
    return PydanticCustomError("invalid_request", "{message}", ctx)


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def api_error(exc: ValidationError) -> APIError:
    """The first problem of a body, as the 400 an OpenAI client expects."""
    err = exc.errors()[0]
    ctx = err.get("ctx") or {}
    if err["type"] == "invalid_request":
        return bad_request(str(ctx["message"]), ctx.get("param") or (_path(err["loc"]) + ctx.get("suffix", "")))
    param = _path(err["loc"])  # a shape pydantic itself refused (e.g. an object where a list belongs)
    return bad_request(f"{param}: {err['msg']}" if param else err["msg"], param or None)


# ------------------------------------------------------------------------------ field types
def _number(lo: float, hi: float, lo_open: bool = False) -> BeforeValidator:
    def check(value: Any, info: ValidationInfo) -> Any:
        key = info.field_name
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _invalid(f"{key} must be a number")
        if value > hi or value < lo or (lo_open and value == lo):
            raise _invalid(f"{key} must be within {'(' if lo_open else '['}{lo}, {hi}], got {value}")
        return float(value)

    return BeforeValidator(check)


def _integer(minimum: int) -> BeforeValidator:
    def check(value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _invalid(f"{info.field_name} must be an integer >= {minimum}")
        return value

    return BeforeValidator(check)


def _model_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid("you must provide a model parameter")
    return value


def _text(content: Any) -> str:
    """A message's content: a string, or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for i, part in enumerate(content):
            if not isinstance(part, dict):
                raise _invalid("content parts must be objects", f"[{i}]")
            kind = part.get("type")
            if kind not in TEXT_PARTS:
                raise _invalid(f"content part type {kind!r} is not supported (text only)", f"[{i}].type")
            out.append(str(part.get("text", "")))
        return "".join(out)
    raise _invalid("content must be a string or a list of text parts")


def _function_name(value: Any) -> str:
    if not isinstance(value, str) or not value or not value.replace("_", "a").replace("-", "a").isalnum():
        raise _invalid("function name must be a non-empty string of letters, digits, _ and -")
    return value


def _schema_object(value: Any) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise _invalid("parameters must be a JSON Schema object")
    return value


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise _invalid("stop must be a non-empty string or a list of up to 4 of them")
    return tuple(stops)


def _object(message: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if not isinstance(value, dict):
            raise _invalid(message)
        return value

    return BeforeValidator(check)


def _optional_object(message: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if value is not None and not isinstance(value, dict):
            raise _invalid(message)
        return value

    return BeforeValidator(check)


def _arguments(value: Any) -> Any:
    if value is not None and not isinstance(value, str):
        raise _invalid("arguments must be a string of JSON (as the model wrote it)")
    return value


def effort(value: Any, param: str) -> ReasoningEffort | None:
    """The edge's spelling of an effort (``minimal`` reads as low) as the one type."""
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in EFFORT_ALIASES:
        raise bad_request("reasoning effort must be one of low, medium, high", param)
    return ReasoningEffort(EFFORT_ALIASES[value.lower()])


def response_format(fmt: Any, param: str) -> dict[str, Any] | None:
    """``text`` / ``json_object`` / ``json_schema`` (chat nests the schema in ``json_schema``; responses
    has it flat) as ``{"name", "schema", "description"}``."""
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
        spec = fmt.get("json_schema", fmt)
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise bad_request("json_schema.schema must be a JSON Schema object", f"{param}.json_schema.schema")
        return {"name": spec.get("name") or "response", "schema": schema, "description": spec.get("description")}
    raise bad_request(f"response format type {kind!r} is not supported", f"{param}.type")


def tool_choice(value: Any, names: list[str], flat: bool) -> ToolChoice:
    """The OpenAI tool-choice forms (``flat``: the responses API's ``{"type": "function", "name": N}``)."""
    if value is None:
        return ToolChoice()
    if isinstance(value, str):
        if value not in ("auto", "none", "required"):
            raise bad_request("tool_choice must be auto, none, required or a function", "tool_choice")
        if value == "required" and not names:
            raise bad_request("tool_choice is required but no tools were given", "tool_choice")
        return ToolChoice(value)
    if isinstance(value, dict) and value.get("type") == "function":
        name = value.get("name") if flat else (value.get("function") or {}).get("name")
        if name not in names:
            raise bad_request(f"tool_choice names {name!r}, which is not among the tools", "tool_choice")
        return ToolChoice("function", str(name))
    raise bad_request("tool_choice must be auto, none, required or a function", "tool_choice")


Model = Annotated[str, BeforeValidator(_model_name)]
Text = Annotated[str, BeforeValidator(_text)]
FunctionName = Annotated[str, BeforeValidator(_function_name)]
SchemaObject = Annotated[dict[str, Any] | None, BeforeValidator(_schema_object)]
Temperature = Annotated[float, _number(0.0, 2.0)]
TopP = Annotated[float, _number(0.0, 1.0, lo_open=True)]
Seed = Annotated[int | None, _integer(-(2**63))]
Count = Annotated[int | None, _integer(1)]
Stop = Annotated[tuple[str, ...], BeforeValidator(_stop)]
Flag = Annotated[bool, BeforeValidator(lambda v: bool(v or False))]
Arguments = Annotated[Any, BeforeValidator(_arguments)]


class _Body(BaseModel):
    """Fields this server does not use are accepted and ignored, as OpenAI clients send many."""

    model_config = ConfigDict(extra="allow")


class _Item(_Body):
    """An object inside a body (a message, a tool, an input item): ``not_an_object`` is the error for anything
    else, and :meth:`_shape` checks and reshapes the object before its fields are read."""

    not_an_object: ClassVar[str] = "must be an object"

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise _invalid(cls.not_an_object)
        return cls._shape(data)

    @classmethod
    def _shape(cls, data: dict[str, Any]) -> dict[str, Any]:
        return data


class _Common(_Body):
    model: Model
    temperature: Temperature = 1.0
    top_p: TopP = 1.0
    seed: Seed = None
    stream: Flag = False
    tool_choice: Any = None  # read with the tools (see tool_choice)
    reasoning: Annotated[Any, _optional_object('reasoning must be an object such as {"effort": "high"}')] = None

    @model_validator(mode="before")
    @classmethod
    def _needs_model(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("model") is None:
            raise _invalid("you must provide a model parameter", param="model")
        return data


def _validate(model: type[_Common], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise api_error(exc) from exc


def _nonempty_list(message: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if not isinstance(value, list) or not value:
            raise _invalid(message)
        return value

    return BeforeValidator(check)


def _call(name: str, arguments: Any, call_id: str) -> Msg:
    return Msg("assistant", str(arguments or "{}"), recipient=f"functions.{name}", channel="commentary",
               content_type="<|constrain|>json", meta={"call_id": call_id})


def _answer(text: str, name: str, call_id: Any) -> Msg:
    return Msg("tool", text, name=f"functions.{name}", recipient="assistant", channel="commentary",
               meta={"call_id": call_id})


def _instructions(parts: list[str]) -> str | None:
    return "\n\n".join(parts) if parts else None


# ------------------------------------------------------------------------------ chat completions
def _only_one(value: Any) -> Any:
    if value not in (None, 1):
        raise _invalid("only n=1 is supported")
    return value


class ChatFunction(_Body):
    name: FunctionName
    description: Any = None
    parameters: SchemaObject = None


class ChatTool(_Item):
    not_an_object: ClassVar[str] = "only tools of type 'function' are supported"
    type: str
    function: ChatFunction

    @classmethod
    def _shape(cls, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("type") != "function" or not isinstance(data.get("function"), dict):
            raise _invalid(cls.not_an_object)
        return data


class ChatToolCall(_Item):
    not_an_object: ClassVar[str] = "tool_calls need function.name and function.arguments"
    id: Any = None
    name: str
    arguments: Arguments = None

    @classmethod
    def _shape(cls, data: dict[str, Any]) -> dict[str, Any]:
        fn = data.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _invalid(cls.not_an_object)
        return {"id": data.get("id"), "name": fn["name"], "arguments": fn.get("arguments")}


def _role(*roles: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if value not in roles:
            raise _invalid(f"unknown role {value!r}")
        return value

    return BeforeValidator(check)


class ChatMessage(_Item):
    not_an_object: ClassVar[str] = "each message must be an object"
    role: Annotated[str, _role("system", "developer", "user", "assistant", "tool")] = ""
    content: Text = ""
    reasoning_content: Any = None
    reasoning: Any = None
    tool_calls: Annotated[list[ChatToolCall], BeforeValidator(lambda v: v or [])] = []
    tool_call_id: Any = None
    name: Any = None

    @classmethod
    def _shape(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {"role": None, **data}  # a missing role is an unknown one


class ChatCompletionRequest(_Common):
    messages: Annotated[list[ChatMessage], _nonempty_list("messages must be a non-empty array")] = Field(
        None, validate_default=True)
    n: Annotated[Any, BeforeValidator(_only_one)] = None
    tools: Annotated[list[ChatTool], BeforeValidator(lambda v: v or [])] = []
    response_format: Any = None
    reasoning_effort: Any = None
    max_completion_tokens: Count = None
    max_tokens: Count = None
    stop: Stop = ()
    stream_options: Annotated[Any, _optional_object("stream_options must be an object")] = None

    def conversation(self) -> tuple[list[Msg], list[str]]:
        """The messages (system and developer text apart, as instructions)."""
        instructions: list[str] = []
        msgs: list[Msg] = []
        call_names: dict[str, str] = {}
        for i, m in enumerate(self.messages):
            if m.role in ("system", "developer"):
                instructions.append(m.content)
            elif m.role == "user":
                msgs.append(Msg("user", m.content))
            elif m.role == "assistant":
                reasoning = m.reasoning_content or m.reasoning
                if isinstance(reasoning, str) and reasoning:
                    msgs.append(Msg("assistant", reasoning, channel="analysis"))
                if m.content:
                    msgs.append(Msg("assistant", m.content, channel="commentary" if m.tool_calls else "final"))
                for j, c in enumerate(m.tool_calls):
                    call_id = str(c.id or f"call_{i}_{j}")
                    call_names[call_id] = c.name
                    msgs.append(_call(c.name, c.arguments, call_id))
            else:
                name = call_names.get(str(m.tool_call_id)) or m.name
                if not name:
                    raise bad_request(f"tool message answers unknown tool_call_id {m.tool_call_id!r}",
                                      f"messages[{i}].tool_call_id")
                msgs.append(_answer(m.content, name, m.tool_call_id))
        if not msgs:
            raise bad_request("messages must contain at least one user message", "messages")
        return msgs, instructions


def parse_chat(body: dict[str, Any]) -> GenRequest:
    req: ChatCompletionRequest = _validate(ChatCompletionRequest, body)
    msgs, instructions = req.conversation()
    functions = [FunctionDescription(t.function.name, str(t.function.description or ""), t.function.parameters)
                 for t in req.tools]
    reasoning = req.reasoning.get("effort") if isinstance(req.reasoning, dict) else None
    opts = req.stream_options
    return GenRequest(
        model=req.model, messages=msgs, instructions=_instructions(instructions), functions=functions,
        tool_choice=tool_choice(req.tool_choice, [f.name for f in functions], flat=False),
        response_format=response_format(req.response_format, "response_format"),
        reasoning=effort(req.reasoning_effort or reasoning, "reasoning_effort"),
        max_tokens=req.max_completion_tokens or req.max_tokens, stop=req.stop,
        include_usage=bool(isinstance(opts, dict) and opts.get("include_usage")),
        temperature=req.temperature, top_p=req.top_p, seed=req.seed, stream=req.stream,
    )
