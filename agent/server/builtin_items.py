"""Built-in tool calls the server ran itself (``serve --tools python,browser``) as Responses API items.

A ``python`` call becomes a ``code_interpreter_call`` item (its ``code``, the tool's answer as one ``logs``
output, a ``container_id`` naming the response's sandbox) and a ``browser.search`` / ``open`` / ``find`` call a
``web_search_call`` item whose ``action`` is ``search`` (the query and, once answered, the results' URLs as
``sources``), ``open_page`` (the URL opened) or ``find_in_page`` (the pattern and the page searched).
Streamed, each is announced with ``response.output_item.added``, then its progress events
(``response.code_interpreter_call.in_progress``, ``..._code.delta`` / ``..._code.done``, ``.interpreting``,
``.completed``; ``response.web_search_call.in_progress``, ``.searching``, ``.completed``), and closed with
``response.output_item.done``. A call whose tool failed ends ``failed``; one the run stopped before it was
answered, ``incomplete``.

The browser's citations (``【3†L10-L15】``: page 3 of the browser's stack, lines 10 to 15) stay in the text as
the model wrote them, and each one whose page has a URL gets a ``url_citation`` annotation on its
``output_text`` part: the page's ``url`` and ``title`` and the marker's ``start_index`` / ``end_index`` (characters
of the text, end exclusive), also streamed as ``response.output_text.annotation.added`` as soon as the marker is
complete. A citation of a find-results page cites the page searched; one of a search-results page (no URL of its
own), or of a cursor this response never saw, gets none.

Shapes: ``openai.types.responses`` (``ResponseCodeInterpreterToolCall``, ``ResponseFunctionWebSearch``,
``AnnotationURLCitation``); tests/agent/test_server_builtin_items.py parses them with the official client.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from ossagent.agent import events

Emit = Callable[..., dict[str, Any]]  # the formatter's event maker: emit(type, **fields)
BROWSER_ACTIONS = {"search": "search", "open": "open_page", "find": "find_in_page"}


def is_builtin(recipient: str) -> bool:
    return recipient == "python" or recipient.removeprefix("browser.") in BROWSER_ACTIONS


def _source_url(url: str) -> str:
    """A find-results page (``PAGE/find?pattern=...``) cites the page it searched."""
    return url.rsplit("/find?pattern=", 1)[0] if "/find?pattern=" in url else url


def _sources(results: Any) -> list[dict[str, str]]:
    """A search's results (the browser tool's ``results`` metadata: url and title each) as the action's
    ``sources``: ``{"type": "url", "url": ...}`` in the results' order."""
    if not isinstance(results, list):
        return []
    return [{"type": "url", "url": r["url"]} for r in results if isinstance(r, dict) and isinstance(r.get("url"), str)]


def _arguments(text: str) -> dict[str, Any]:
    try:
        args = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return {}
    return args if isinstance(args, dict) else {}


class BuiltinItems:
    """Folds built-in tool events into output items; citations into annotations. ``items`` is the response's
    output list (shared with the formatter); ``emit`` numbers each streamed event."""

    def __init__(self, items: list[dict[str, Any]], emit: Emit) -> None:
        self.items = items
        self.emit = emit
        self.container = "cntr_" + uuid.uuid4().hex  # one python sandbox per request
        self.calls: dict[str, dict[str, Any]] = {}  # call_id -> its item, until its result
        self.pages: dict[int, tuple[str, str]] = {}  # browser cursor -> (url, title)
        self.cited: dict[str, int] = {}  # message item id -> characters already scanned for citations

    def _index(self, item: dict[str, Any]) -> int:
        return next(i for i, it in enumerate(self.items) if it is item)

    def _progress(self, item: dict[str, Any], *stages: str) -> list[dict[str, Any]]:
        kind = "response.code_interpreter_call" if item["type"] == "code_interpreter_call" else \
            "response.web_search_call"
        idx = self._index(item)
        return [self.emit(f"{kind}.{stage}", item_id=item["id"], output_index=idx) for stage in stages]

    def _add(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        self.items.append(item)
        return [self.emit("response.output_item.added", output_index=len(self.items) - 1, item=dict(item))]

    def _done(self, item: dict[str, Any]) -> dict[str, Any]:
        return self.emit("response.output_item.done", output_index=self._index(item), item=dict(item))

    # ------------------------------------------------------------------ calls
    def started(self, ev: events.ToolCallStarted) -> list[dict[str, Any]]:
        """A python call opens its item now (its code streams); a browser call waits for its arguments."""
        if ev.recipient != "python":
            return []
        item = {"type": "code_interpreter_call", "id": "ci_" + uuid.uuid4().hex, "code": "",
                "container_id": self.container, "outputs": None, "status": "in_progress"}
        self.calls[ev.call_id] = item
        return self._add(item) + self._progress(item, "in_progress")

    def delta(self, ev: events.ToolCallDelta) -> list[dict[str, Any]]:
        item = self.calls.get(ev.call_id)
        if item is None or item["type"] != "code_interpreter_call":
            return []
        item["code"] += ev.text
        return [self.emit("response.code_interpreter_call_code.delta", item_id=item["id"],
                          output_index=self._index(item), delta=ev.text)]

    def called(self, ev: events.ToolCall) -> list[dict[str, Any]]:
        item = self.calls.get(ev.call_id)
        if item is not None:  # python: the code is complete; it runs now
            item["code"], item["status"] = ev.arguments, "interpreting"
            idx = self._index(item)
            return [self.emit("response.code_interpreter_call_code.done", item_id=item["id"], output_index=idx,
                              code=ev.arguments), *self._progress(item, "interpreting")]
        args = _arguments(ev.arguments)
        kind = BROWSER_ACTIONS[ev.recipient.removeprefix("browser.")]
        action: dict[str, Any] = {"type": kind}
        if kind == "search":
            query = str(args.get("query", ""))
            action.update(query=query, queries=[query])
        elif kind == "open_page":
            link = args.get("id")
            action["url"] = link if isinstance(link, str) and "://" in link else None
        else:
            action.update(pattern=str(args.get("pattern", "")), url=self._page_url(args.get("cursor")))
        item = {"type": "web_search_call", "id": "ws_" + uuid.uuid4().hex, "action": action, "status": "in_progress"}
        self.calls[ev.call_id] = item
        out = self._add(item) + self._progress(item, "in_progress", "searching")
        item["status"] = "searching"
        return out

    def _page_url(self, cursor: Any) -> str:
        """The URL of page ``cursor`` (-1 or none: the newest page) as far as this response has seen."""
        if not self.pages:
            return ""
        key = cursor if isinstance(cursor, int) and cursor >= 0 else max(self.pages)
        return self.pages.get(key, ("", ""))[0]

    def _cited_page(self, url: str, title: str) -> tuple[str, str]:
        """What a citation of a page names: a find-results page names the page searched (its URL and title)."""
        source = _source_url(url)
        if source != url:
            title = next((t for u, t in self.pages.values() if u == source), title)
        return source, title

    def answered(self, ev: events.ToolResultEvent) -> list[dict[str, Any]]:
        item = self.calls.pop(ev.call_id, None)
        if item is None:
            return []
        meta = ev.metadata
        if item["type"] == "code_interpreter_call":
            item["outputs"] = [{"type": "logs", "logs": ev.text}]
        else:
            cursor, url = meta.get("cursor"), str(meta.get("url") or "")
            if isinstance(cursor, int) and not ev.is_error:
                self.pages[cursor] = self._cited_page(url, str(meta.get("title") or ""))
            action = item["action"]
            if action["type"] == "search" and not ev.is_error:
                action["sources"] = _sources(meta.get("results"))
            elif action["type"] == "open_page" and url and not ev.is_error:
                action["url"] = url
            elif action["type"] == "find_in_page" and url and not ev.is_error:
                action["url"] = _source_url(url)
        item["status"] = "failed" if ev.is_error else "completed"
        out = [] if ev.is_error else self._progress(item, "completed")
        return [*out, self._done(item)]

    def stopped(self) -> list[dict[str, Any]]:
        """The run ended: calls never answered are ``incomplete``."""
        out = []
        for item in self.calls.values():
            item["status"] = "incomplete"
            out.append(self._done(item))
        self.calls.clear()
        return out

    def on_event(self, ev: events.Event) -> list[dict[str, Any]] | None:
        """The events for a built-in call's delta, completion or result; None when ``ev`` is not about one (the
        formatter calls :meth:`started` itself, after closing the item before it)."""
        if isinstance(ev, events.ToolCallDelta) and ev.call_id in self.calls:
            return self.delta(ev)
        if isinstance(ev, events.ToolCall) and is_builtin(ev.recipient):
            return self.called(ev)
        if isinstance(ev, events.ToolResultEvent) and ev.call_id in self.calls:
            return self.answered(ev)
        return None

    # ------------------------------------------------------------------ citations
    def annotate(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        """``url_citation`` annotations for the markers completed in a message's text since the last call."""
        if not self.pages:  # no browser page yet: nothing to cite
            return []
        from ossagent.tools.browser.citations import CITATION_RE  # loaded with the browser already

        part = item["content"][0]
        text: str = part["text"]
        seen = self.cited.get(item["id"], 0)
        out = []
        for m in CITATION_RE.finditer(text, seen):
            page = self.pages.get(int(m.group("cursor")))
            seen = m.end()
            if page is None or not page[0]:
                continue
            note = {"type": "url_citation", "start_index": m.start(), "end_index": m.end(), "url": page[0],
                    "title": page[1]}
            part["annotations"].append(note)
            out.append(self.emit("response.output_text.annotation.added", item_id=item["id"],
                                 output_index=self._index(item), content_index=0,
                                 annotation_index=len(part["annotations"]) - 1, annotation=note))
        # an unfinished marker at the end is scanned again with the next delta
        self.cited[item["id"]] = seen
        return out
