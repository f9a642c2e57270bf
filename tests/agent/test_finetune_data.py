"""Fine-tuning data: transcripts of real agent runs -> tokens and the mask of the tokens the model wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ossagent.agent import prompt as hp
from ossagent.agent.backends.scripted import ScriptedBackend
from ossagent.agent.finetune_data import (
    DataError,
    build_dataset,
    builtin_descriptions,
    eval_selection,
    prompt_config_from_settings,
    show_example,
    split_held_out,
    transcript_examples,
)
from ossagent.agent.functions import FunctionTool
from ossagent.agent.harmony import (
    END,
    RETURN,
    Author,
    DeveloperContent,
    HarmonyRenderer,
    Message,
    ReasoningEffort,
    RenderConversationConfig,
    Role,
    SystemContent,
)
from ossagent.agent.loop import Agent
from ossagent.agent.transcript import Msg, Transcript, user
from ossagent.model.tokenizer import o200k_harmony
from ossagent.tools.base import FunctionDescription

GOLDEN = Path(__file__).parent / "golden"
DATE = "2026-01-15"
INSTRUCTIONS = "Answer briefly."
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.fixture(scope="module")
def enc() -> Any:
    return o200k_harmony()


def _weather() -> FunctionTool:
    return FunctionTool.from_schema("get_weather", SCHEMA, "Current weather of a city.",
                                    implementation=lambda city: {"city": city, "sky": "clear", "c": 21})


def _reply(msgs: list[Msg], enc: Any) -> list[int]:
    """What a model writes for these messages in one call: their rendering after ``<|start|>assistant``."""
    toks = [t for m in msgs for t in hp.render_message(m, enc)][len(hp.assistant_start(enc)) :]
    return [*toks[:-1], RETURN] if toks[-1] == END else toks


def _a(text: str, channel: str, recipient: str | None = None, ctype: str | None = None) -> Msg:
    return Msg("assistant", text, recipient=recipient, channel=channel, content_type=ctype)


def _run_two_turns(enc: Any, tmp_path: Path) -> tuple[Path, ScriptedBackend, Agent]:
    """Two user turns through the real loop: a function call and its answer, then a plain question."""
    turn1 = [
        [_a("Need the weather; call the tool.", "analysis"),
         _a('{"city":"Oslo"}', "commentary", "functions.get_weather", "<|constrain|>json")],
        [_a("Tool says clear, 21 C.", "analysis"), _a("Clear and 21 °C in Oslo.", "final")],
    ]
    turn2 = [[_a("Simple.", "analysis"), _a("You're welcome!", "final")]]
    backend = ScriptedBackend([_reply(step, enc) for step in turn1 + turn2], enc)
    agent = Agent(backend, functions=[_weather()], instructions=INSTRUCTIONS, reasoning="low", current_date=DATE,
                  constrained=False)
    first = agent.run("Weather in Oslo?")
    second = agent.run("Thanks!", transcript=first.transcript)
    assert (first.stop_reason, second.stop_reason) == ("final", "final")
    path = second.transcript.save(tmp_path / "run.jsonl")
    return path, backend, agent


def _config(t: Transcript) -> hp.PromptConfig:
    return prompt_config_from_settings(t.settings, functions=[_weather().describe()], current_date=DATE)


def test_mask_is_exactly_what_the_model_wrote(enc: Any, tmp_path: Path) -> None:
    """Tokens = the loop's last prompt of the turn + the model's last output; mask = every output of the turn."""
    path, backend, agent = _run_two_turns(enc, tmp_path)
    t = Transcript.load(path)
    assert _config(t) == agent.config
    examples = transcript_examples(t, _config(t), enc, str(path))
    assert len(examples) == 2
    for ex, calls in zip(examples, ([0, 1], [2]), strict=True):
        last = calls[-1]
        assert ex.tokens == backend.prompts[last] + backend.outputs[last]
        want = [False] * len(ex.tokens)
        for c in calls:
            p, o = backend.prompts[c], backend.outputs[c]
            assert ex.tokens[: len(p)] == p
            want[len(p) : len(p) + len(o)] = [True] * len(o)
        assert ex.mask == want
        assert ex.tokens[-1] == RETURN
    # turn 2's context drops turn 1's chain of thought, as the loop does
    assert "Need the weather" not in enc.decode(examples[1].tokens)
    assert "Tool says clear" not in enc.decode(examples[1].tokens)

    golden = GOLDEN / "finetune" / "finetune_two_turns.txt"
    text = "".join(f"# turn {e.turn + 1}\n{show_example(e, enc)}" for e in examples)
    if not golden.exists():
        golden.write_text(text, encoding="utf-8")
        pytest.fail(f"wrote {golden}; review it and run again")
    assert text == golden.read_text(encoding="utf-8"), f"{golden} changed (delete it to regenerate after review)"


def test_first_turn_is_the_harmony_training_rendering(enc: Any, tmp_path: Path) -> None:
    """Built independently with the harmony package: system, developer, the turn; <|return|> on the final."""
    path, _, _ = _run_two_turns(enc, tmp_path)
    t = Transcript.load(path)
    ex = transcript_examples(t, _config(t), enc)[0]
    sys_msg = Message.from_role_and_content(
        Role.SYSTEM, SystemContent.new().with_reasoning_effort(ReasoningEffort.LOW).with_conversation_start_date(DATE))
    dev = Message.from_role_and_content(Role.DEVELOPER, DeveloperContent.new().with_instructions(INSTRUCTIONS)
                                        .with_function_tools([_weather().describe()]))
    conv = [sys_msg, dev]
    for m in t.messages[:6]:
        author = Author(Role.TOOL, m.name) if m.role == "tool" else Author(Role(m.role))
        conv.append(Message(author, [], channel=m.channel, recipient=m.recipient,
                            content_type=m.content_type).adding_content(m.text))
    want = HarmonyRenderer(enc).render_conversation_for_training(conv, RenderConversationConfig(False))
    assert ex.tokens == want


def test_unfinished_turns_are_skipped_and_counted(enc: Any, tmp_path: Path) -> None:
    cfg = hp.PromptConfig(reasoning="low", current_date=DATE)
    good = [user("hi"), _a("greet", "analysis"), _a("Hello!", "final")]
    cut = [user("more"), _a("thinking", "analysis"), _a("Hel", "final").with_meta(truncated=True)]
    dangling = [user("and"), _a("{}", "commentary", "functions.f", "<|constrain|>json")]
    (tmp_path / "d").mkdir()
    Transcript(good + cut, {"reasoning": "low"}).save(tmp_path / "d" / "a.jsonl")
    Transcript(good + dangling, {"reasoning": "low"}).save(tmp_path / "d" / "b.jsonl")
    ds = build_dataset([tmp_path / "d"], cfg, encoding=enc, held_out=0.0)
    assert ds.summary.turns_skipped == {"cut off": 1, "ends with a tool call": 1}
    assert ds.summary.train_examples == 2 and ds.summary.transcripts == 2
    assert all(enc.decode(e.tokens).endswith("Hello!<|return|>") for e in ds.train)
    assert "training examples" in ds.summary.table()


def test_selection_by_eval_results_predicate_and_split(enc: Any, tmp_path: Path) -> None:
    cfg = hp.PromptConfig(reasoning="low", current_date=DATE)
    runs = tmp_path / "runs"
    runs.mkdir()
    rows = []
    for i in range(10):
        Transcript([user(f"q{i}"), _a(f"a{i}", "final")], {"reasoning": "low"}).save(runs / f"t{i}.jsonl")
        rows.append({"task": i, "score": i % 2, "transcript": f"runs/t{i}.jsonl"})
    (tmp_path / "results.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert len(eval_selection(tmp_path)) == 5
    ds = build_dataset([], cfg, encoding=enc, eval_results=tmp_path, held_out=0.2, seed=3)
    assert (ds.summary.train_examples, ds.summary.held_examples) == (4, 1)
    assert all(int(Path(e.source).stem[1:]) % 2 == 1 for e in ds.train + ds.held_out)
    picky = build_dataset([runs], cfg, encoding=enc, predicate=lambda t, p: p.stem in ("t0", "t1"), held_out=0.0)
    assert (picky.summary.train_examples, picky.summary.selected_out) == (2, 8)
    assert split_held_out(["a", "b", "c"], 0.3, 1) == split_held_out(["c", "b", "a"], 0.3, 1)
    with pytest.raises(DataError, match="no result rows"):
        eval_selection(runs)
    with pytest.raises(DataError, match="no training examples"):
        build_dataset([runs], cfg, encoding=enc, predicate=lambda t, p: False)


def test_prompt_config_needs_every_named_tool() -> None:
    settings = {"reasoning": "high", "builtin_tools": ["python", "files"], "function_tools": ["f"],
                "instructions": None, "response_format": None}
    with pytest.raises(DataError, match=r"functions\.f"):
        prompt_config_from_settings(settings, tools=builtin_descriptions(["python", "files"]))
    with pytest.raises(DataError, match="unknown built-in tool"):
        builtin_descriptions(["shell"])
    cfg = prompt_config_from_settings(settings, tools=builtin_descriptions(["files", "python"]),
                                      functions=[FunctionDescription("f", "", None)])
    assert [t.name for t in cfg.builtin_tools] == ["python", "files"]


def test_a_transcript_may_start_with_the_assistant(enc: Any) -> None:
    """A resumed conversation can begin with the model's turn; the prompt is then system + developer only."""
    cfg = hp.PromptConfig(reasoning="low", current_date=DATE)
    (ex,) = transcript_examples(Transcript([_a("Hi", "analysis"), _a("Hello.", "final")]), cfg, enc)
    prompt = hp.render_prompt(cfg, [], enc)
    assert ex.tokens[: len(prompt)] == prompt and not any(ex.mask[: len(prompt)])
    assert all(ex.mask[len(prompt) :])


def test_a_new_header_rebuilds_the_prompt_with_nothing_given(enc: Any, tmp_path: Path) -> None:
    """The transcript header carries the texts the model saw (tools, functions, answer format, date, identity):
    the prompt is rebuilt exactly from the file alone, and the examples are the same as with the texts given."""
    path, _backend, agent = _run_two_turns(enc, tmp_path)
    t = Transcript.load(path)
    assert t.settings["current_date"] == DATE and t.settings["texts"]["function_tools"][0]["name"] == "get_weather"
    cfg = prompt_config_from_settings(t.settings)
    assert cfg == agent.config
    assert [e.tokens for e in transcript_examples(t, cfg, enc)] == [e.tokens for e in transcript_examples(
        t, _config(t), enc)]
    # a header of the older kind names its tools only: they must be given
    old = {k: v for k, v in t.settings.items() if k not in ("texts", "current_date", "model_identity")}
    with pytest.raises(DataError, match=r"functions\.get_weather"):
        prompt_config_from_settings(old)


def test_settings_round_trip_through_json_for_every_part_of_the_prompt() -> None:
    cfg = hp.PromptConfig(reasoning=ReasoningEffort.HIGH, instructions="Be brief.",
                          builtin_tools=tuple(builtin_descriptions(["python", "browser", "files"])),
                          function_tools=(FunctionDescription("get_weather", "Weather.", SCHEMA),
                                          FunctionDescription("free", "Free-form.", None)),
                          response_format=("answer", {"type": "object", "properties": {"x": {"type": "integer"}}},
                                           "The answer."),
                          model_identity="You are a test model.", current_date=DATE)
    settings = json.loads(json.dumps(cfg.settings()))
    assert prompt_config_from_settings(settings) == cfg
