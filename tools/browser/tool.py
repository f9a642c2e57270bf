"""The ``browser`` tool as the model sees it: the trained description and ``search``/``open``/``find``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from ossagent.tools.base import FunctionDescription, ModelError, ToolDescription, ToolResult
from ossagent.tools.browser.browser import Browser
from ossagent.tools.browser.page import View
from ossagent.tools.browser.text import PageContents

# The texts gpt-oss was trained on (openai-harmony's ToolNamespaceConfig.browser()), verbatim.
DESCRIPTION = (
    "Tool for browsing.\n"
    "The `cursor` appears in brackets before each browsing display: `[{cursor}]`.\n"
    "Cite information from the tool using the following format:\n"
    "`【{cursor}†L{line_start}(-L{line_end})?】`, for example: `【6†L9-L11】` or `【8†L3】`.\n"
    "Do not quote more than 10 words directly from the tool output.\n"
    "sources=web (default: web)"
)
FUNCTIONS = (
    FunctionDescription(
        name="search",
        description="Searches for information related to `query` and displays `topn` results.",
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "topn": {"type": "number", "default": 10},
                "source": {"type": "string"},
            },
            "required": ["query"],
        },
    ),
    FunctionDescription(
        name="open",
        description=(
            "Opens the link `id` from the page indicated by `cursor` starting at line number `loc`, showing "
            "`num_lines` lines.\n"
            "Valid link ids are displayed with the formatting: `【{id}†.*】`.\n"
            "If `cursor` is not provided, the most recent page is implied.\n"
            "If `id` is a string, it is treated as a fully qualified URL associated with `source`.\n"
            "If `loc` is not provided, the viewport will be positioned at the beginning of the document or "
            "centered on the most relevant passage, if available.\n"
            "Use this function without `id` to scroll to a new location of an opened page."
        ),
        parameters={
            "type": "object",
            "properties": {
                "id": {"type": ["number", "string"], "default": -1},
                "cursor": {"type": "number", "default": -1},
                "loc": {"type": "number", "default": -1},
                "num_lines": {"type": "number", "default": -1},
                "view_source": {"type": "boolean", "default": False},
                "source": {"type": "string"},
            },
        },
    ),
    FunctionDescription(
        name="find",
        description="Finds exact matches of `pattern` in the current page, or the page given by `cursor`.",
        parameters={
            "type": "object",
            "properties": {"pattern": {"type": "string"}, "cursor": {"type": "number", "default": -1}},
            "required": ["pattern"],
        },
    ),
)
_ARGS = {f.name: set((f.parameters or {}).get("properties", {})) for f in FUNCTIONS}
# a link as a page shows it: 【{id}†{text}】 or 【{id}†{text}†{domain}】 (page text cannot forge 【, 】 or †)
_LINK_RE = re.compile(r"【(\d+)†([^†】]*)")


def _int(args: dict[str, Any], name: str, default: int) -> int:
    value = args.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ModelError(f"`{name}` must be an integer, not `{json.dumps(value)}`.")
    return int(value)


def _search_results(page: PageContents) -> list[dict[str, str]]:
    """The results a search-results page lists, in its order: each one's ``url`` and ``title`` (its link text)."""
    titles = {m.group(1): m.group(2) for m in _LINK_RE.finditer(page.text)}
    return [{"url": url, "title": titles.get(link_id, "")} for link_id, url in page.urls.items()]


def json_arguments(recipient: str, content: str, valid: Iterable[str], ignored: Iterable[str] = ()) -> dict[str, Any]:
    """The call's arguments: one JSON object (empty content: no arguments) with only ``valid`` keys."""
    try:
        args = json.loads(content) if content.strip() else {}
    except json.JSONDecodeError as e:
        raise ModelError(f"Invalid function arguments: {e.msg} at character {e.pos}.",
                         hint="Send the arguments as one JSON object.") from e
    if not isinstance(args, dict):
        raise ModelError("Invalid function arguments: expected a JSON object.")
    unknown = sorted(set(args) - set(valid) - set(ignored))
    if unknown:
        raise ModelError(f"Unknown argument(s) {', '.join(f'`{u}`' for u in unknown)} for {recipient}.",
                         hint=f"Valid arguments: {', '.join(sorted(valid)) or 'none'}.")
    return args


class BrowserTool:
    """:class:`~ossagent.tools.base.Tool` over a :class:`Browser` (one per conversation)."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser

    @property
    def name(self) -> str:
        return "browser"

    def description(self) -> ToolDescription:
        return ToolDescription(name="browser", description=DESCRIPTION, functions=FUNCTIONS)

    def call(self, recipient: str, content: str) -> ToolResult:
        fn = recipient.split(".", 1)[1] if recipient.startswith("browser.") else ""
        if fn not in _ARGS:
            raise ModelError(f"Unknown function `{recipient}`.",
                             hint="The browser has browser.search, browser.open and browser.find.")
        args = json_arguments(recipient, content, _ARGS[fn], ignored={"top_n"})
        view = self._dispatch(fn, args)
        meta: dict[str, Any] = {"cursor": view.cursor, "url": view.url, "title": view.title,
                                "lines": [view.loc, view.end - 1]}
        if fn == "search":
            meta["results"] = _search_results(view.page)
        return ToolResult(recipient=recipient, text=view.text, metadata=meta)

    def _dispatch(self, fn: str, args: dict[str, Any]) -> View:
        b = self.browser
        if fn == "search":
            query = args.get("query")
            if not isinstance(query, str):
                raise ModelError("`query` is required and must be a string.")
            return b.search(query)  # like the reference, ask for max_search_results regardless of topn
        if fn == "find":
            pattern = args.get("pattern")
            if not isinstance(pattern, str):
                raise ModelError("`pattern` is required and must be a string.")
            return b.find(pattern, cursor=_int(args, "cursor", -1))
        raw_id = args.get("id", -1)
        link: int | str
        if isinstance(raw_id, str):
            link = int(raw_id) if raw_id.strip().lstrip("-").isdigit() else raw_id
        else:
            link = _int(args, "id", -1)
        view_source = args.get("view_source", False)
        if not isinstance(view_source, bool):
            raise ModelError("`view_source` must be true or false.")
        return b.open(link, cursor=_int(args, "cursor", -1), loc=_int(args, "loc", -1),
                      num_lines=_int(args, "num_lines", -1), view_source=view_source)

    def close(self) -> None:
        self.browser.close()
