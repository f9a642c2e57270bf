"""Agent events -> chat.completions objects and ``chat.completion.chunk`` SSE payloads.

Reasoning goes to ``reasoning_content`` (the field vLLM-style clients read), preambles and the final answer
to ``content``, calls to the caller's functions to ``tool_calls`` with streamed argument deltas. Built-in
tools the server runs itself stay inside the run.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from ossagent.agent import events

FINISH = {"final": "stop", "stop": "stop", "tool_calls": "tool_calls", "max_tokens": "length",
          "max_turns": "length", "timeout": "length", "incomplete": "length", "context": "length", "error": "stop"}


def usage_dict(u: events.Usage) -> dict[str, Any]:
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens, "prompt_tokens_details": {"cached_tokens": u.cached_tokens}}


class ChatFormatter:
    def __init__(self, model: str, caller_functions: set[str]) -> None:
        self.id = "chatcmpl-" + uuid.uuid4().hex
        self.created = int(time.time())
        self.model = model
        self.caller = caller_functions
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[str, dict[str, Any]] = {}  # call_id -> tool_call, in order
        self.finish: str | None = None
        self.usage = events.Usage()
        self.errors: list[events.ErrorEvent] = []

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    def first_chunk(self) -> dict[str, Any]:
        return self._chunk({"role": "assistant", "content": ""})

    def _is_caller(self, recipient: str) -> bool:
        return recipient.startswith("functions.") and recipient.split(".", 1)[1] in self.caller

    def on_event(self, ev: events.Event) -> list[dict[str, Any]]:
        """Fold one event in; return the chunks to stream for it."""
        if isinstance(ev, events.ReasoningDelta):
            self.reasoning.append(ev.text)
            return [self._chunk({"reasoning_content": ev.text})]
        if isinstance(ev, events.PreambleDelta | events.FinalDelta):
            self.content.append(ev.text)
            return [self._chunk({"content": ev.text})]
        if isinstance(ev, events.ToolCallStarted) and self._is_caller(ev.recipient):
            index = len(self.calls)
            name = ev.recipient.split(".", 1)[1]
            self.calls[ev.call_id] = {"index": index, "id": ev.call_id, "type": "function",
                                      "function": {"name": name, "arguments": ""}}
            return [self._chunk({"tool_calls": [{"index": index, "id": ev.call_id, "type": "function",
                                                 "function": {"name": name, "arguments": ""}}]})]
        if isinstance(ev, events.ToolCallDelta) and ev.call_id in self.calls:
            call = self.calls[ev.call_id]
            call["function"]["arguments"] += ev.text
            return [self._chunk({"tool_calls": [{"index": call["index"], "function": {"arguments": ev.text}}]})]
        if isinstance(ev, events.ToolCall) and ev.call_id in self.calls:
            self.calls[ev.call_id]["function"]["arguments"] = ev.arguments
        elif isinstance(ev, events.Usage):
            self.usage = ev
        elif isinstance(ev, events.ErrorEvent):
            self.errors.append(ev)
            if ev.kind in ("backend", "server"):  # the openai client raises on an "error" chunk
                return [{"error": {"message": ev.message, "type": "server_error", "param": None, "code": None}}]
        elif isinstance(ev, events.Stopped):
            self.finish = FINISH.get(ev.reason, "stop")
            if ev.reason != "tool_calls":
                self.calls = {}  # calls the server ran itself are not the caller's business
            return [self._chunk({}, self.finish)]
        return []

    def usage_chunk(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": usage_dict(self.usage)}

    def completion(self) -> dict[str, Any]:
        calls = [{k: v for k, v in c.items() if k != "index"} for c in self.calls.values()]
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content) or None}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if calls:
            message["tool_calls"] = calls
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": self.finish or "stop"}],
                "usage": usage_dict(self.usage)}
