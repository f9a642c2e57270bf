"""Per-step cost of constrained decoding: what the hook adds to each decode step of the engine.

    .venv/bin/python benchmarks/constrain_overhead.py [--turns 200] [--step-ms 5.0 ...]

Replays realistic assistant turns (free analysis text, then a function call with JSON arguments, or a final
answer in a response format) token by token through :class:`ossagent.agent.constrain.ConstrainedHook`, the
way the engine calls it, and times:

* ``hook.step``: consuming the new token(s), the fast-forward check, and the bool mask when there is one;
* the engine's side of a mask: fitting it to the vocabulary and ``masked_fill`` on fp32 CPU logits (the
  same two operations as ``ossagent.model.engine.sample``).

Per turn, the overhead is the sum of both over the turn divided by the decode steps the engine runs (a run of
forced tokens is one step: it is fed as one chunk), and the table relates it to decode-step times given with
``--step-ms`` (defaults: a 2-core CPU at its memory bound, and an H200 eager and fused, from
../shared/docs/cpu-performance.md). Also shown: decode steps saved by fast-forward.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import numpy as np

SCHEMAS: dict[str, dict[str, Any]] = {
    "get_weather": {"type": "object", "properties": {
        "location": {"type": "string", "maxLength": 60}, "unit": {"enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 14}}, "required": ["location"]},
    "search_flights": {"type": "object", "properties": {
        "origin": {"type": "string", "pattern": "^[A-Z]{3}$"}, "destination": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "date": {"type": "string", "format": "date"},
        "passengers": {"type": "object", "properties": {"adults": {"type": "integer", "minimum": 1, "maximum": 9},
                                                        "children": {"type": "integer", "minimum": 0}},
                       "required": ["adults"]},
        "cabin": {"enum": ["economy", "business"]}}, "required": ["origin", "destination", "date", "passengers"]},
    "send_email": {"type": "object", "properties": {
        "to": {"type": "array", "items": {"type": "string", "format": "email"}, "minItems": 1},
        "subject": {"type": "string"}, "body": {"type": "string"}}, "required": ["to", "subject", "body"]},
}
CALLS = [
    ("get_weather", '{"location":"Lisbon, Portugal","unit":"celsius","days":3}'),
    ("search_flights", '{"origin":"BER","destination":"LIS","date":"2026-12-18","passengers":{"adults":2},'
                       '"cabin":"economy"}'),
    ("send_email", '{"to":["ana@example.com"],"subject":"Trip","body":"Flights are booked for the 18th; '
                   'the weather should be mild. See you there!"}'),
]
ANALYSIS = ("The user wants a flight to Lisbon and the weather there. I should look up the forecast first, then "
            "search flights for two adults around the 18th of December, and finally email Ana with the plan. "
            "Let me call the weather tool with the city and three days of forecast.")
FINAL = '{"city":"Lisbon","temperature_c":16.5,"conditions":["sunny","windy"],"advice":"Bring a light jacket."}'
ANSWER_SCHEMA = {"type": "object", "properties": {
    "city": {"type": "string"}, "temperature_c": {"type": "number", "minimum": -90, "maximum": 60},
    "conditions": {"type": "array", "items": {"type": "string"}, "maxItems": 5}, "advice": {"type": "string"}},
    "required": ["city", "temperature_c", "conditions", "advice"]}


def replay(
    hook: Any, tokens: list[int], vocab: int, logits: Any
) -> tuple[float, float, int, int, dict[str, list[float]]]:
    """Run the hook over ``tokens`` as the engine would.

    Returns (hook seconds, engine mask-apply seconds, decode steps, forced tokens, hook µs per part)."""
    total = apply = 0.0
    steps = forced_total = 0
    parts: dict[str, list[float]] = {"free": [], "header": [], "json": []}
    i = 0
    while i < len(tokens):
        part = hook.part
        t0 = time.perf_counter()
        action = hook.step(tokens[:i])
        t1 = time.perf_counter()
        if action.mask is not None:  # the engine's side: fit to the vocabulary, mask the logits
            m = action.mask.reshape(-1)[:vocab]
            _ = logits.masked_fill(~m, float("-inf"))
        apply += time.perf_counter() - t1
        total += t1 - t0
        parts[part].append((t1 - t0) * 1e6)
        steps += 1
        if action.stop:
            break
        if action.forced:
            assert tokens[i:i + len(action.forced)] == action.forced, "replayed turn differs from forced tokens"
            i += len(action.forced)
            forced_total += len(action.forced)
            continue
        if action.mask is not None:
            assert bool(action.mask[tokens[i]]), "replayed token not allowed"
        i += 1
    return total, apply, steps, forced_total, parts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--turns", type=int, default=120)
    ap.add_argument("--step-ms", type=float, nargs="*", default=[160.0, 5.0, 1.3],
                    help="decode-step times to relate to (ms)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    from ossagent.agent.constrain import TurnConstraints
    from ossagent.agent.functions import Functions, FunctionTool, ResponseFormat
    from ossagent.model.tokenizer import o200k_harmony

    torch.set_num_threads(1)
    enc = o200k_harmony()
    vocab = 201_088
    fns = Functions(FunctionTool.from_schema(n, s) for n, s in SCHEMAS.items())
    rf = ResponseFormat.from_schema("weather_answer", ANSWER_SCHEMA)
    configs = {
        "auto, call": TurnConstraints(fns, encoding=enc, vocab_size=vocab, tool_choice="auto"),
        "required, call": TurnConstraints(fns, encoding=enc, vocab_size=vocab, tool_choice="required"),
        "auto + format, final": TurnConstraints(fns, encoding=enc, vocab_size=vocab, response_format=rf),
    }
    logits = torch.randn(vocab)
    rng = random.Random(args.seed)
    rows = []
    for label, constraints in configs.items():
        per_step, per_apply, saved = [], [], []
        parts: dict[str, list[float]] = {"free": [], "header": [], "json": []}
        for _ in range(args.turns):
            words = ANALYSIS.split(" ")
            analysis = " ".join(words[: rng.randrange(10, len(words) + 1)])
            text = f"<|channel|>analysis<|message|>{analysis}<|end|><|start|>assistant"
            if label.endswith("final"):
                text += f"<|channel|>final<|message|>{FINAL}<|return|>"
            else:
                name, args_json = rng.choice(CALLS)
                text += f"<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>{args_json}<|call|>"
            tokens = enc.encode(text, allowed_special="all")
            secs, apply, steps, _forced, p = replay(constraints.hook(), tokens, vocab, logits)
            per_step.append(secs / steps * 1e6)
            per_apply.append(apply / steps * 1e6)
            saved.append(1 - steps / len(tokens))
            for k, v in p.items():
                parts[k] += v
        rows.append((label, per_step, per_apply, saved, parts))

    print(f"Constraint overhead per decode step ({args.turns} replayed turns per row, 1 thread, "
          f"vocab {vocab})\n")
    head = " | ".join(f"hook+apply % of {s:g} ms" for s in args.step_ms)
    print(f"| turn | hook µs / step (mean) | hook p50 free / header / json µs | hook p99 json µs "
          f"| engine apply µs / step (CPU) | steps saved by ff | {head} |")
    print("|---|---:|---|---:|---:|---:|" + "---:|" * len(args.step_ms))
    for label, per_step, per_apply, saved, parts in rows:
        mean, app = statistics.fmean(per_step), statistics.fmean(per_apply)
        p50 = " / ".join(f"{np.percentile(parts[k], 50):.0f}" if parts[k] else "-" for k in ("free", "header", "json"))
        p99 = np.percentile(parts["json"], 99) if parts["json"] else float("nan")
        rel = " | ".join(f"{100 * (mean + app) / (s * 1000):.2f}%" for s in args.step_ms)
        print(f"| {label} | {mean:.0f} | {p50} | {p99:.0f} | {app:.0f} | {100 * statistics.fmean(saved):.0f}% "
              f"| {rel} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
