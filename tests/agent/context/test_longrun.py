"""A 200-turn tool run in a 4k-token cache: the real engine holds every prompt (so any overflow would raise),
the rule model writes the calls and the summaries, and the answer needs a fact from turn 1 that only the
summaries carried to the end."""

from __future__ import annotations

import re
from typing import Any

from ossagent.agent import prompt as hp
from ossagent.agent.events import Compacted
from ossagent.agent.limits import Limits
from ossagent.agent.loop import Agent

TURNS = 200


def test_200_tool_turns_in_a_4k_cache_keep_a_fact_from_turn_1(
    tiny_model: Any, rule_model: Any, notes: Any, replies: Any, one_thread: None
) -> None:
    from ossagent.model.engine import Engine

    call_reply, final_reply, _ = replies
    engine = Engine.from_pretrained(tiny_model, device="cpu", max_len=4096)

    def policy(prompt: str, turn: int) -> str:
        if turn <= TURNS:
            return call_reply(turn)
        found = re.search(r"vault code is (\d+)", prompt)
        return final_reply(f"The vault code is {found.group(1)}." if found else "I no longer know the code.")

    model = rule_model(policy, engine=engine, context_window=engine.cache.max_len)
    tool = notes(words=30)
    agent = Agent(model, tools=[tool], limits=Limits(max_turns=TURNS + 1))
    stream = agent.stream("Read pages 1 to 200 of the notes, then tell me the vault code.")
    events = list(stream)
    result = stream.result()

    assert result.stop_reason == "final", result.errors
    assert result.text == "The vault code is 4721."
    assert tool.calls == TURNS and model.turns == TURNS + 1
    steps = [e.step for e in events if isinstance(e, Compacted)]
    assert steps.count("summary") == model.summaries >= 5 and "trim" in steps
    assert max(model.peaks) <= 4096 and engine.cache.length <= 4096
    # The last prompt no longer holds page 1: the code reached the answer through the summaries.
    last = model.encoding.decode(hp.render_prompt(agent.config, result.transcript.prompt_messages(),
                                                  model.encoding))
    assert "Page 1. The vault code" not in last and "vault code is 4721" in last
    # The transcript is intact: every tool output in full, the summaries beside the turns they replaced.
    outputs = [m for m in result.transcript if m.role == "tool"]
    assert len(outputs) == TURNS and outputs[0].text.startswith("Page 1. The vault code is 4721. w1x0")
    assert sum(1 for m in result.transcript if m.meta.get("summary")) == model.summaries
    # KV reuse survives compaction: every prefill starts at the first token that differs from what the cache
    # holds, or at the sliding layers' last snapshot before it (every 1,024 positions) when the cut is deeper
    # than their ring keeps; a summary request computes only itself.
    history = engine.cache_stats.history
    assert len(history) == len(model.shared)
    for shared, size, (reused, computed) in zip(model.shared, model.prompts, history, strict=True):
        first_changed = min(shared, size - 1)
        assert first_changed - first_changed % 1024 <= reused <= first_changed and reused + computed == size
    computed = sum(c for _, c in history)
    assert computed < 0.2 * sum(model.prompts), "most prompt tokens must come from the cache"
