"""09 - Two agents working at once on one local model: each has its own conversation, the engine decodes both
in one forward pass per step (continuous batching) and keeps both conversations' KV caches in one pool.

Run: python examples/09_two_agents.py      (uses OSSAGENT_MODEL when set, else the built-in demo model)

No scripted model here: the agents really share the engine. The demo model was trained on the two functions
below, so with it the answers are right; gpt-oss answers the same questions.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from ossagent.agent.backends.factory import build_backend
from ossagent.agent.functions import FunctionTool
from ossagent.agent.loop import Agent, RunResult
from ossagent.agent.settings import Settings

QUESTIONS = ['What is the weather in "Oslo"?', 'How many "backpack" units are in stock?']


def get_weather(city: str) -> str:
    seed = sum(map(ord, city))
    return json.dumps({"city": city, "temperature": seed % 35 - 5, "conditions": ["sunny", "cloudy", "rainy"][seed % 3]})


def check_stock(item: str) -> str:
    return json.dumps({"item": item, "in_stock": sum(map(ord, item)) % 97})


def functions() -> list[FunctionTool]:
    def one(key: str) -> dict[str, object]:
        return {"type": "object", "properties": {key: {"type": "string"}}, "required": [key]}

    return [FunctionTool.from_schema("get_weather", one("city"), "Gets the current weather for a city.",
                                     implementation=get_weather),
            FunctionTool.from_schema("check_stock", one("item"), "Returns how many units of an item are in stock.",
                                     implementation=check_stock)]


def main(model: str | Path | None = None) -> list[RunResult]:
    # slots=2: two sequences decoded together (`ossagent serve` defaults to 4 for a local model)
    backend = build_backend(Settings.from_env(), model=str(model) if model else None, slots=2)
    results: list[RunResult | None] = [None] * len(QUESTIONS)

    def work(i: int) -> None:
        agent = Agent(backend, functions=functions(), reasoning="low", temperature=0.0)
        try:
            results[i] = agent.run(QUESTIONS[i])
        finally:
            agent.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,), name=f"agent-{i}") for i in range(len(QUESTIONS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    done = [r for r in results if r is not None]
    if len(done) != len(QUESTIONS):
        raise RuntimeError("an agent failed (see the traceback above)")
    for question, r in zip(QUESTIONS, done, strict=True):
        calls = ", ".join(f"{m.recipient}({m.text})" for m in r.transcript if m.is_tool_call)
        print(f"{question}\n  -> {calls}\n  {r.text}  [{r.stop_reason}; {r.usage.completion_tokens} tokens]")
    stats = getattr(backend, "cache_stats", None)
    steps = getattr(getattr(backend, "batch", None), "steps", None)
    tokens = sum(r.usage.completion_tokens for r in done)
    print(f"\n{tokens} tokens for both agents in {elapsed:.1f} s"
          + (f"; {steps} engine steps (one forward pass each, over both conversations)" if steps else "")
          + (f"; prompt tokens reused from the pool: {stats.total_reused}, computed: {stats.total_computed}"
             if stats else ""))
    return done


if __name__ == "__main__":
    main()
