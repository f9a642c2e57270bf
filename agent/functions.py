"""Function tools and structured outputs, declared once and checked where they are declared.

Three ways to declare a function the model may call as ``functions.NAME``:

* :meth:`FunctionTool.from_schema` — a name, a description and a JSON Schema of the arguments;
* :meth:`FunctionTool.from_callable` — a Python function: type hints and the docstring become the schema,
  pydantic validates the arguments before the function runs;
* :meth:`FunctionTool.from_model` — a pydantic model class whose fields are the arguments.

:class:`Functions` groups them as the ``functions`` namespace (a :class:`ossagent.tools.base.Tool`): its
:meth:`Functions.description` is what the developer message shows, :meth:`Functions.parse_call` checks a
call the model wrote (JSON, then jsonschema, then pydantic) and raises :class:`ModelError` the model can
act on, and :meth:`Functions.call` runs the Python function behind a call.

:class:`ResponseFormat` is the structured final answer: a schema, or a pydantic model whose instance the
caller gets back from :meth:`ResponseFormat.parse`.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic

from ossagent.agent.schema import CompiledSchema, compile_schema, loads_strict, validation_errors
from ossagent.tools.base import FunctionDescription, ModelError, ToolDescription, ToolResult, UserError

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
NAMESPACE = "functions"
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


def check_name(name: Any, what: str = "function") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UserError(
            f"{what} name {name!r} is not allowed: use 1-64 characters from A-Z a-z 0-9 _ -, starting with a "
            "letter or _ (the model addresses it as functions.NAME in a harmony header)"
        )
    return name


def _check_parameters(name: str, schema: Any) -> None:
    if not isinstance(schema, dict):
        raise UserError(f"function {name}: parameters must be a JSON Schema object (dict), got {type(schema).__name__}")
    if schema.get("type") != "object":
        raise UserError(
            f"function {name}: the parameters schema must have \"type\": \"object\" at the top level "
            f"(got {schema.get('type')!r}); wrap a single value in an object property"
        )


# ---------------------------------------------------------------------------------------------- docstrings


_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Params|Returns|Return|Raises|Yields|Examples?|Notes?)\s*:\s*$")
_GOOGLE_ARG = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX_ARG = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(summary, {parameter: description}) from a Google- or Sphinx-style docstring."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in lines:
        head = _SECTION.match(line)
        sphinx = _SPHINX_ARG.match(line)
        if head:
            section, current = head.group(1).lower(), None
        elif sphinx:
            current = sphinx.group(1)
            params[current] = sphinx.group(2).strip()
            section = "sphinx"
        elif line.strip().startswith(":") and section in (None, "sphinx"):
            section, current = "sphinx", None  # :returns:, :raises: ...
        elif section in ("args", "arguments", "parameters", "params"):
            arg = _GOOGLE_ARG.match(line)
            if arg and (len(line) - len(line.lstrip())) <= 4:
                current = arg.group(1).lstrip("*")
                params[current] = arg.group(2).strip()
            elif current and line.strip():
                params[current] = (params[current] + " " + line.strip()).strip()
        elif section == "sphinx" and current and line.strip():
            params[current] += " " + line.strip()
        elif section is None:
            summary.append(line)
    return "\n".join(summary).strip(), params


# ---------------------------------------------------------------------------------------------- schemas


def _inline_refs(schema: Any, defs: Mapping[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """Replace local ``#/$defs/X`` references by their target (the harmony rendering ignores ``$ref``)."""
    if isinstance(schema, list):
        return [_inline_refs(s, defs, seen) for s in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        key = ref.split("/", 2)[2]
        if key in seen:
            raise _Recursive(key)
        target = _inline_refs(defs[key], defs, (*seen, key))
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return {**target, **_inline_refs(rest, defs, seen)}
    return {k: _inline_refs(v, defs, seen) for k, v in schema.items() if k != "$defs"}


class _Recursive(Exception):
    pass


def _strip_titles(schema: Any, parent_key: str | None = None) -> Any:
    """Drop pydantic's generated ``title`` keys (harmony would print each as a comment)."""
    if isinstance(schema, list):
        return [_strip_titles(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str) and parent_key != "properties":
            continue
        out[key] = _strip_titles(value, key)
    return out


def model_schema(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """A pydantic model's JSON Schema, with local references inlined where not recursive."""
    raw = model.model_json_schema()
    try:
        schema = _inline_refs(raw, raw.get("$defs", {}))
    except _Recursive:
        schema = raw
    return _strip_titles(schema)


# ---------------------------------------------------------------------------------------------- tools


@dataclass(frozen=True)
class FunctionCall:
    """A checked call: the function's name, its arguments as JSON, and the typed value when there is one."""

    name: str
    arguments: dict[str, Any]
    typed: Any = None  # a pydantic model instance (from_callable / from_model), else None


@dataclass(frozen=True)
class FunctionTool:
    name: str
    description: str
    compiled: CompiledSchema
    model: type[pydantic.BaseModel] | None = field(default=None, compare=False)
    implementation: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    # How the implementation takes a call: "json" (**arguments), "fields" (**validated fields), "model" (instance)
    call_style: str = "json"

    @property
    def parameters(self) -> dict[str, Any]:
        return self.compiled.schema

    @property
    def notes(self) -> tuple[str, ...]:
        return self.compiled.notes

    @classmethod
    def from_schema(
        cls,
        name: str,
        parameters: Mapping[str, Any] | None,
        description: str = "",
        *,
        implementation: Callable[..., Any] | None = None,
        lenient: bool = False,
    ) -> FunctionTool:
        """A function from a JSON Schema; ``None`` parameters means no arguments (the model writes ``{}``)."""
        check_name(name)
        schema = dict(EMPTY_PARAMETERS) if parameters is None else json.loads(json.dumps(dict(parameters)))
        _check_parameters(name, schema)
        compiled = compile_schema(schema, where=f"function {name}", lenient=lenient)
        return cls(name, description or "", compiled, None, implementation)

    @classmethod
    def from_model(
        cls, model: type[pydantic.BaseModel], name: str | None = None, description: str | None = None,
        *, implementation: Callable[..., Any] | None = None, lenient: bool = False,
    ) -> FunctionTool:
        """A function whose arguments are the fields of a pydantic model (the call's ``typed`` value)."""
        if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
            raise UserError(f"from_model needs a pydantic BaseModel subclass, got {model!r}")
        name = check_name(name or model.__name__)
        summary, _ = parse_docstring(model.__doc__ if model.__doc__ != pydantic.BaseModel.__doc__ else None)
        schema = model_schema(model)
        schema.pop("description", None)
        _check_parameters(name, schema)
        compiled = compile_schema(schema, where=f"function {name}", lenient=lenient)
        return cls(name, summary if description is None else description, compiled, model, implementation, "model")

    @classmethod
    def from_callable(
        cls, fn: Callable[..., Any], name: str | None = None, description: str | None = None,
        *, lenient: bool = False,
    ) -> FunctionTool:
        """A function from a Python callable: every parameter needs a type hint; the docstring describes it."""
        if not callable(fn):
            raise UserError(f"from_callable needs a callable, got {fn!r}")
        name = check_name(name or getattr(fn, "__name__", ""))
        summary, arg_docs = parse_docstring(inspect.getdoc(fn))
        model = _arguments_model(fn, name, arg_docs)
        schema = model_schema(model)
        _check_parameters(name, schema)
        compiled = compile_schema(schema, where=f"function {name}", lenient=lenient)
        return cls(name, summary if description is None else description, compiled, model, fn, "fields")

    def describe(self) -> FunctionDescription:
        return FunctionDescription(self.name, self.description, self.parameters)

    def check_arguments(self, content: str) -> FunctionCall:
        """Parse and validate a call body; :class:`ModelError` says what to fix."""
        try:
            arguments = loads_strict(content)
        except ValueError as exc:
            raise ModelError(
                f"The arguments of functions.{self.name} are not valid JSON: {exc}.",
                hint="Call it again with one JSON object that matches its parameters.",
            ) from exc
        if not isinstance(arguments, dict):
            raise ModelError(
                f"The arguments of functions.{self.name} must be a JSON object, got {type(arguments).__name__}.",
                hint="Call it again with one JSON object that matches its parameters.",
            )
        errors = validation_errors(self.compiled, arguments)
        if errors:
            raise ModelError(
                f"The arguments of functions.{self.name} do not match its parameters: " + "; ".join(errors),
                hint="Fix these fields and call it again.",
            )
        typed = None
        if self.model is not None:
            try:
                typed = self.model.model_validate(arguments)
            except pydantic.ValidationError as exc:
                raise ModelError(
                    f"The arguments of functions.{self.name} are not valid: "
                    + "; ".join(f"{'.'.join(map(str, e['loc'])) or '$'}: {e['msg']}" for e in exc.errors()[:3]),
                    hint="Fix these fields and call it again.",
                ) from exc
        return FunctionCall(self.name, arguments, typed)


def _arguments_model(fn: Callable[..., Any], name: str, arg_docs: Mapping[str, str]) -> type[pydantic.BaseModel]:
    try:
        sig = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)
    except (TypeError, ValueError, NameError) as exc:
        raise UserError(f"function {name}: cannot read its signature and type hints: {exc}") from exc
    fields: dict[str, Any] = {}
    for pname, param in sig.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise UserError(f"function {name}: *{pname} / **{pname} cannot be described to the model; "
                            "declare each argument")
        if param.kind is param.POSITIONAL_ONLY:
            raise UserError(f"function {name}: positional-only parameter {pname} cannot be passed by name")
        if pname not in hints:
            raise UserError(f"function {name}: parameter {pname!r} has no type hint (needed for its schema)")
        default = ... if param.default is param.empty else param.default
        info = pydantic.Field(default, description=arg_docs.get(pname) or None)
        fields[pname] = (hints[pname], info)
    try:
        return pydantic.create_model(  # type: ignore[call-overload,no-any-return]
            f"{name}_arguments", __config__=pydantic.ConfigDict(extra="forbid"), **fields
        )
    except (pydantic.PydanticSchemaGenerationError, TypeError) as exc:
        raise UserError(f"function {name}: a parameter type has no JSON Schema: {exc}") from exc


def _as_tool(item: FunctionTool | Callable[..., Any] | type[pydantic.BaseModel]) -> FunctionTool:
    if isinstance(item, FunctionTool):
        return item
    if isinstance(item, type) and issubclass(item, pydantic.BaseModel):
        return FunctionTool.from_model(item)
    if callable(item):
        return FunctionTool.from_callable(item)
    raise UserError(f"not a function tool: {item!r} (use FunctionTool.from_schema for JSON Schemas)")


class Functions:
    """The ``functions`` namespace: declared function tools, their description, and their calls."""

    name = NAMESPACE

    def __init__(self, tools: Iterable[FunctionTool | Callable[..., Any] | type[pydantic.BaseModel]] = ()) -> None:
        self._tools: dict[str, FunctionTool] = {}
        for item in tools:
            self.add(item)

    def add(self, item: FunctionTool | Callable[..., Any] | type[pydantic.BaseModel]) -> FunctionTool:
        tool = _as_tool(item)
        if tool.name in self._tools:
            raise UserError(f"function {tool.name} is declared twice")
        self._tools[tool.name] = tool
        return tool

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> typing.Iterator[FunctionTool]:
        return iter(self._tools.values())

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __getitem__(self, name: str) -> FunctionTool:
        return self._tools[name]

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def description(self) -> ToolDescription:
        return ToolDescription(NAMESPACE, "", tuple(t.describe() for t in self._tools.values()))

    def parse_call(self, recipient: str, content: str) -> FunctionCall:
        """Check a call the model addressed to ``recipient`` (``functions.NAME`` or ``NAME``)."""
        fname = recipient.removeprefix(f"{NAMESPACE}.")
        tool = self._tools.get(fname)
        if tool is None:
            known = ", ".join(f"functions.{n}" for n in self._tools) or "none"
            raise ModelError(f"There is no function {recipient!r}.", hint=f"Declared functions: {known}.")
        return tool.check_arguments(content)

    def call(self, recipient: str, content: str) -> ToolResult:
        """Run the Python function behind a call; the result (JSON unless a string) goes back to the model."""
        parsed = self.parse_call(recipient, content)
        tool = self._tools[parsed.name]
        if tool.implementation is None:
            raise UserError(f"function {tool.name} has no implementation: its calls are returned to the caller")
        if tool.call_style == "fields":
            value = tool.implementation(**{k: getattr(parsed.typed, k) for k in type(parsed.typed).model_fields})
        elif tool.call_style == "model":
            value = tool.implementation(parsed.typed)
        else:
            value = tool.implementation(**parsed.arguments)
        text = value if isinstance(value, str) else json.dumps(_jsonable(value), ensure_ascii=False)
        return ToolResult(f"{NAMESPACE}.{tool.name}", text)

    def close(self) -> None:
        return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    try:
        json.dumps(value)
        return value
    except TypeError:
        return pydantic.TypeAdapter(type(value)).dump_python(value, mode="json")


# ---------------------------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class ResponseFormat:
    """A structured final answer: the final channel's body must match ``schema``."""

    name: str
    compiled: CompiledSchema
    description: str = ""
    model: type[pydantic.BaseModel] | None = field(default=None, compare=False)

    @property
    def schema(self) -> dict[str, Any]:
        return self.compiled.schema

    @classmethod
    def from_schema(
        cls, name: str, schema: Mapping[str, Any], description: str = "", *, lenient: bool = False
    ) -> ResponseFormat:
        check_name(name, "response format")
        compiled = compile_schema(json.loads(json.dumps(dict(schema))), where=f"response format {name}",
                                  lenient=lenient)
        return cls(name, compiled, description)

    @classmethod
    def from_model(
        cls, model: type[pydantic.BaseModel], name: str | None = None, description: str | None = None,
        *, lenient: bool = False,
    ) -> ResponseFormat:
        if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
            raise UserError(f"ResponseFormat.from_model needs a pydantic BaseModel subclass, got {model!r}")
        name = check_name(name or model.__name__, "response format")
        summary, _ = parse_docstring(model.__doc__ if model.__doc__ != pydantic.BaseModel.__doc__ else None)
        schema = model_schema(model)
        schema.pop("description", None)
        compiled = compile_schema(schema, where=f"response format {name}", lenient=lenient)
        return cls(name, compiled, summary if description is None else description, model)

    def parse(self, text: str) -> Any:
        """The final answer as a typed object (pydantic model) or as JSON; :class:`ModelError` if invalid."""
        try:
            value = loads_strict(text)
        except ValueError as exc:
            raise ModelError(f"The final answer is not valid JSON: {exc}.",
                             hint=f"Answer again with JSON matching the {self.name} format.") from exc
        errors = validation_errors(self.compiled, value)
        if errors:
            raise ModelError(f"The final answer does not match the {self.name} format: " + "; ".join(errors),
                             hint="Answer again with these fields fixed.")
        if self.model is None:
            return value
        try:
            return self.model.model_validate(value)
        except pydantic.ValidationError as exc:
            raise ModelError(f"The final answer is not a valid {self.name}: {exc.errors()[0]['msg']}",
                             hint="Answer again with these fields fixed.") from exc
