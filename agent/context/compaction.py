"""Shrink a conversation that outgrew its context budget, one step at a time.

1. **trim**: before the recent tail, hide the chains of thought (``analysis`` messages that are not tool
   calls) and cut tool outputs to a head/tail excerpt with a note saying how to read them again;
2. **summary**: replace the oldest turns before the tail by one message the model writes
   (:mod:`ossagent.agent.context.summary`);
3. when that is not enough either, the caller stops the run (``stop_reason == "context"``).

Each step runs only when the previous one did not bring the prompt below the budget's ``target``. The
system and developer messages are rendered from the run's configuration and never touched; the last user
message (the task at hand) and the recent tail stay verbatim. Messages are never deleted: a step marks them
(``meta["compacted"]``), see :func:`ossagent.agent.transcript.shown`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ossagent.agent import prompt as hp
from ossagent.agent.context.budget import ContextBudget, cut_note_compaction, head_tail
from ossagent.agent.context.summary import REQUEST, Summariser, summary_text
from ossagent.agent.events import Compacted, ErrorEvent, Event
from ossagent.agent.transcript import Msg, shown, user

MAX_SUMMARY_ROUNDS = 4


@dataclass
class Outcome:
    """What one compaction did: the new message list, its events, and the tokens its summary calls cost."""

    messages: list[Msg]
    events: list[Event] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Compactor:
    def __init__(self, config: hp.PromptConfig, encoding: Any, budget: ContextBudget,
                 summarise: Summariser | None = None) -> None:
        if budget.window is None:
            raise ValueError("compaction needs a context window")
        self.config, self.encoding, self.budget, self.summarise = config, encoding, budget, summarise
        self.window = budget.window
        self.target = int(budget.target or 0)
        self.excerpt = max(48, min(160, self.target // 16))  # tokens an old tool output keeps
        self.summary_tokens = max(64, min(1024, self.window // 8))

    # ------------------------------------------------------------------------------------------ sizes
    def prompt(self, messages: Sequence[Msg]) -> list[int]:
        return hp.render_prompt(self.config, [m for m in map(shown, messages) if m is not None], self.encoding)

    def _size(self, msg: Msg) -> int:
        view = shown(msg)
        return 0 if view is None else len(hp.render_message(view, self.encoding))

    def tail_start(self, messages: Sequence[Msg]) -> int:
        """Index of the first message of the recent tail that stays verbatim: at least the last round (the
        model's messages since the previous tool answer, user message or final answer, and what answers
        them), then as many recent messages as fit in a third of the target, never splitting a call from its
        answer."""
        last = len(messages) - 1
        while last > 0 and not _ends_round(messages[last - 1]):
            last -= 1
        budget, used, i = self.target // 3, 0, len(messages)
        while i > 0:
            size = self._size(messages[i - 1])
            if used + size > budget and i <= last and not _answers(messages, i):
                break
            used += size
            i -= 1
        return i

    # ------------------------------------------------------------------------------------------ steps
    def compact(self, messages: Sequence[Msg]) -> Outcome:
        original = list(messages)
        out = Outcome(list(original))
        before = len(self.prompt(original))
        tail = self.tail_start(original)
        trimmed, n = self.trim(original, tail)
        if n:
            after = len(self.prompt(trimmed))
            out.events.append(Compacted("trim", before, after, n, self.window))
            out.messages, before = trimmed, after
        # The first summary reads the turns as the last prompt showed them (untrimmed: more to keep, and the
        # engine still holds their keys, so only the request is computed); later rounds read the result.
        source: list[Msg] | None = original
        for _ in range(MAX_SUMMARY_ROUNDS):
            if before <= self.target or self.summarise is None:
                break
            previous = out.messages
            done = self._summary(out, tail, source or out.messages)
            if done is None:
                break
            after = len(self.prompt(out.messages))
            if after >= before:  # the summary is longer than what it would replace: keep the turns
                out.messages = previous
                break
            source, tail = None, tail + 1  # the summary message was inserted before the tail
            out.events.append(Compacted("summary", before, after, done, self.window))
            before = after
        return out

    def trim(self, messages: Sequence[Msg], tail: int) -> tuple[list[Msg], int]:
        """Step 1 on the messages before ``tail``; returns the new list and how many messages it changed."""
        out, changed = list(messages), 0
        for i, m in enumerate(messages[:tail]):
            if m.meta.get("compacted") or m.meta.get("summary"):
                continue
            if m.role == "assistant" and m.channel == "analysis" and not m.is_tool_call:
                out[i] = m.with_meta(compacted={"step": "trim", "hidden": True})
                changed += 1
            elif m.role == "tool":
                text, cut = head_tail(m.text, self.excerpt, self.encoding,
                                      lambda c, r=m.name or "the tool": cut_note_compaction(c, r))
                if cut:
                    out[i] = m.with_meta(compacted={"step": "trim", "text": text, "cut_tokens": cut})
                    changed += 1
        return out, changed

    def _summary(self, out: Outcome, tail: int, source: Sequence[Msg]) -> int | None:
        """Step 2 once: summarise the oldest visible messages of ``source`` (``out.messages`` before this
        compaction's trim, or the same list) before ``tail``, the task excepted; returns how many messages
        the summary replaced, or None when there was nothing to summarise or it failed."""
        msgs = out.messages
        chosen = self._summary_range(source, tail)
        if not chosen:
            return None
        end = chosen[-1] + 1
        request = [m for m in map(shown, source[:end]) if m is not None] + [user(REQUEST)]
        prompt = hp.render_prompt(self.config, request, self.encoding)
        room = min(self.summary_tokens, self.window - len(prompt))
        result = self.summarise(request, prompt, room) if self.summarise and room >= 32 else None
        if result is None:
            return None
        out.prompt_tokens += len(prompt)
        out.completion_tokens += result.completion_tokens
        if result.summary is None:
            out.events.append(ErrorEvent("model", f"the summary for compaction failed: {result.error}"))
            return None
        sid = 1 + sum(1 for m in msgs if m.meta.get("summary"))
        mark, hide = {"step": "summary", "hidden": True, "summary": sid}, set(chosen)
        new = [m.with_meta(compacted=mark) if i in hide else m for i, m in enumerate(msgs)]
        summary = user(summary_text(result.summary, len(chosen))).with_meta(
            summary={"id": sid, "replaces": len(chosen), "content": result.summary})
        new.insert(chosen[0], summary)
        out.messages = new
        return len(chosen)

    def _summary_range(self, msgs: Sequence[Msg], tail: int) -> list[int]:
        """Indices of the oldest visible messages before ``tail`` whose summary request fits the window."""
        pinned = max((i for i, m in enumerate(msgs[:tail]) if m.role == "user" and not m.meta.get("summary")
                      and shown(m) is not None), default=-1)
        room = self.window - self.summary_tokens - len(hp.render_prompt(self.config, [user(REQUEST)],
                                                                          self.encoding))
        chosen: list[int] = []
        used = 0
        for i, m in enumerate(msgs[:tail]):
            size = self._size(m)
            if size == 0:
                continue
            used += size
            if used > room:
                break
            if i != pinned:
                chosen.append(i)
        while chosen and msgs[chosen[-1]].is_tool_call and chosen[-1] + 1 < tail:  # keep a call with its answer
            chosen.pop()
        if all(msgs[i].meta.get("summary") for i in chosen):
            return []  # a summary of a summary alone would not be shorter
        return chosen


def _ends_round(msg: Msg) -> bool:
    return msg.role in ("tool", "user") or (msg.role == "assistant" and msg.channel == "final")


def _answers(messages: Sequence[Msg], i: int) -> bool:
    """Whether message ``i`` is a tool's answer (so the message before it is the call it answers)."""
    return messages[i].role == "tool"
