"""Recent chains of thought, keyed by the tool-call ids they led to, for clients that drop them.

gpt-oss reasons before a tool call and needs that reasoning again when the call's result comes back (harmony
keeps the analysis of the turn in progress in the prompt). Many chat clients (the Agents SDK's chat model,
LangChain) send back the assistant's ``tool_calls`` but not its ``reasoning_content``. When a run ends with
calls for the caller, the server remembers the analysis messages that preceded them under each call id;
when a later request carries those calls without any reasoning before them, the remembered reasoning is put
back in its place. A client that sends its own reasoning is left alone.

Memory is bounded: at most ``max_calls`` call ids (least recently used go first) and ``max_chars`` of
reasoning per turn (longer reasoning is not remembered). Nothing is written to disk; a restart forgets.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from ossagent.agent.transcript import Msg

MAX_CALLS = 1024
MAX_CHARS = 64_000


def _call_id(msg: Msg) -> str | None:
    cid = msg.meta.get("call_id") if msg.is_tool_call else None
    return str(cid) if cid else None


class ReasoningMemory:
    def __init__(self, max_calls: int = MAX_CALLS, max_chars: int = MAX_CHARS) -> None:
        self.max_calls = max_calls
        self.max_chars = max_chars
        self._by_call: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._lock = threading.Lock()
        self.restored = 0  # turns whose reasoning was put back (for /metrics and tests)

    def __len__(self) -> int:
        return len(self._by_call)

    def remember(self, messages: Sequence[Msg]) -> None:
        """Keep the reasoning of the last assistant turn under the ids of the calls it ended with."""
        tail: list[Msg] = []
        for msg in reversed(messages):
            if msg.role != "assistant":
                break
            tail.append(msg)
        tail.reverse()
        ids = [cid for m in tail if (cid := _call_id(m))]
        thoughts = tuple(m.text for m in tail if m.channel == "analysis" and not m.is_tool_call and m.text)
        if not ids or not thoughts or sum(map(len, thoughts)) > self.max_chars:
            return
        with self._lock:
            for cid in ids:
                self._by_call[cid] = thoughts
                self._by_call.move_to_end(cid)
            while len(self._by_call) > self.max_calls:
                self._by_call.popitem(last=False)

    def restore(self, messages: Sequence[Msg]) -> list[Msg]:
        """``messages`` with remembered reasoning inserted before each run of assistant messages that ends in
        known calls and carries no reasoning of its own."""
        out: list[Msg] = []
        i = 0
        while i < len(messages):
            if messages[i].role != "assistant":
                out.append(messages[i])
                i += 1
                continue
            j = i
            while j < len(messages) and messages[j].role == "assistant":
                j += 1
            group = list(messages[i:j])
            out += self._thoughts_for(group) + group
            i = j
        return out

    def _thoughts_for(self, group: list[Msg]) -> list[Msg]:
        if any(m.channel == "analysis" and not m.is_tool_call for m in group):
            return []
        with self._lock:
            for m in group:
                cid = _call_id(m)
                if cid is not None and cid in self._by_call:
                    self._by_call.move_to_end(cid)
                    self.restored += 1
                    return [Msg("assistant", t, channel="analysis") for t in self._by_call[cid]]
        return []
