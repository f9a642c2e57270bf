"""Agent events -> a Responses API ``response`` object and its streaming events.

Output items appear in the order the model produced them: ``reasoning`` (with ``reasoning_text``
content), ``message`` (``output_text``), ``function_call`` (arguments streamed as deltas), and for built-in tools
the server ran, ``code_interpreter_call`` and ``web_search_call`` (agent/server/builtin_items.py). Every item is
announced with ``response.output_item.added`` before its deltas and closed with ``...done`` events, as
clients such as Codex expect.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from ossagent.agent import events
from ossagent.agent.server.builtin_items import BuiltinItems, is_builtin
from ossagent.agent.server.stops import incomplete_reason


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class ResponsesFormatter:
    def __init__(self, model: str, caller_functions: set[str], request: dict[str, Any],
                 mcp_labels: set[str] | frozenset[str] = frozenset()) -> None:
        self.mcp_labels = mcp_labels
        self.mcp_calls: dict[str, events.ToolCall] = {}
        self.id = _id("resp")
        self.created = int(time.time())
        self.model = model
        self.caller = caller_functions
        self.request = request
        self.items: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None  # the item receiving deltas
        self.calls: dict[str, dict[str, Any]] = {}
        self.usage = events.Usage()
        self.status = "in_progress"
        self.incomplete: str | None = None
        self.errors: list[events.ErrorEvent] = []
        self.seq = 0
        self.builtin = BuiltinItems(self.items, self._ev)

    def _ev(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        return {"type": kind, "sequence_number": self.seq - 1, **fields}

    def response(self) -> dict[str, Any]:
        u = self.usage
        return {
            "id": self.id, "object": "response", "created_at": self.created, "model": self.model,
            "status": self.status, "output": [dict(i) for i in self.items],
            "error": {"code": "server_error", "message": self.errors[-1].message}
            if self.status == "failed" and self.errors else None,
            "incomplete_details": {"reason": self.incomplete} if self.incomplete else None,
            "instructions": self.request.get("instructions"), "parallel_tool_calls": False,
            "temperature": self.request.get("temperature", 1.0), "top_p": self.request.get("top_p", 1.0),
            "tool_choice": self.request.get("tool_choice", "auto"), "tools": self.request.get("tools") or [],
            "max_output_tokens": self.request.get("max_output_tokens"),
            "previous_response_id": self.request.get("previous_response_id"),
            "reasoning": self.request.get("reasoning"), "text": self.request.get("text"), "metadata": {},
            "store": self.request.get("store", True) is not False, "background": bool(self.request.get("background")),
            "usage": {"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens,
                      "total_tokens": u.total_tokens, "input_tokens_details": {"cached_tokens": u.cached_tokens},
                      "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens}},
        }

    def start(self) -> list[dict[str, Any]]:
        snap = self.response()
        return [self._ev("response.created", response=snap), self._ev("response.in_progress", response=snap)]

    def _close_open(self) -> list[dict[str, Any]]:
        item, self.open = self.open, None
        if item is None:
            return []
        idx = self.items.index(item)
        out = []
        if item["type"] == "reasoning":
            text = item["content"][0]["text"]
            out.append(self._ev("response.reasoning_text.done", item_id=item["id"], output_index=idx,
                                content_index=0, text=text))
        elif item["type"] == "message":
            part = item["content"][0]
            out.append(self._ev("response.output_text.done", item_id=item["id"], output_index=idx,
                                content_index=0, text=part["text"], logprobs=[]))
            out.append(self._ev("response.content_part.done", item_id=item["id"], output_index=idx,
                                content_index=0, part=dict(part)))
        elif item["type"] == "function_call":
            out.append(self._ev("response.function_call_arguments.done", item_id=item["id"], output_index=idx,
                                name=item["name"], arguments=item["arguments"]))
        item["status"] = "completed"
        out.append(self._ev("response.output_item.done", output_index=idx, item=dict(item)))
        return out

    def _open_item(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        out = self._close_open()
        self.items.append(item)
        self.open = item
        idx = len(self.items) - 1
        out.append(self._ev("response.output_item.added", output_index=idx,
                            item={**item, "arguments": ""} if item["type"] == "function_call"
                            else {**item, "content": []}))
        if item["type"] == "message":
            out.append(self._ev("response.content_part.added", item_id=item["id"], output_index=idx,
                                content_index=0, part={"type": "output_text", "text": "", "annotations": []}))
        return out

    def _text(self, kind: str, text: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.open is None or self.open["type"] != kind:
            if kind == "reasoning":
                item = {"type": "reasoning", "id": _id("rs"), "summary": [], "status": "in_progress",
                        "content": [{"type": "reasoning_text", "text": ""}]}
            else:
                item = {"type": "message", "id": _id("msg"), "role": "assistant", "status": "in_progress",
                        "content": [{"type": "output_text", "text": "", "annotations": []}]}
            out += self._open_item(item)
        assert self.open is not None
        self.open["content"][0]["text"] += text
        idx = len(self.items) - 1
        name = "response.reasoning_text.delta" if kind == "reasoning" else "response.output_text.delta"
        extra: dict[str, Any] = {} if kind == "reasoning" else {"logprobs": []}
        out.append(self._ev(name, item_id=self.open["id"], output_index=idx, content_index=0, delta=text, **extra))
        return out if kind == "reasoning" else out + self.builtin.annotate(self.open)

    def _mcp_item(self, call_id: str, result: events.ToolResultEvent | None) -> list[dict[str, Any]]:
        """An MCP call as an ``mcp_call`` item (it ran or was refused) or an ``mcp_approval_request`` (it waits)."""
        from ossagent.agent.server.mcp import call_item

        call = self.mcp_calls.pop(call_id)
        label, name = call.recipient.split(".", 1)
        if result is None:
            item = call_item(label, name, call.arguments, call_id, pending=True)
        else:
            item = call_item(label, name, call.arguments, call_id, None if result.is_error else result.text,
                             result.text if result.is_error else None)
        out = self._close_open()
        self.items.append(item)
        idx = len(self.items) - 1
        out.append(self._ev("response.output_item.added", output_index=idx, item=dict(item)))
        out.append(self._ev("response.output_item.done", output_index=idx, item=dict(item)))
        return out

    def on_event(self, ev: events.Event) -> list[dict[str, Any]]:
        if isinstance(ev, events.ToolCallStarted) and is_builtin(ev.recipient):
            return self._close_open() + self.builtin.started(ev)
        builtin = self.builtin.on_event(ev)
        if builtin is not None:
            return builtin
        if isinstance(ev, events.ReasoningDelta):
            return self._text("reasoning", ev.text)
        if isinstance(ev, events.PreambleDelta | events.FinalDelta):
            return self._text("message", ev.text)
        if isinstance(ev, events.ToolCallStarted):
            out = self._close_open()
            name = ev.recipient.split(".", 1)[1] if ev.recipient.startswith("functions.") else ""
            if name in self.caller:
                item = {"type": "function_call", "id": _id("fc"), "call_id": ev.call_id, "name": name,
                        "arguments": "", "status": "in_progress"}
                self.calls[ev.call_id] = item
                out += self._open_item(item)
            return out
        if isinstance(ev, events.ToolCallDelta) and ev.call_id in self.calls:
            item = self.calls[ev.call_id]
            item["arguments"] += ev.text
            return [self._ev("response.function_call_arguments.delta", item_id=item["id"],
                             output_index=self.items.index(item), delta=ev.text)]
        if isinstance(ev, events.ToolCall) and ev.recipient.split(".", 1)[0] in self.mcp_labels:
            self.mcp_calls[ev.call_id] = ev
        elif isinstance(ev, events.ToolResultEvent) and ev.call_id in self.mcp_calls:
            return self._mcp_item(ev.call_id, ev)
        elif isinstance(ev, events.ToolCall) and ev.call_id in self.calls:
            self.calls[ev.call_id]["arguments"] = ev.arguments
        elif isinstance(ev, events.Usage):
            self.usage = ev
        elif isinstance(ev, events.ErrorEvent):
            self.errors.append(ev)
        elif isinstance(ev, events.Stopped):
            out = self._close_open() + self.builtin.stopped()
            if ev.reason == "approval":
                out += [e for cid in list(self.mcp_calls) for e in self._mcp_item(cid, None)]
            self.incomplete = incomplete_reason(ev.reason)
            self.status = "incomplete" if self.incomplete else ("failed" if ev.reason == "error" else "completed")
            kind = {"incomplete": "response.incomplete", "failed": "response.failed"}.get(self.status,
                                                                                        "response.completed")
            out.append(self._ev(kind, response=self.response()))
            return out
        return []
