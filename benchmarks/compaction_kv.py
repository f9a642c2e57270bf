"""Tokens the engine computes per compaction: the 200-turn notebook run of tests/agent/context (a tiny random
gpt-oss, a 4k-token cache, the rule model writing calls and summaries) with the engine's cache statistics
read around every compaction.

For each compaction: the summary call's prefill (it continues the cached conversation, so only the request
should be computed) and the next prompt's prefill (computed from the first changed token, or from the sliding
layers' last ring snapshot before it when the cut is deeper than their ring keeps). A normal turn computes
only the new tool answer. Engine variants: the default (rollback 2,048, snapshot every 1,024), a ring as
long as the window (every cut exact: what a compaction costs when nothing before the first changed token is
recomputed), and the BatchEngine's cache pool (the summary call forks the conversation's cache).

    .venv/bin/python benchmarks/compaction_kv.py [--turns 200] [--window 4096] [--rows 8]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ossagent.agent.events import Compacted, ToolResultEvent
from ossagent.agent.limits import Limits
from ossagent.agent.loop import Agent
from ossagent.model.batch import BatchEngine
from ossagent.model.checkpoint_writer import write_checkpoint
from ossagent.model.config import GptOssConfig
from ossagent.model.engine import Engine

HELPERS = Path(__file__).resolve().parents[1] / "tests" / "agent" / "context" / "conftest.py"


def helpers() -> Any:
    """The rule model and notebook the 200-turn test uses (tests/agent/context/conftest.py)."""
    spec = importlib.util.spec_from_file_location("longrun_helpers", HELPERS)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["longrun_helpers"] = mod
    spec.loader.exec_module(mod)
    return mod


def tiny_checkpoint(folder: Path) -> Path:
    config = GptOssConfig(num_hidden_layers=2, num_experts=4, experts_per_token=2, vocab_size=201088,
                          hidden_size=64, intermediate_size=64, head_dim=16, num_attention_heads=4,
                          num_key_value_heads=2, sliding_window=8)
    write_checkpoint(folder, config, layout="hf", experts="mxfp4", seed=0)
    return folder


def run(h: Any, folder: Path, turns: int, window: int, pool: bool = False, **engine_kw: int) -> dict[str, Any]:
    engine: Any = Engine.from_pretrained(folder, device="cpu", max_len=window, **engine_kw)
    if pool:
        engine = BatchEngine(engine, kv_memory=64 * 2**20, max_batch=1)

    def policy(prompt: str, turn: int) -> str:
        return h.call_reply(turn) if turn <= turns else h.final_reply("4721" if "vault code is 4721" in prompt
                                                                      else "?")

    model = h.RuleModel(policy, engine=engine, context_window=window)
    agent = Agent(model, tools=[h.Notes(words=30)], limits=Limits(max_turns=turns + 1))
    hist = engine.cache_stats.history
    groups: list[dict[str, Any]] = []
    mark = 0
    started = time.perf_counter()
    for ev in agent.stream("Read pages 1 to 200 of the notes, then tell me the vault code."):
        if isinstance(ev, ToolResultEvent):
            mark = len(hist)
        elif isinstance(ev, Compacted):
            if not groups or groups[-1]["at"] != len(hist):
                groups.append({"at": len(hist), "summaries": hist[mark:len(hist)], "steps": [],
                               "before": ev.tokens_before})
            groups[-1]["steps"].append(ev.step)
            groups[-1]["after"] = ev.tokens_after
    seconds = time.perf_counter() - started
    for g in groups:
        g["next"] = hist[g["at"]]
        g["shared"] = model.shared[g["at"]]
    after = {g["at"] for g in groups}
    summary_calls = {i for g in groups for i in range(g["at"] - len(g["summaries"]), g["at"])}
    normal = [c for i, (_, c) in enumerate(hist) if i and i not in after and i not in summary_calls]
    return {"groups": groups, "normal": normal, "seconds": seconds, "history": hist, "prompts": model.prompts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=200)
    ap.add_argument("--window", type=int, default=4096)
    ap.add_argument("--rows", type=int, default=8, help="compactions listed one by one (default run)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    h = helpers()
    with tempfile.TemporaryDirectory() as tmp:
        folder = tiny_checkpoint(Path(tmp) / "tiny")
        variants: dict[str, dict[str, Any]] = {
            "Engine, default (rollback 2048, snapshot 1024)": {},
            f"Engine, rollback {args.window} (every cut exact)": {"rollback": args.window},
            "BatchEngine (cache pool, 64 MiB)": {"pool": True}}
        results = {name: run(h, folder, args.turns, args.window, **kw) for name, kw in variants.items()}
    shared = [g["shared"] for g in next(iter(results.values()))["groups"]]
    for r in results.values():  # the prompts are the same in every variant; a pool does not say what it held
        for g, s in zip(r["groups"], shared, strict=False):
            g["shared"] = s if g["shared"] < 0 else g["shared"]
    first = next(iter(results.values()))
    print(f"\n{args.turns} tool turns, {args.window}-token cache, default engine: the first compactions\n")
    print("| # | steps | prompt before -> after | summary prefill: reused / computed | next prompt: first changed "
          "token | reused | computed |")
    print("|---|---|---|---|---|---|---|")
    for i, g in enumerate(first["groups"][: args.rows], 1):
        s = " + ".join(f"{r} / {c}" for r, c in g["summaries"]) or "none"
        reused, computed = g["next"]
        print(f"| {i} | {'+'.join(g['steps'])} | {g['before']} -> {g['after']} | {s} | {g['shared']} | {reused} | "
              f"{computed} |")
    print("\n| engine | compactions | computed per compaction (summary + next prompt), mean | snapshot loss, mean "
          "| normal turn computed, mean | all prefills: computed / prompt tokens | run s |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        groups = r["groups"]
        per = [sum(c for _, c in g["summaries"]) + g["next"][1] for g in groups]
        loss = [min(g["shared"], g["next"][0] + g["next"][1] - 1) - g["next"][0] for g in groups]
        total = sum(c for _, c in r["history"])
        print(f"| {name} | {len(groups)} | {statistics.mean(per):,.0f} | {statistics.mean(loss):,.0f} | "
              f"{statistics.mean(r['normal']):,.0f} | {total:,} / {sum(r['prompts']):,} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
