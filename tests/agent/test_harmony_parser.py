"""The streaming parser: header forms, tolerance (problems as data), UTF-8 hold-back, never raising."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ossagent.agent.harmony import (
    CALL,
    CHANNEL,
    CONSTRAIN,
    END,
    MESSAGE,
    RETURN,
    START,
    Author,
    ContentDelta,
    MessageDone,
    MessageStart,
    Problem,
    Role,
    StreamParser,
    parse_completion,
)
from ossagent.model.tokenizer import o200k_harmony

ENC = o200k_harmony()

def t(text: str) -> list[int]:
    return ENC.encode_ordinary(text)

def kinds(problems: list[Problem]) -> list[str]:
    return [p.kind for p in problems]

def test_tool_call_with_recipient_after_channel() -> None:
    """The form gpt-oss writes: <|channel|>commentary to=functions.x <|constrain|>json."""
    tokens = [CHANNEL, *t("commentary to=functions.get_weather"), CONSTRAIN, *t("json"), MESSAGE,
              *t('{"location": "Paris"}'), CALL]
    parser = StreamParser(ENC)
    events = parser.process_all(tokens)
    assert parser.problems == []
    (msg,) = parser.messages
    assert (msg.author, msg.channel, msg.recipient, msg.content_type, msg.text) == (
        Author(Role.ASSISTANT), "commentary", "functions.get_weather", "<|constrain|>json", '{"location": "Paris"}')
    assert isinstance(events[0], MessageStart) and events[0].recipient == "functions.get_weather"
    assert isinstance(events[-1], MessageDone) and events[-1].stop_token == CALL
    assert "".join(e.text for e in events if isinstance(e, ContentDelta)) == msg.text

def test_recipient_before_channel_and_space_after_constrain() -> None:
    tokens = [*t(" to=browser.search"), CHANNEL, *t("analysis "), CONSTRAIN, *t(" json"), MESSAGE, *t("{}"), CALL]
    msgs, problems = parse_completion(tokens, encoding=ENC)
    assert problems == []
    assert (msgs[0].recipient, msgs[0].channel, msgs[0].content_type) == ("browser.search", "analysis",
                                                                          "<|constrain|>json")

def test_bare_content_type_is_not_a_recipient() -> None:
    tokens = [CHANNEL, *t("analysis to=python code"), MESSAGE, *t("print(1)"), CALL]
    msgs, _ = parse_completion(tokens, encoding=ENC)
    assert (msgs[0].recipient, msgs[0].content_type) == ("python", "code")
    msgs, _ = parse_completion([CHANNEL, *t("final json"), MESSAGE, *t("{}"), RETURN], encoding=ENC)
    assert (msgs[0].recipient, msgs[0].content_type) == (None, "json")

def test_several_messages_and_current_fields_mid_header() -> None:
    parser = StreamParser(ENC)
    parser.process_all([CHANNEL, *t("analysis"), MESSAGE, *t("thinking"), END, START, *t("assistant")])
    assert parser.current_channel is None and parser.state == "header"
    parser.process_all([CHANNEL, *t("commentary to=functions.lookup")])
    assert (parser.current_channel, parser.current_recipient) == ("commentary", "functions.lookup")
    parser.process_all([MESSAGE, *t("{}")])
    assert parser.current_content == "{}" and parser.current_content_type is None
    parser.process(CALL)
    parser.finish()
    assert [m.channel for m in parser.messages] == ["analysis", "commentary"]
    assert parser.problems == []

def test_role_none_tool_and_named_authors() -> None:
    tokens = [START, *t("functions.get_weather to=assistant"), CHANNEL, *t("commentary"), MESSAGE, *t("21C"), END,
              START, *t("user:alice"), MESSAGE, *t("hi"), END, START, *t("python"), MESSAGE, *t("out"), END]
    msgs, problems = parse_completion(tokens, role=None, encoding=ENC)
    assert problems == []
    assert [(m.author.role, m.author.name, m.recipient) for m in msgs] == [
        (Role.TOOL, "functions.get_weather", "assistant"), (Role.USER, "alice", None), (Role.TOOL, "python", None)]

def test_missing_channel_is_reported_and_message_kept() -> None:
    msgs, problems = parse_completion([MESSAGE, *t("Hello"), RETURN], encoding=ENC)
    assert msgs[0].text == "Hello" and msgs[0].channel is None
    assert kinds(problems) == ["missing_channel"]

def test_unknown_channel_is_reported_when_channels_are_given() -> None:
    parser = StreamParser(ENC, valid_channels=["analysis", "commentary", "final"])
    parser.process_all([CHANNEL, *t("thoughts"), MESSAGE, *t("x"), END])
    assert parser.messages[0].channel == "thoughts" and kinds(parser.problems) == ["unknown_channel"]
    assert parser.problems[0].to_dict()["kind"] == "unknown_channel"


def test_call_without_recipient() -> None:
    msgs, problems = parse_completion([CHANNEL, *t("commentary"), MESSAGE, *t("{}"), CALL], encoding=ENC)
    assert msgs[0].text == "{}" and kinds(problems) == ["call_without_recipient"]


def test_malformed_header_keeps_fields_and_text() -> None:
    tokens = [CHANNEL, *t("final to=a to=b extra words"), MESSAGE, *t("answer"), END]
    msgs, problems = parse_completion(tokens, encoding=ENC)
    assert (msgs[0].channel, msgs[0].recipient, msgs[0].text) == ("final", "a", "answer")
    assert kinds(problems) == ["malformed_header"] and "to=b" in problems[0].message

def test_empty_channel_name() -> None:
    msgs, problems = parse_completion([CHANNEL, MESSAGE, *t("x"), END], encoding=ENC)
    assert msgs[0].text == "x" and "malformed_header" in kinds(problems)

def test_stop_token_inside_header_keeps_the_words() -> None:
    msgs, problems = parse_completion([CHANNEL, *t("final The answer is 4"), RETURN], encoding=ENC)
    assert (msgs[0].channel, msgs[0].text) == ("final", "The answer is 4")
    assert kinds(problems) == ["malformed_header"]

def test_stray_specials_in_content_are_kept_as_text() -> None:
    tokens = [CHANNEL, *t("final"), MESSAGE, *t("a"), CHANNEL, *t("b"), 200100, *t("c"), END]
    msgs, problems = parse_completion(tokens, encoding=ENC)
    assert msgs[0].text == "a<|channel|>b<|reserved_200100|>c"
    assert kinds(problems) == ["stray_special", "stray_special"]

def test_start_inside_content_ends_the_message() -> None:
    tokens = [CHANNEL, *t("analysis"), MESSAGE, *t("think"), START, *t("assistant"), CHANNEL, *t("final"),
              MESSAGE, *t("done"), RETURN]
    msgs, problems = parse_completion(tokens, encoding=ENC)
    assert [(m.channel, m.text) for m in msgs] == [("analysis", "think"), ("final", "done")]
    assert kinds(problems) == ["stray_special"]

def test_truncated_content_and_header() -> None:
    msgs, problems = parse_completion([CHANNEL, *t("final"), MESSAGE, *t("cut off mid")], encoding=ENC)
    assert msgs[0].text == "cut off mid" and kinds(problems) == ["truncated"]
    msgs, problems = parse_completion([CHANNEL, *t("final to=x")], encoding=ENC)
    assert msgs == [] and kinds(problems) == ["truncated"] and "final to=x" in problems[0].text
    assert kinds(parse_completion([], encoding=ENC)[1]) == ["empty"]

def test_stray_tokens_between_messages_are_reported_with_their_text() -> None:
    tokens = [CHANNEL, *t("final"), MESSAGE, *t("ok"), END, *t(" trailing words"), START, *t("assistant"),
              CHANNEL, *t("final"), MESSAGE, *t("second"), END]
    msgs, problems = parse_completion(tokens, encoding=ENC)
    assert [m.text for m in msgs] == ["ok", "second"]
    assert kinds(problems) == ["stray_token"] and problems[0].text == " trailing words"

def test_header_without_role_is_the_assistants() -> None:
    tokens = [START, *t(" to=python"), CHANNEL, *t("analysis"), MESSAGE, *t("1+1"), CALL]
    msgs, problems = parse_completion(tokens, role=None, encoding=ENC)
    assert (msgs[0].author.role, msgs[0].recipient, msgs[0].text) == (Role.ASSISTANT, "python", "1+1")
    assert kinds(problems) == ["malformed_header"]


def test_role_none_requires_start() -> None:
    msgs, problems = parse_completion([*t("hello"), START, *t("user"), MESSAGE, *t("x"), END], role=None,
                                      encoding=ENC)
    assert [m.text for m in msgs] == ["x"] and kinds(problems) == ["stray_token"]

def _byte_tokens(data: bytes) -> list[int]:
    return [ENC.encode_single_token(bytes([b])) for b in data]

def test_incomplete_utf8_is_held_back() -> None:
    parser = StreamParser(ENC)
    parser.process_all([CHANNEL, *t("final"), MESSAGE])
    deltas = [parser.process(tok) for tok in _byte_tokens("é👍".encode())]
    texts = [[e.text for e in evs if isinstance(e, ContentDelta)] for evs in deltas]
    assert texts == [[], ["é"], [], [], [], ["👍"]]
    parser.process(END)
    assert parser.messages[0].text == "é👍"

def test_invalid_utf8_becomes_replacement_without_losing_text() -> None:
    parser = StreamParser(ENC)
    events = parser.process_all([CHANNEL, *t("final"), MESSAGE, *_byte_tokens(b"\xffok\xe2\x82"), END])
    deltas = "".join(e.text for e in events if isinstance(e, ContentDelta))
    assert parser.messages[0].text == deltas == "\ufffdok\ufffd"

def test_out_of_vocabulary_ids_never_raise() -> None:
    parser = StreamParser(ENC)
    for token in (-1, 201089, 10**12, CHANNEL, *t("final"), MESSAGE, 999_999, *t("x"), END):
        parser.process(token)
    parser.finish()
    assert parser.messages[0].text == "x"
    assert kinds(parser.problems) == ["stray_special", "stray_special", "stray_special", "stray_special"]

def test_finish_is_idempotent_and_messages_are_not_duplicated() -> None:
    parser = StreamParser(ENC)
    parser.process_all([CHANNEL, *t("final"), MESSAGE, *t("x")])
    parser.finish()
    parser.finish()
    assert len(parser.messages) == 1

# -- random streams ------------------------------------------------------------------------------

def _partial_utf8_tokens() -> list[int]:
    out = []
    for tok in range(100_000, 200_000, 7):
        raw = ENC.decode_single_token_bytes(tok)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            out.append(tok)
        if len(out) >= 200:
            break
    return out

PARTIAL = _partial_utf8_tokens()
SPECIALS = [199998, 199999, 200000, RETURN, CONSTRAIN, 200004, CHANNEL, START, END, MESSAGE, 200009, CALL,
            200013, 200018, 201088]
FRAGMENTS = [[START], [START, *t("assistant")], [CHANNEL, *t("analysis")], [CHANNEL, *t("final")],
             [CHANNEL, *t("commentary")], t(" to=functions.f"), [CONSTRAIN, *t("json")], [MESSAGE], [END], [CALL],
             [RETURN], t("user:bob"), t(" code"), t("hello world"), t("日本語👍")]
token = st.one_of(st.sampled_from(SPECIALS), st.integers(0, 201088), st.sampled_from(PARTIAL),
                  st.integers(-5, 10**7))
stream = st.lists(st.one_of(token.map(lambda x: [x]), st.sampled_from(FRAGMENTS)), max_size=40).map(
    lambda chunks: [x for c in chunks for x in c])

@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens=stream, role=st.sampled_from([Role.ASSISTANT, None, Role.USER]))
def test_parser_never_raises_and_loses_nothing(tokens: list[int], role: Role | None) -> None:
    parser = StreamParser(ENC, role)
    events: list[Any] = []
    for tok in tokens:
        events += parser.process(tok)
        _ = (parser.current_channel, parser.current_recipient, parser.current_role, parser.current_content)
    events += parser.finish()
    assert not any(p.kind == "internal" for p in parser.problems), parser.problems
    done = [e.message for e in events if isinstance(e, MessageDone)]
    assert done == parser.messages
    assert [e for e in events if isinstance(e, Problem)] == parser.problems
    # every message's text is exactly the deltas streamed for it
    text = ""
    for e in events:
        if isinstance(e, MessageStart):
            text = ""
        elif isinstance(e, ContentDelta):
            text += e.text
        elif isinstance(e, MessageDone):
            assert e.message.text == text
            text = ""

@pytest.mark.parametrize("chunk", [1, 3])
def test_completion_of_rendered_messages_round_trips(chunk: int) -> None:
    """Feeding ids one at a time or in any order of calls gives the same messages."""
    tokens = [CHANNEL, *t("analysis"), MESSAGE, *t("Let me think… 日本"), END, START, *t("assistant"), CHANNEL,
              *t("final"), MESSAGE, *t("Done."), RETURN]
    parser = StreamParser(ENC)
    for i in range(0, len(tokens), chunk):
        parser.process_all(tokens[i : i + chunk])
    parser.finish()
    assert [m.text for m in parser.messages] == ["Let me think… 日本", "Done."]
    assert parser.problems == []


def _live_header_work(words: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """Characters parsed while a header of ``words`` junk words streams in, with current_* read after each."""
    import ossagent.agent.harmony.parser as parser_module

    work = [0]
    real = parser_module.parse_header

    def counting(text: str, implied: Role | None) -> Any:
        work[0] += len(text)
        return real(text, implied)

    monkeypatch.setattr(parser_module, "parse_header", counting)
    parser = StreamParser(ENC)
    parser.process_all([CHANNEL, *t("analysis to=functions.f")])
    junk = t(" x")
    for _ in range(words):
        parser.process_all(junk)
        assert (parser.current_channel, parser.current_recipient, parser.current_role) == (
            "analysis", "functions.f", Role.ASSISTANT)
    parser.process_all([MESSAGE, *t("hi"), END])
    assert kinds(parser.problems) == ["malformed_header"]  # the whole header is still parsed once, at <|message|>
    assert parser.problems[0].message.count("x") == words
    monkeypatch.undo()
    return work[0]


@pytest.mark.timeout(60)
def test_live_header_fields_are_linear_in_header_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """An adversarial model that never ends its header: reading current_* after each token stays linear."""
    small, large = _live_header_work(1_000, monkeypatch), _live_header_work(10_000, monkeypatch)
    assert large < 15 * small  # quadratic would be 100x
