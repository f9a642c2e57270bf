"""Grammar-constrained turns: every call names a declared function and validates; tool_choice modes;
response formats leave the analysis free; fast-forward; the reference parser and renderer agree.

Most generations here are driven by a seeded random-logits sampler (``RandomLogits`` in conftest), which
stands in for a random-weight model at a fraction of the cost; ``test_constrain_engine.py`` runs the real
tiny engine on a representative subset with the same hook.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pydantic
import pytest

from ossagent.agent.choices import ToolChoice
from ossagent.agent.constrain import (
    ConstraintViolation,
    TurnConstraints,
    header_lark,
    parse_header,
)
from ossagent.agent.functions import Functions, ResponseFormat
from ossagent.agent.harmony.tokens import CALL, CHANNEL, END, RETURN, START
from ossagent.tools.base import ModelError, UserError

N_SUITE = 500
VOCAB = 201_088


def _call_of(parse_turn: Any, functions: Functions, tokens: list[int]) -> Any:
    messages = parse_turn(tokens)
    last = messages[-1]
    for m in messages[:-1]:
        assert m.recipient is None, "only the last message of a turn can be a call"
    assert last.recipient is not None and last.recipient.startswith("functions."), last
    assert last.channel == "commentary"
    return functions.parse_call(last.recipient, last.content[0].text)


def test_suite_constrained_calls_all_parse_and_validate(
    enc: Any, make_constraints: Any, suite_functions: Functions, sampler: Any, run_hook: Any, parse_turn: Any
) -> None:
    """500 generations over 8 realistic tool schemas (nested objects, arrays, enums, bounded numbers,
    optional fields, oneOf/anyOf, patterns, formats), tool_choice ``required`` or one named function;
    every fourth starts from a prefilled header. Each must end in a call that openai-harmony parses, that
    names a declared (or the named) function, and whose arguments validate (jsonschema + pydantic)."""
    names = suite_functions.names
    configs: list[tuple[Any, str | None]] = [("required", None)] + [({"type": "function", "name": n}, n)
                                                                     for n in names]
    seen: Counter[str] = Counter()
    forced = sampled = 0
    for i in range(N_SUITE):
        choice, target = configs[i % len(configs)]
        prefill: list[int] = []
        if i % 4 == 3:
            target = target or names[i % len(names)]
            prefill = enc.encode(f"<|channel|>commentary to=functions.{target} <|constrain|>json<|message|>",
                                 allowed_special="all")
        hook = make_constraints(choice).hook(prefill)
        out = run_hook(hook, sampler(i), max_tokens=800)
        assert out[-1] == CALL, (i, enc.decode(out[-80:]))
        call = _call_of(parse_turn, suite_functions, prefill + out)
        if target is not None:
            assert call.name == target
        seen[call.name] += 1
        forced += hook.stats.forced_tokens
        sampled += hook.stats.masks
    assert set(seen) == set(names), seen
    assert forced > 0.2 * (forced + sampled), "fast-forward should fix a good share of the tokens"


def test_suite_without_constraints_fails(
    enc: Any, suite_functions: Functions, sampler: Any, run_hook: Any, parse_turn: Any
) -> None:
    """The same sampler without the hook, even given the header, writes bodies that do not validate."""
    names = suite_functions.names
    failures = 0
    for i in range(N_SUITE):
        header = enc.encode(f"<|channel|>commentary to=functions.{names[i % len(names)]} <|constrain|>json"
                            "<|message|>", allowed_special="all")
        out = run_hook(None, sampler(i, p_end=0.1, stop=CALL), max_tokens=60)
        try:
            _call_of(parse_turn, suite_functions, header + out)
        except (ModelError, AssertionError, Exception):  # ModelError: bad body; others: unparseable turn
            failures += 1
    assert failures > 0.9 * N_SUITE, failures


def _step_mask(hook: Any, generated: list[int]) -> Any:
    action = hook.step(generated)
    assert action.mask is not None and not action.forced, action
    return action.mask


def test_tool_choice_none_makes_calls_impossible(
    enc: Any, make_constraints: Any, sampler: Any, run_hook: Any, parse_turn: Any
) -> None:
    to = enc.encode(" to")[0]
    assert bool(_step_mask(make_constraints("auto").hook(), [])[to])  # a recipient-first header may start
    assert make_constraints("none").hook().step([]).forced == [CHANNEL]  # every header starts <|channel|>
    for seed in range(40):
        out = run_hook(make_constraints("none").hook(), sampler(seed), max_tokens=300)
        assert CALL not in out
        if out[-1] == RETURN:
            assert all(m.recipient is None for m in parse_turn(out))
        assert b"to=functions" not in enc.decode_bytes(out)


def test_tool_choice_auto_allows_calls_and_answers(
    make_constraints: Any, suite_functions: Functions, sampler: Any, run_hook: Any, parse_turn: Any
) -> None:
    ends: Counter[int] = Counter()
    for seed in range(60):
        out = run_hook(make_constraints("auto").hook(), sampler(1000 + seed), max_tokens=800)
        ends[out[-1]] += 1
        if out[-1] == CALL:
            _call_of(parse_turn, suite_functions, out)
        elif out[-1] == RETURN:
            assert parse_turn(out)[-1].channel == "final"
    assert ends[CALL] > 0 and ends[RETURN] > 0, ends


def test_tool_choice_required_and_named_exclude_the_final_answer(enc: Any, make_constraints: Any) -> None:
    channel = enc.encode("<|channel|>", allowed_special="all")
    final = enc.encode("final")[0]
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        hook = make_constraints(choice).hook()
        mask = _step_mask(hook, channel)
        assert not bool(mask[final])
        assert bool(mask[enc.encode("analysis")[0]])
    assert bool(_step_mask(make_constraints("auto").hook(), channel)[final])
    with pytest.raises(UserError, match="not a declared function"):
        make_constraints({"type": "function", "name": "launch_rockets"})


def test_named_function_rejects_another_declared_function(enc: Any, make_constraints: Any) -> None:
    hook = make_constraints(ToolChoice("function", "get_weather"))
    other = enc.encode("<|channel|>commentary to=functions.run_query <|constrain|>json<|message|>",
                       allowed_special="all")
    with pytest.raises(UserError, match="do not fit"):
        hook.hook(other)


class Answer(pydantic.BaseModel):
    city: str = pydantic.Field(max_length=30)
    temperature_c: float = pydantic.Field(ge=-90, le=60)
    conditions: list[str] = pydantic.Field(max_length=3)


def test_response_format_constrains_only_the_final_body(
    enc: Any, make_constraints: Any, sampler: Any, run_hook: Any, parse_turn: Any
) -> None:
    rf = ResponseFormat.from_model(Answer)
    empty = Functions()
    analysis = enc.encode("<|channel|>analysis<|message|>", allowed_special="all")
    hook = make_constraints("auto", functions=empty, response_format=rf).hook()
    mask = _step_mask(hook, analysis)
    assert bool(mask[:199_998].all()), "analysis text must stay unconstrained"
    assert bool(mask[END]) and not bool(mask[RETURN]) and not bool(mask[CALL])  # only an early end is masked
    finals = 0
    for seed in range(30):
        out = run_hook(make_constraints("auto", functions=empty, response_format=rf).hook(),
                    sampler(2000 + seed), max_tokens=600)
        assert out[-1] == RETURN, enc.decode(out[-60:])
        last = parse_turn(out)[-1]
        assert last.channel == "final"
        value = rf.parse(last.content[0].text)
        assert isinstance(value, Answer)
        finals += 1
    assert finals == 30


def test_free_bodies_mask_only_markup_and_a_call_without_recipient(enc: Any, make_constraints: Any) -> None:
    """The text stays free; special tokens that cannot occur in content (the markup a small model may leak
    into a message) are masked, and <|call|> where no recipient was named."""
    hook = make_constraints("auto", free_text_limit=None).hook()
    action = hook.step(enc.encode("<|channel|>analysis<|message|>", allowed_special="all"))
    mask = action.mask
    assert mask is not None and not action.forced
    assert bool(mask[:199_998].all())
    assert bool(mask[END]) and bool(mask[RETURN]) and not bool(mask[CALL])
    assert not any(bool(mask[t]) for t in (START, CHANNEL, 200008, 200003, 199_999, 200_013, 201_087))
    action = hook.step(enc.encode("<|channel|>analysis<|message|>Let me think.", allowed_special="all"))
    assert action.mask is mask
    call = make_constraints("auto", free_text_limit=None, builtin_recipients=("python",)).hook()
    action = call.step(enc.encode("<|channel|>analysis to=python<|message|>", allowed_special="all"))
    assert bool(action.mask[CALL]) and not bool(action.mask[CHANNEL])
    with pytest.raises(ConstraintViolation, match="cannot occur"):
        hook.step(enc.encode("<|channel|>analysis<|message|>Let me think.<|channel|>", allowed_special="all"))


def test_fast_forward_after_end_and_inside_headers(enc: Any, make_constraints: Any) -> None:
    hook = make_constraints("auto").hook()
    gen = enc.encode("<|channel|>analysis<|message|>ok<|end|>", allowed_special="all")
    assert gen[-1] == END
    action = hook.step(gen)
    assert action.forced == [START, *enc.encode("assistant")]
    gen += action.forced + enc.encode("<|channel|>comment", allowed_special="all")
    action = hook.step(gen)
    assert enc.decode(action.forced) == "ary"
    action = hook.step(gen + action.forced)
    assert action.forced == [] and action.mask is not None, "a preamble or a recipient may follow"
    hook = make_constraints({"type": "function", "name": "get_weather"}).hook()
    gen = enc.encode("<|channel|>commentary to", allowed_special="all")
    forced = hook.step(gen).forced
    assert enc.decode(forced).startswith("=functions.get_weather"), enc.decode(forced)


@pytest.mark.parametrize(
    "header",
    [
        "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>",
        "<|channel|>commentary to=functions.get_weather<|constrain|>json<|message|>",
        "<|channel|>commentary to=functions.get_weather json<|message|>",
        " to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>",
        " to=functions.get_weather<|channel|>commentary<|constrain|>json<|message|>",
        " to=functions.get_weather<|channel|>commentary json<|message|>",
    ],
)
def test_header_variants_gpt_oss_writes_are_accepted(enc: Any, make_constraints: Any, header: str) -> None:
    hook = make_constraints("auto").hook(enc.encode(header, allowed_special="all"))
    assert hook.part == "json" and hook.function == "get_weather"
    assert parse_header(header).recipient == "functions.get_weather"


@pytest.mark.parametrize(
    "header",
    [
        "<|channel|>commentary to=functions.get_wether <|constrain|>json<|message|>",  # undeclared name
        "<|channel|>commentary to=functions.get_weather <|constrain|>yaml<|message|>",
        "<|channel|>analysis to=functions.get_weather <|constrain|>json<|message|>",  # calls go to commentary
        "<|channel|>final to=functions.get_weather<|message|>",
    ],
)
def test_bad_headers_are_rejected(enc: Any, make_constraints: Any, header: str) -> None:
    with pytest.raises(UserError, match="do not fit"):
        make_constraints("auto").hook(enc.encode(header, allowed_special="all"))


def test_textual_special_tokens_never_match(enc: Any, make_constraints: Any) -> None:
    """``<|channel|>`` spelled as text (ordinary tokens) is not the special token."""
    textual = enc.encode("<|channel|>commentary", disallowed_special=())  # plain text tokens
    with pytest.raises(ConstraintViolation):
        make_constraints("auto").hook().step(textual)


def test_reference_rendering_of_a_call_is_accepted(
    harmony_encoding: Any, make_constraints: Any, suite_functions: Functions
) -> None:
    """openai-harmony's own rendering of a function call (recipient in the header) passes the hook."""
    import openai_harmony as oh

    msg = (oh.Message.from_role_and_content(oh.Role.ASSISTANT, '{"location":"Paris, France","days":3}')
           .with_channel("commentary").with_recipient("functions.get_weather")
           .with_content_type("<|constrain|>json"))
    tokens = harmony_encoding.render(msg)
    hook = make_constraints("required").hook()
    assert hook.step(tokens[2:]).stop  # after <|start|>assistant
    assert hook.function == "get_weather"


def test_json_body_rejects_schema_violations(enc: Any, make_constraints: Any) -> None:
    header = "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
    for body in ('{"location":"Paris","days":15}', '{"unit":"kelvin"}', '{"location":"x","extra":1}',
                 '{"location": "Paris"}'):  # the last: whitespace (compact JSON only)
        hook = make_constraints("auto").hook(enc.encode(header, allowed_special="all"))
        with pytest.raises(ConstraintViolation):
            hook.step([*enc.encode(body), CALL])
    hook = make_constraints("auto").hook(enc.encode(header, allowed_special="all"))
    assert hook.step([*enc.encode('{"location":"Paris","days":14}'), CALL]).stop


def test_mask_equals_llguidance_bitmask(enc: Any, make_constraints: Any) -> None:
    """The unpacked bool mask (fast path) equals bit-by-bit reading of llguidance's bitmask (slow path)."""
    header = "<|channel|>commentary to=functions.search_flights <|constrain|>json<|message|>"
    hook = make_constraints("auto").hook(enc.encode(header, allowed_special="all"))
    hook.step(enc.encode('{"origin":"'))
    mask = hook.mask()
    assert mask.shape == (VOCAB,) and str(mask.dtype) == "torch.bool"
    words = hook._bits[0].astype(np.uint32)
    ids = np.arange(VOCAB)
    slow = ((words[ids // 32] >> (ids % 32).astype(np.uint32)) & 1).astype(bool)
    assert np.array_equal(mask.numpy(), slow)
    allowed = set(np.flatnonzero(slow).tolist())
    assert enc.encode("ABC")[0] in allowed or enc.encode("A")[0] in allowed
    assert enc.encode("a")[0] not in allowed  # pattern ^[A-Z]{3}$


def test_free_text_limit_closes_the_body(enc: Any, make_constraints: Any) -> None:
    hook = make_constraints("auto", free_text_limit=3).hook()
    gen = enc.encode("<|channel|>analysis<|message|>a b c", allowed_special="all")
    assert hook.step(gen).forced == [END]


def test_tool_choice_parsing() -> None:
    assert ToolChoice.parse(None) == ToolChoice("auto")
    assert ToolChoice.parse("required").mode == "required"
    assert ToolChoice.parse({"type": "function", "function": {"name": "f"}}) == ToolChoice("function", "f")
    assert ToolChoice.parse({"type": "function", "name": "f"}) == ToolChoice("function", "f")
    for bad in ("always", {"type": "function"}, 3):
        with pytest.raises(UserError):
            ToolChoice.parse(bad)  # type: ignore[arg-type]


def test_required_without_functions_is_a_user_error(enc: Any) -> None:
    with pytest.raises(UserError, match="at least one"):
        TurnConstraints(Functions(), encoding=enc, tool_choice="required")


def test_header_grammar_lists_only_allowed_names() -> None:
    lark = header_lark(["a", "b"], [], final=False, with_role=True)
    assert '"a" | "b"' in lark and '"final"' not in lark and lark.startswith("start: <|start|>")
