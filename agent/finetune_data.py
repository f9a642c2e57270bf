"""Fine-tuning data from agent transcripts: token sequences with a mask of the tokens the model wrote.

Each finished turn of a saved :class:`~ossagent.agent.transcript.Transcript` (the assistant and tool messages from
the first assistant message after a user message to the assistant's ``final`` answer) becomes one example:

- the prompt exactly as the agent loop builds it (:func:`ossagent.agent.prompt.render_prompt`: system and
  developer messages, the conversation so far with the chain of thought of finished turns dropped), then the
  turn's messages as harmony renders them, the last ``final`` ending in ``<|return|>`` (the training rendering);
- ``mask[i]`` is True when token ``i`` was written by the model in one of the turn's model calls: everything of an
  assistant message except the ``<|start|>assistant`` that opens a call (the loop's prompt ends with it). Tool
  results, user messages and the prompt are context. Before each model call the sequence so far is checked
  against the loop's own prompt for that call, so a mismatch is an error, not silently wrong data.

Turns cut off (a limit, a stop sequence), ending in a call for the caller, or without a ``final`` are left out and
counted. Transcripts are chosen by a predicate and/or an eval results folder (rows with a score and a transcript
path), and split into training and held-out sets by transcript (never one conversation on both sides).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from ossagent.agent import prompt as hp
from ossagent.agent.harmony.tokens import END, FIRST_SPECIAL, RETURN
from ossagent.agent.prompt import PromptConfig
from ossagent.agent.transcript import Msg, Transcript, TranscriptError
from ossagent.tools.base import FunctionDescription, ToolDescription, UserError

Predicate = Callable[[Transcript, Path], bool]
PromptSource: TypeAlias = PromptConfig | Callable[[Transcript], PromptConfig]
TRANSCRIPT_KEYS = ("transcript", "transcript_path", "transcript_file")


class DataError(UserError):
    """Transcripts that cannot become training data (the user's fault: wrong files, a prompt that differs)."""


@dataclass(frozen=True)
class Example:
    """One turn: ``tokens``, ``mask`` (True: a token the model wrote, trained on), where it came from."""

    tokens: list[int]
    mask: list[bool]
    source: str
    turn: int

    @property
    def trained(self) -> int:
        return sum(self.mask)


@dataclass
class DataSummary:
    """What was read, kept and used; :meth:`table` prints it."""

    files: int = 0
    selected_out: int = 0  # transcripts the predicate or the eval results left out
    transcripts: int = 0  # transcripts that gave at least one example
    turns_skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    too_long: int = 0
    train_examples: int = 0
    held_examples: int = 0
    train_tokens: int = 0
    train_trained: int = 0
    held_tokens: int = 0
    longest: int = 0

    def skip(self, reason: str) -> None:
        self.turns_skipped[reason] = self.turns_skipped.get(reason, 0) + 1

    def table(self) -> str:
        rows = [
            ("transcript files read", self.files),
            ("left out by the selection", self.selected_out),
            ("transcripts used", self.transcripts),
            *((f"turns skipped: {k}", v) for k, v in sorted(self.turns_skipped.items())),
            ("examples over the length limit", self.too_long),
            ("training examples", self.train_examples),
            ("training tokens (trained on)", f"{self.train_tokens} ({self.train_trained})"),
            ("held-out examples", self.held_examples),
            ("held-out tokens", self.held_tokens),
            ("longest example (tokens)", self.longest),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


@dataclass
class Dataset:
    train: list[Example]
    held_out: list[Example]
    summary: DataSummary


# -- the prompt --------------------------------------------------------------------------------------------------
def builtin_descriptions(names: Iterable[str]) -> list[ToolDescription]:
    """The descriptions the built-in tools show the model, by name, without starting any tool."""
    out = []
    for name in names:
        if name == "python":
            from ossagent.tools.python import PYTHON_DESCRIPTION

            out.append(ToolDescription(name="python", description=PYTHON_DESCRIPTION))
        elif name == "files":
            from ossagent.tools import files

            out.append(ToolDescription(name="files", description=files.DESCRIPTION, functions=files.FUNCTIONS))
        elif name == "browser":
            from ossagent.tools.browser import tool

            out.append(ToolDescription(name="browser", description=tool.DESCRIPTION, functions=tool.FUNCTIONS))
        else:
            raise DataError(f"unknown built-in tool {name!r} (python, files, browser)")
    return out


def prompt_config_from_settings(
    settings: dict[str, Any],
    *,
    tools: Sequence[ToolDescription] = (),
    functions: Sequence[FunctionDescription] = (),
    response_formats: dict[str, tuple[dict[str, Any], str | None]] | None = None,
    current_date: str | None = None,
    model_identity: str | None = None,
) -> PromptConfig:
    """The :class:`PromptConfig` of a transcript header's settings. Headers written since they carry the texts
    (``settings["texts"]``: tools, functions and answer format as the model saw them, the date and identity)
    rebuild the prompt exactly; for older headers, which only name them, every name must be found in
    ``tools``, ``functions`` or ``response_formats``, and ``current_date``/``model_identity`` fill in."""
    texts = settings.get("texts") or {}
    known_tools = {t.name: t for t in tools}
    known_tools.update({t["name"]: _tool_from_json(t) for t in texts.get("builtin_tools") or []})
    known_fns = {f.name: f for f in functions}
    known_fns.update({f["name"]: FunctionDescription(**f) for f in texts.get("function_tools") or []})
    missing = [n for n in settings.get("builtin_tools") or [] if n not in known_tools]
    missing += [f"functions.{n}" for n in settings.get("function_tools") or [] if n not in known_fns]
    fmt_name = settings.get("response_format")
    formats = dict(response_formats or {})
    if fmt_name and texts.get("response_format"):
        formats[fmt_name] = (texts["response_format"]["schema"], texts["response_format"]["description"])
    if fmt_name and fmt_name not in formats:
        missing.append(f"response format {fmt_name}")
    if missing:
        raise DataError(f"the transcript's prompt used {', '.join(missing)}: give their descriptions "
                        "(built-in tools by name, functions and response formats as JSON Schema files)")
    rf = (fmt_name, *formats[fmt_name]) if fmt_name else None
    return PromptConfig(
        reasoning=settings.get("reasoning", "medium"),
        instructions=settings.get("instructions"),
        builtin_tools=tuple(known_tools[n] for n in settings.get("builtin_tools") or []),
        function_tools=tuple(known_fns[n] for n in settings.get("function_tools") or []),
        response_format=rf,  # type: ignore[arg-type]
        model_identity=settings.get("model_identity", model_identity),
        current_date=settings.get("current_date", current_date),
    )


def _tool_from_json(t: dict[str, Any]) -> ToolDescription:
    return ToolDescription(name=t["name"], description=t["description"],
                           functions=tuple(FunctionDescription(**f) for f in t.get("functions") or ()))


# -- one transcript ----------------------------------------------------------------------------------------------
def _turns(messages: Sequence[Msg], summary: DataSummary | None) -> list[tuple[int, int]]:
    """(first assistant message, one past the final) of every finished turn."""
    out: list[tuple[int, int]] = []
    start: int | None = None
    bad: str | None = None

    def drop(reason: str) -> None:
        if summary is not None:
            summary.skip(reason)

    for i, m in enumerate(messages):
        if m.role == "user" and start is not None:
            drop(bad or "no final answer")
            start, bad = None, None
        if m.role != "assistant":
            continue
        if start is None:
            start = i
        if m.meta.get("truncated"):
            bad = bad or "cut off"
        if m.channel == "final" and not m.is_tool_call:
            if bad:
                drop(bad)
            else:
                out.append((start, i + 1))
            start, bad = None, None
    if start is not None:
        drop(bad or ("ends with a tool call" if messages[-1].is_tool_call else "no final answer"))
    return out


def transcript_examples(
    transcript: Transcript, config: PromptConfig, encoding: Any = None, source: str = "",
    summary: DataSummary | None = None,
) -> list[Example]:
    """The examples of every finished turn of ``transcript`` (see the module doc)."""
    enc = encoding if encoding is not None else hp.default_encoding()
    msgs = transcript.messages
    head = hp.assistant_start(enc)
    out = []
    for k, (start, end) in enumerate(_turns(msgs, summary)):
        prompt = hp.render_prompt(config, msgs[:start], enc)
        tokens = prompt[: len(prompt) - len(head)]
        mask = [False] * len(tokens)
        for j in range(start, end):
            m = msgs[j]
            rendered = hp.render_message(m, enc)
            if m.role == "assistant":
                opens_call = j == start or msgs[j - 1].role != "assistant"
                if opens_call and j > start and hp.render_prompt(config, msgs[:j], enc) != tokens + head:
                    raise DataError(f"{source or 'transcript'}: message {j + 1}: the rendered conversation is not "
                                    "the prompt the agent loop builds for that call")
                lead = len(head) if opens_call else 0
                mask += [False] * lead + [True] * (len(rendered) - lead)
            else:
                mask += [False] * len(rendered)
            tokens += rendered
        if tokens[-1] != END:  # pragma: no cover - a final always renders with <|end|>
            raise DataError(f"{source}: turn {k + 1} does not end with <|end|>")
        tokens[-1] = RETURN  # the training rendering: the last final ends the sample with <|return|>
        out.append(Example(tokens, mask, source, k))
    return out


# -- choosing transcripts ----------------------------------------------------------------------------------------
def transcript_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every ``*.jsonl`` under the given folders, and the given files, sorted, each once."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            found.update(f for f in p.rglob("*.jsonl") if f.is_file())
        elif p.is_file():
            found.add(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    return sorted(found)


def eval_selection(results: str | Path, min_score: float = 1.0) -> dict[Path, float]:
    """Transcripts named by an eval results folder whose score is at least ``min_score``: path -> score.

    Reads every ``*.jsonl`` in ``results`` (not below it); a row counts when it has a numeric ``score`` and a
    transcript path (``transcript``, ``transcript_path`` or ``transcript_file``, relative to the row's file).
    Rows without them (a summary, a header) are passed over."""
    folder = Path(results)
    if not folder.is_dir():
        raise DataError(f"{folder}: not an eval results folder")
    chosen: dict[Path, float] = {}
    rows = 0
    for f in sorted(folder.glob("*.jsonl")):
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{f}:{n}: not JSON: {exc}") from None
            ref = next((row[k] for k in TRANSCRIPT_KEYS if isinstance(row, dict) and isinstance(row.get(k), str)),
                       None)
            score = row.get("score") if isinstance(row, dict) else None
            if ref is None or not isinstance(score, int | float):
                continue
            rows += 1
            if score >= min_score:
                chosen[(f.parent / ref).resolve()] = float(score)
    if rows == 0:
        raise DataError(f"{folder}: no result rows with a score and a transcript path ({', '.join(TRANSCRIPT_KEYS)})")
    return chosen


def split_held_out(sources: Sequence[str], fraction: float, seed: int) -> set[str]:
    """The transcripts held out: ``round(fraction * n)`` of them (at least one when fraction > 0 and n > 1)."""
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"held-out fraction must be within [0, 1), not {fraction}")
    order = sorted(set(sources))
    random.Random(seed).shuffle(order)
    n = round(fraction * len(order))
    if fraction > 0 and n == 0 and len(order) > 1:
        n = 1
    return set(order[:n])


def build_dataset(
    paths: Iterable[str | Path],
    prompt: PromptSource,
    *,
    encoding: Any = None,
    predicate: Predicate | None = None,
    eval_results: str | Path | None = None,
    min_score: float = 1.0,
    held_out: float = 0.1,
    seed: int = 0,
    max_tokens: int | None = None,
) -> Dataset:
    """Read, select, render and split. ``prompt``: one :class:`PromptConfig` for all, or a function of the
    transcript (for runs made with different tools). With ``eval_results`` and no ``paths``, the transcripts are
    those the results name; with both, the results select among ``paths``."""
    enc = encoding if encoding is not None else hp.default_encoding()
    summary = DataSummary()
    files = transcript_files(paths)
    chosen = eval_selection(eval_results, min_score) if eval_results is not None else None
    if chosen is not None and not files:
        files = sorted(chosen)
    examples: list[Example] = []
    for f in files:
        summary.files += 1
        try:
            t = Transcript.load(f)
        except (OSError, TranscriptError) as exc:
            raise DataError(f"{exc}") from None
        if (chosen is not None and f.resolve() not in chosen) or (predicate is not None and not predicate(t, f)):
            summary.selected_out += 1
            continue
        config = prompt(t) if callable(prompt) else prompt
        got = transcript_examples(t, config, enc, str(f), summary)
        if max_tokens is not None:
            summary.too_long += sum(len(e.tokens) > max_tokens for e in got)
            got = [e for e in got if len(e.tokens) <= max_tokens]
        summary.transcripts += bool(got)
        examples += got
    held = split_held_out([e.source for e in examples], held_out, seed)
    train = [e for e in examples if e.source not in held]
    test = [e for e in examples if e.source in held]
    summary.train_examples, summary.held_examples = len(train), len(test)
    summary.train_tokens = sum(len(e.tokens) for e in train)
    summary.train_trained = sum(e.trained for e in train)
    summary.held_tokens = sum(len(e.tokens) for e in test)
    summary.longest = max((len(e.tokens) for e in examples), default=0)
    if not train:
        raise DataError("no training examples: " + summary.table().replace("\n", "; "))
    return Dataset(train, test, summary)


def show_example(example: Example, encoding: Any) -> str:
    """Readable form (golden files, ``--show``): runs of tokens, ``+`` marking those trained on, each special
    token on its own line, text as a JSON string."""
    lines: list[str] = []
    run: list[int] = []
    flag = False

    def flush() -> None:
        if run:
            lines.append(f"{'+' if flag else ' '} {json.dumps(encoding.decode(run), ensure_ascii=False)}")
            run.clear()

    for tok, m in zip(example.tokens, example.mask, strict=True):
        special = tok >= FIRST_SPECIAL
        if m != flag or special:
            flush()
        flag = m
        run.append(tok)
        if special:
            flush()
    flush()
    return "\n".join(lines) + "\n"
