"""Message model, transcript JSON, built-in tool texts, response formats, render errors, stop tokens."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ossagent.agent.harmony import (
    Author,
    Conversation,
    DeveloperContent,
    FunctionDescription,
    HarmonyRenderer,
    Message,
    ReasoningEffort,
    RenderError,
    Role,
    SystemContent,
    TextContent,
    ToolDescription,
    TranscriptError,
    browser_namespace,
    python_namespace,
)


@pytest.fixture(scope="module")
def renderer(enc: Any) -> HarmonyRenderer:
    return HarmonyRenderer(enc)


@pytest.mark.parametrize("name", ["browser", "python"])
def test_builtin_namespaces_are_the_trained_texts(name: str, harmony_encoding: Any) -> None:
    import openai_harmony as oh

    ref = getattr(oh.ToolNamespaceConfig, name)()
    ours = browser_namespace() if name == "browser" else python_namespace()
    assert (ours.name, ours.description) == (ref.name, ref.description)
    assert [(f.name, f.description, f.parameters) for f in ours.functions] == [
        (t.name, t.description, t.parameters) for t in ref.tools]


def test_stop_tokens_match_reference(renderer: HarmonyRenderer, harmony_encoding: Any) -> None:
    assert sorted(renderer.stop_tokens()) == sorted(harmony_encoding.stop_tokens())
    assert sorted(renderer.stop_tokens_for_assistant_actions()) == sorted(
        harmony_encoding.stop_tokens_for_assistant_actions())


def sample_conversation() -> Conversation:
    sys = (SystemContent.new().with_reasoning_effort("High").with_conversation_start_date("2025-01-02")
           .with_browser_tool().with_python_tool())
    dev = (DeveloperContent.new().with_instructions("Be terse.")
           .with_function_tools([FunctionDescription("f", "does f", {"type": "object", "properties": {}})])
           .with_response_format("answer", {"type": "object"}, "The answer."))
    return Conversation.from_messages([
        Message.from_role_and_content(Role.SYSTEM, sys),
        Message.from_role_and_content(Role.DEVELOPER, dev),
        Message(Author(Role.USER, "alice"), [TextContent("a"), TextContent("b")]),
        Message.from_role_and_content(Role.ASSISTANT, "{}").with_channel("commentary").with_recipient("functions.f")
        .with_content_type("<|constrain|>json"),
        Message.tool_result("functions.f", "ok", channel="commentary"),
    ])


def test_transcript_round_trip() -> None:
    conv = sample_conversation()
    again = Conversation.from_json(conv.to_json())
    assert again == conv
    for m in conv:
        assert Message.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    assert conv.messages[0].content[0].reasoning_effort is ReasoningEffort.HIGH  # type: ignore[union-attr]


def test_transcript_is_the_reference_serde_form(renderer: HarmonyRenderer, harmony_encoding: Any) -> None:
    """Our JSON (efforts aside, which serde spells "High") is what openai-harmony's core reads."""
    conv = sample_conversation()
    conv.messages[1].content[0].response_formats = []  # type: ignore[union-attr]
    conv.messages[2].author.name = None
    payload = conv.to_dict()
    payload["messages"][0]["content"][0]["reasoning_effort"] = "High"
    expected = harmony_encoding._inner.render_conversation(conversation_json=json.dumps(payload),
                                                           config={"auto_drop_analysis": True})
    assert renderer.render_conversation(conv) == expected


def test_transcript_shortcuts_and_errors() -> None:
    msg = Message.from_dict({"role": "user", "content": "plain string"})
    assert msg.text == "plain string"
    assert Message.from_dict({"role": "system", "content": [{"type": "system_content"}]}).content[0] == \
        SystemContent(None, None, None, None, None, None)
    with pytest.raises(TranscriptError, match="role must be one of"):
        Message.from_dict({"role": "robot", "content": []})
    with pytest.raises(TranscriptError, match="unknown content type"):
        Message.from_dict({"role": "user", "content": [{"type": "image"}]})
    with pytest.raises(TranscriptError, match="reasoning effort"):
        Message.from_dict({"role": "system", "content": [{"type": "system_content", "reasoning_effort": "max"}]})
    with pytest.raises(TranscriptError, match="not JSON"):
        Conversation.from_json("{")
    with pytest.raises(TranscriptError, match="must be a string"):
        Message.from_dict({"role": "user", "content": "x", "channel": 3})


def test_render_errors_are_the_callers(renderer: HarmonyRenderer, harmony_encoding: Any) -> None:
    with pytest.raises(RenderError, match="tool's name"):
        renderer.render(Message.from_role_and_content(Role.TOOL, "x"))
    with pytest.raises(RenderError, match="SystemContent may only appear"):
        renderer.render(Message.from_role_and_content(Role.USER, SystemContent()))
    with pytest.raises(RenderError, match="DeveloperContent may only appear"):
        renderer.render(Message.from_role_and_content(Role.SYSTEM, DeveloperContent()))
    with pytest.raises(RuntimeError, match="Tools should have a name"):  # the reference refuses it too
        harmony_encoding._inner.render(message_json=json.dumps({"role": "tool", "content": []}),
                                       render_options={"conversation_has_function_tools": False})


RESPONSE_CASES = [
    (None, None, [("a", {"type": "object"}, None)]),
    ("Help.", None, [("shopping_list", {"properties": {"items": {"type": "array"}}, "type": "object"},
                      "A list.\nTwo lines.")]),
    ("Help.", [FunctionDescription("f", "", None)], [("x", {"enum": ["é", 1.5e300, None]}, ""),
                                                      ("y", {"type": "string"}, "Y")]),
]


@pytest.mark.parametrize(("instructions", "functions", "formats"), RESPONSE_CASES)
def test_response_formats_follow_the_reference_body(
    renderer: HarmonyRenderer, harmony_encoding: Any, instructions: str | None,
    functions: list[FunctionDescription] | None, formats: list[tuple[str, dict[str, Any], str | None]],
) -> None:
    """openai-harmony 0.0.8 has no response formats: ours = its developer body + "\\n\\n" + the block (§3.6)."""
    dev = DeveloperContent(instructions)
    if functions:
        dev.with_function_tools(functions)
    msg = Message.from_role_and_content(Role.DEVELOPER, dev)
    ref_body = harmony_encoding.decode(harmony_encoding._inner.render(
        message_json=json.dumps(msg.to_dict()), render_options={"conversation_has_function_tools": False}))
    ref_body = ref_body.removeprefix("<|start|>developer<|message|>").removesuffix("<|end|>")
    blocks = ["# Response Formats"]
    for name, schema, desc in formats:
        dev.with_response_format(name, schema, desc)
        comment = "".join(f"// {line}\n" for line in (desc or "").splitlines())
        blocks.append(f"## {name}\n\n{comment}{json.dumps(schema, separators=(',', ':'), ensure_ascii=False)}")
    body = "\n\n".join([*([ref_body] if ref_body else []), "\n\n".join(blocks)])
    assert renderer.render(msg) == [200006, 77944, 200008, *renderer.encode_text(body), 200007]


def test_non_finite_numbers_are_a_clear_error(renderer: HarmonyRenderer) -> None:
    fn = FunctionDescription("f", "", {"type": "object", "properties": {"x": {"default": float("inf")}}})
    dev = Message.from_role_and_content(Role.DEVELOPER, DeveloperContent.new().with_function_tools([fn]))
    with pytest.raises(RenderError, match=r"functions\.f: parameters are not JSON"):
        renderer.render(dev)
    dev.content[0].with_response_format("r", {"const": float("nan")})  # type: ignore[union-attr]
    dev.content[0].tools = None  # type: ignore[union-attr]
    with pytest.raises(RenderError, match="response format 'r'"):
        renderer.render(dev)


def test_system_content_helpers() -> None:
    sys = SystemContent.new().with_required_channels(["analysis", "final"]).with_reasoning_effort(None)
    assert sys.valid_channels == ["analysis", "final"] and sys.reasoning_effort is None
    assert sys.with_channel_config(None).valid_channels == []
    ns = ToolDescription("mcp", "An MCP server.", (FunctionDescription("ping"),))
    assert sys.with_tools(ns).tools == {"mcp": ns}


def test_tool_result_for_a_call(renderer: HarmonyRenderer) -> None:
    call = Message.from_role_and_content(Role.ASSISTANT, "print(1)").with_channel("analysis").with_recipient("python")
    result = Message.tool_result_for(call, "1\n")
    assert (result.author, result.channel, result.recipient) == (Author(Role.TOOL, "python"), "analysis", "assistant")
    assert renderer.decode(renderer.render(result)) == "<|start|>python to=assistant<|channel|>analysis<|message|>1\n<|end|>"
    with pytest.raises(ValueError, match="not a tool call"):
        Message.tool_result_for(Message.from_role_and_content(Role.USER, "x"), "y")


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_bad_transcripts_raise_transcript_error_only(renderer: HarmonyRenderer, data: st.DataObject) -> None:
    """A transcript with one subtree replaced by random JSON loads and renders, or fails with our errors."""
    raw = sample_conversation().to_dict()
    paths = _paths(raw)
    path = data.draw(st.sampled_from(paths[1:]))
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = data.draw(_json)
    try:
        conv = Conversation.from_dict(raw)
    except TranscriptError:
        return
    with contextlib.suppress(RenderError):
        tokens = renderer.render_conversation(conv)
        assert tokens[:1] == ([200006] if conv.messages else [])
