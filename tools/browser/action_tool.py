"""The ``page`` tool: page actions as the model sees them (a namespace beside the trained ``browser``).

The trained ``browser`` namespace (search/open/find) stays verbatim; acting on pages is a second namespace
over the same :class:`~ossagent.tools.browser.browser.Browser`, so its pages share the browser's cursors and
citations. Give the agent both: ``[BrowserTool(b), PageTool(b)]`` (:func:`browser_tools`).

Approvals: :meth:`PageTool.side_effect` says, before a call runs, whether it submits a form, downloads or
uploads (:data:`SIDE_EFFECTING` lists the functions that can); requests a page makes on its own are put to
``ActionConfig.approve`` when they happen.
"""

from __future__ import annotations

import json
from typing import Any

from ossagent.tools.base import FunctionDescription, ModelError, Tool, ToolDescription, ToolResult
from ossagent.tools.browser.actions import ActionResult, SideEffect
from ossagent.tools.browser.browser import Browser
from ossagent.tools.browser.tool import json_arguments

NAME = "page"
DESCRIPTION = (
    "Acts on web pages in a live browser tab, as a person would: load a page, click, type, select, check, "
    "upload, scroll, go back, wait, take a screenshot.\n"
    "Each call shows the page after the action, like the browser tool does (cursor, numbered lines; cite it the "
    "same way), after a line for each thing that happened (navigation, dialog, download, refusal).\n"
    "Controls are shown as `【#{id} {role} \"{label}\" ...】` and links as `【{id}†{text}】`; pass that id. An "
    "element keeps its id while it stays on the page.\n"
    "Every address a page goes to is checked by the same policy as browser.open; a refused navigation leaves "
    "the page as it was."
)
_ID = {"type": "integer", "description": "The element's id, from 【#id …】 or 【id†…】."}
FUNCTIONS = (
    FunctionDescription(name="goto", description="Loads `url` in the tab.", parameters={
        "type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]}),
    FunctionDescription(name="click", description="Clicks element `id` (a button, link, checkbox, ...).",
                        parameters={"type": "object", "properties": {"id": _ID}, "required": ["id"]}),
    FunctionDescription(
        name="type",
        description="Replaces the text of field `id` with `text`; with `submit`, then presses Enter.",
        parameters={"type": "object", "properties": {"id": _ID, "text": {"type": "string"},
                                                     "submit": {"type": "boolean", "default": False}},
                    "required": ["id", "text"]}),
    FunctionDescription(name="select", description="Chooses `option` (one of the listed options) in select `id`.",
                        parameters={"type": "object", "properties": {"id": _ID, "option": {"type": "string"}},
                                    "required": ["id", "option"]}),
    FunctionDescription(name="check", description="Checks (`on` true) or unchecks checkbox `id`.",
                        parameters={"type": "object", "properties": {"id": _ID,
                                                                     "on": {"type": "boolean", "default": True}},
                                    "required": ["id"]}),
    FunctionDescription(name="upload", description="Attaches the workspace file `path` to file field `id`.",
                        parameters={"type": "object", "properties": {"id": _ID, "path": {"type": "string"}},
                                    "required": ["id", "path"]}),
    FunctionDescription(name="scroll", description="Scrolls the page and shows the next (or previous) lines.",
                        parameters={"type": "object", "properties": {
                            "direction": {"type": "string", "enum": ["down", "up"], "default": "down"}}}),
    FunctionDescription(name="back", description="Goes back to the previous page of the tab.",
                        parameters={"type": "object", "properties": {}}),
    FunctionDescription(
        name="wait_for", description="Waits until `text` shows on the page, at most `timeout` seconds.",
        parameters={"type": "object", "properties": {"text": {"type": "string"},
                                                     "timeout": {"type": "number", "default": 10}},
                    "required": ["text"]}),
    FunctionDescription(name="screenshot", description="Saves a screenshot of the tab into the workspace.",
                        parameters={"type": "object", "properties": {}}),
)
_ARGS = {f.name: (f.parameters or {}).get("properties", {}) for f in FUNCTIONS}
_REQUIRED = {f.name: (f.parameters or {}).get("required", []) for f in FUNCTIONS}
SIDE_EFFECTING = frozenset({"click", "type", "upload"})  # the functions that can submit, download or upload


def parse_call(recipient: str, content: str) -> tuple[str, dict[str, Any]]:
    """The function and its checked arguments; :class:`ModelError` for anything the schema does not allow."""
    fn = recipient.split(".", 1)[1] if recipient.startswith(f"{NAME}.") else ""
    if fn not in _ARGS:
        raise ModelError(f"Unknown function `{recipient}`.",
                         hint="The page tool has " + ", ".join(f"{NAME}.{f.name}" for f in FUNCTIONS) + ".")
    props = _ARGS[fn]
    args = json_arguments(recipient, content, props)
    missing = [r for r in _REQUIRED[fn] if r not in args]
    if missing:
        raise ModelError(f"Missing argument(s) {', '.join(f'`{m}`' for m in missing)} for {recipient}.")
    for name, value in args.items():
        kind = props[name]["type"]
        ok = {"integer": isinstance(value, int) or (isinstance(value, float) and value.is_integer()),
              "number": isinstance(value, int | float), "string": isinstance(value, str),
              "boolean": isinstance(value, bool)}[kind]
        if not ok or (kind != "boolean" and isinstance(value, bool)):
            raise ModelError(f"`{name}` must be {'an' if kind == 'integer' else 'a'} {kind}, not `{json.dumps(value)}`.")
        if kind == "integer":
            args[name] = int(value)
    return fn, args


class PageTool:
    """:class:`~ossagent.tools.base.Tool` for page actions over a :class:`Browser` (shared with ``BrowserTool``)."""

    def __init__(self, browser: Browser) -> None:
        self.session = browser  # not `browser`: the agent resolves citations once, through BrowserTool

    @property
    def name(self) -> str:
        return NAME

    def description(self) -> ToolDescription:
        return ToolDescription(name=NAME, description=DESCRIPTION, functions=FUNCTIONS)

    def side_effect(self, recipient: str, content: str) -> SideEffect | None:
        """What this call would do outside the page, known before it runs (for approvals); None: nothing known.

        A call that does not parse has no effect (it will be refused).
        """
        try:
            fn, args = parse_call(recipient, content)
        except ModelError:
            return None
        return self.session.actions.side_effect(fn, args)

    def call(self, recipient: str, content: str) -> ToolResult:
        fn, args = parse_call(recipient, content)
        result: ActionResult = getattr(self.session.actions, fn)(**args)
        view = result.view
        meta = {"cursor": view.cursor, "url": view.url, "title": view.title, "lines": [view.loc, view.end - 1],
                "events": result.events, "files": result.files}
        return ToolResult(recipient=recipient, text=result.text, metadata=meta)

    def close(self) -> None:
        self.session.close()


def browser_tools(browser: Browser) -> list[Tool]:
    """The two namespaces over one browser: ``browser`` (read: search/open/find) and ``page`` (act)."""
    from ossagent.tools.browser.tool import BrowserTool

    return [BrowserTool(browser), PageTool(browser)]
