"""Grammar-constrained decoding of one assistant turn, as the engine's per-step hook.

A :class:`TurnConstraints` is compiled once per request shape (declared functions, ``tool_choice``,
response format, builtin recipients); :meth:`TurnConstraints.hook` hands out a fresh
:class:`ConstrainedHook` for each generation that starts right after the prompt's ``<|start|>assistant``.

The hook runs its own harmony state machine over the generated tokens, one llguidance matcher per part:

* **header** (up to ``<|message|>``): a Lark grammar of the header forms gpt-oss writes. Recipients
  ``functions.NAME`` are limited to declared functions (or to the named one, or none), the ``final``
  channel is left out when a call is required, both recipient placements and the optional space before
  ``<|constrain|>`` are accepted. Textual spellings of special tokens never match (llguidance marks them).
* **function body**: ``%json`` of that function's schema followed by ``<|call|>``.
* **final body** with a response format: ``%json`` of its schema followed by ``<|return|>``.
* **free bodies** (analysis, preamble, builtin tool input, a final answer without a format): the text stays
  free; only tokens that cannot belong there are masked. Those are the special tokens other than the stop
  tokens (``<|start|>``, ``<|channel|>``, ``<|message|>``, ``<|constrain|>``, reserved ids: harmony content
  is plain text, and a small or quantised model that writes markup inside a message breaks the turn's parse)
  and ``<|call|>`` ending a message without a recipient. With a call required or a response format, also the
  stop tokens that would end the message the wrong way (``<|return|>`` in analysis). ``free_text_limit``
  optionally closes a free body after that many tokens (a reasoning budget; tests use it to bound random
  models).

Wherever the grammar admits exactly one continuation the hook returns it in ``StepAction.forced``
(llguidance's canonical-safe fast-forward), so the engine feeds it without sampling.

Masks are ``torch.bool`` tensors of the engine's vocabulary size (True = allowed), unpacked from
llguidance's 32-bit bitmask; torch is imported lazily.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import llguidance as llg
import llguidance.numpy as llg_np
import numpy as np

from ossagent.agent.choices import ToolChoice
from ossagent.agent.functions import NAMESPACE, Functions, FunctionTool, ResponseFormat
from ossagent.agent.harmony.tokens import CALL, END, MESSAGE, RETURN, STOPS
from ossagent.model.hooks import StepAction
from ossagent.tools.base import UserError

if TYPE_CHECKING:
    import tiktoken
    import torch

_RECIPIENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


@lru_cache(maxsize=2)
def harmony_lltokenizer(encoding: tiktoken.Encoding) -> llg.LLTokenizer:
    """llguidance's view of o200k_harmony (built once per encoding; about 1-10 s)."""
    import llguidance.tiktoken

    return llguidance.tiktoken.lltokenizer_from_encoding(encoding, n_vocab=encoding.n_vocab, eos_token=list(STOPS))


@lru_cache(maxsize=2)
def markup_ids(encoding: tiktoken.Encoding) -> tuple[int, ...]:
    """The special token ids that never occur inside a message's content (every special but the stops)."""
    ids = (encoding.encode_single_token(t) for t in encoding.special_tokens_set)
    return tuple(sorted(i for i in ids if i not in (RETURN, CALL, END)))


@lru_cache(maxsize=512)
def _compiled(tokenizer: llg.LLTokenizer, lark: str) -> llg.LLMatcher:
    """A compiled matcher per grammar, shared: callers only ever ``deep_copy()`` it (about 1 ms saved each)."""
    matcher = llg.LLMatcher(tokenizer, llg.LLMatcher.grammar_from_lark(lark), log_level=0)
    if matcher.is_error():
        raise UserError(f"cannot compile the turn grammar: {matcher.get_error()}")
    return matcher


def _lark_alt(words: Iterable[str]) -> str:
    return " | ".join(json.dumps(w) for w in words)


def header_lark(
    functions: Sequence[str], builtins: Sequence[str], *, final: bool, with_role: bool
) -> str:
    """The Lark grammar of one assistant message header, ending with ``<|message|>``."""
    rules = ["hdr: plain" + (" | fcall" if functions else "") + (" | bcall" if builtins else "")]
    channels = ["analysis", "commentary"] + (["final"] if final else [])
    rules.append(f"plain: <|channel|> ({_lark_alt(channels)}) <|message|>")
    if functions:
        rules += [
            'fcall: <|channel|> "commentary to=functions." fname ((" "? <|constrain|> "json") | " json") <|message|>'
            ' | " to=functions." fname <|channel|> "commentary" ((" "? <|constrain|> "json") | " json") <|message|>',
            f"fname: {_lark_alt(functions)}",
        ]
    if builtins:
        rules += [
            'bcall: <|channel|> bch " to=" bname ctype? <|message|> | " to=" bname <|channel|> bch ctype? <|message|>',
            'bch: "analysis" | "commentary"',
            f"bname: {_lark_alt(builtins)}",
            'ctype: " "? <|constrain|> CTYPE | " " CTYPE',
            "CTYPE: /[a-z]{1,16}/",
        ]
    start = 'start: <|start|> "assistant" hdr' if with_role else "start: hdr"
    return "\n".join([start, *rules]) + "\n"


def body_lark(grammar_json: str, terminator: int) -> str:
    return f"start: body <[{terminator}]>\nbody: %json {grammar_json}\n"


@dataclass(frozen=True)
class Header:
    """What a finished header says: its channel and recipient (``None`` when absent)."""

    channel: str | None
    recipient: str | None


_CHANNEL_IN_HEADER = re.compile(r"<\|channel\|>([^\s<]+)")
_TO_IN_HEADER = re.compile(r"(?:^|\s|>)to=([^\s<]+)")


def parse_header(text: str) -> Header:
    ch = _CHANNEL_IN_HEADER.search(text)
    to = _TO_IN_HEADER.search(text)
    return Header(ch.group(1) if ch else None, to.group(1) if to else None)


class ConstraintViolation(RuntimeError):
    """The engine produced a token the hook's mask did not allow (an engine bug, not the model's fault)."""


@dataclass
class HookStats:
    masks: int = 0
    mask_seconds: list[float] = field(default_factory=list)
    forced_tokens: int = 0
    consumed: int = 0


class TurnConstraints:
    """Compiled grammars for one request shape; :meth:`hook` makes a per-generation :class:`ConstrainedHook`."""

    def __init__(
        self,
        functions: Functions | Iterable[FunctionTool] = (),
        *,
        encoding: tiktoken.Encoding,
        vocab_size: int | None = None,
        tool_choice: ToolChoice | str | tuple[str, str] | Mapping[str, Any] | None = "auto",
        response_format: ResponseFormat | None = None,
        builtin_recipients: Sequence[str] = (),
        free_text_limit: int | None = None,
    ) -> None:
        self.functions = functions if isinstance(functions, Functions) else Functions(functions)
        self.tool_choice = ToolChoice.parse(tool_choice)
        self.response_format = response_format
        self.vocab_size = vocab_size or encoding.n_vocab
        self.encoding = encoding
        self.free_text_limit = free_text_limit
        for b in builtin_recipients:
            if not _RECIPIENT_RE.match(b) or b.startswith(f"{NAMESPACE}."):
                raise UserError(f"builtin recipient {b!r} is not a valid harmony recipient outside 'functions'")
        mode = self.tool_choice.mode
        if mode in ("required", "function") and not len(self.functions) and not builtin_recipients:
            raise UserError(f"tool_choice={mode} needs at least one declared function")
        callable_names = self.functions.names
        if mode == "function":
            if self.tool_choice.name not in self.functions:
                raise UserError(f"tool_choice names {self.tool_choice.name!r}, which is not a declared function "
                                f"(declared: {', '.join(callable_names) or 'none'})")
            callable_names = [self.tool_choice.name]
            builtin_recipients = ()
        elif mode == "none":
            callable_names = []
        self.builtins = tuple(builtin_recipients)
        self.allow_final = mode in ("auto", "none")
        # In plain ``auto`` a free body masks only markup and a recipient-less <|call|>; otherwise it may also
        # not end with a stop token of another kind (the turn owes a call, a final answer, or a structured one).
        self.guard_free_text = mode != "auto" or response_format is not None
        self.tokenizer = harmony_lltokenizer(encoding)
        self._header_first = self._compile(header_lark(callable_names, self.builtins, final=self.allow_final,
                                                       with_role=False))
        self._header_next = self._compile(header_lark(callable_names, self.builtins, final=self.allow_final,
                                                      with_role=True))
        self._bodies = {n: self._compile(body_lark(self.functions[n].compiled.grammar_json, CALL))
                        for n in callable_names}
        self._final = (self._compile(body_lark(response_format.compiled.grammar_json, RETURN))
                       if response_format is not None else None)
        self._free_masks: dict[tuple[int, ...], torch.Tensor] = {}

    def _compile(self, lark: str) -> llg.LLMatcher:
        return _compiled(self.tokenizer, lark)

    def free_mask(self, stops: tuple[int, ...]) -> torch.Tensor:
        """All tokens allowed except markup (:func:`markup_ids`) and ``stops`` (cached: the same tensor object
        every step)."""
        mask = self._free_masks.get(stops)
        if mask is None:
            import torch

            mask = torch.ones(self.vocab_size, dtype=torch.bool)
            mask[[b for b in (*markup_ids(self.encoding), *stops) if b < self.vocab_size]] = False
            self._free_masks[stops] = mask
        return mask

    def hook(self, prefill: Sequence[int] = ()) -> ConstrainedHook:
        """A hook for one generation; ``prefill`` holds tokens of this turn already in the prompt after
        ``<|start|>assistant`` (for example a header the caller wrote)."""
        return ConstrainedHook(self, prefill)


class ConstrainedHook:
    """One generation's state: which part of the turn it is in and that part's matcher."""

    def __init__(self, constraints: TurnConstraints, prefill: Sequence[int] = ()) -> None:
        self.c = constraints
        self.stats = HookStats()
        self.done = False
        self._n = 0
        self._bits = llg_np.allocate_token_bitmask(1, constraints.tokenizer.vocab_size)
        self._enter_header(first=True)
        for tok in prefill:
            try:
                self._consume(int(tok))
            except ConstraintViolation as exc:
                raise UserError(f"the prefilled tokens do not fit the turn's constraints: {exc}") from exc

    # ------------------------------------------------------------------ states

    def _enter_header(self, first: bool) -> None:
        self.part = "header"
        self.matcher: llg.LLMatcher | None = (self.c._header_first if first else self.c._header_next).deep_copy()
        self.header_tokens: list[int] = []
        self.function: str | None = None

    def _enter_free(self, ends: tuple[int, ...], close: int) -> None:
        self.part = "free"
        self.matcher = None
        self.free_ends = ends
        self.free_close = close
        self.free_count = 0
        if self.c.guard_free_text:
            stops = tuple(t for t in (RETURN, CALL, END) if t not in ends)
        else:  # a call needs a recipient; other endings stay the model's choice
            stops = () if CALL in ends else (CALL,)
        self.free_mask_tensor = self.c.free_mask(stops)

    def _finish_header(self) -> None:
        text = self.c.encoding.decode(self.header_tokens)
        hdr = parse_header(text)
        self.header = hdr
        if hdr.recipient is not None and hdr.recipient.startswith(f"{NAMESPACE}."):
            self.function = hdr.recipient.split(".", 1)[1]
            self.part = "json"
            self.matcher = self.c._bodies[self.function].deep_copy()
        elif hdr.recipient is not None:
            self._enter_free((CALL,), CALL)
        elif hdr.channel == "final" and self.c._final is not None:
            self.part = "json"
            self.matcher = self.c._final.deep_copy()
        elif hdr.channel == "final":
            self._enter_free((RETURN, END), RETURN)
        else:
            self._enter_free((END,), END)

    def _consume(self, tok: int) -> None:
        if self.done:
            raise ConstraintViolation(f"token {tok} after the turn ended")
        self.stats.consumed += 1
        if self.part == "free":
            self.free_count += 1
            if tok < self.c.vocab_size and not bool(self.free_mask_tensor[tok]):
                raise ConstraintViolation(f"token {tok} ({self.c.encoding.decode([tok])!r}) cannot occur in a "
                                          f"message body that ends with {self.free_ends}")
            if tok == END:
                self._enter_header(first=False)
            elif tok in STOPS:
                self.done = True
            return
        assert self.matcher is not None
        if not self.matcher.consume_token(tok):
            raise ConstraintViolation(
                f"token {tok} ({self.c.encoding.decode([tok])!r}) is not allowed in the {self.part}: "
                f"{self.matcher.get_error()}"
            )
        if self.part == "header":
            self.header_tokens.append(tok)
            if tok == MESSAGE and self.matcher.is_stopped():
                self._finish_header()
        elif self.matcher.is_stopped():  # json body: the terminator was consumed
            self.done = True

    # ------------------------------------------------------------------ the StepHook protocol

    def step(self, generated: Sequence[int]) -> StepAction:
        if len(generated) < self._n:
            raise ConstraintViolation("the generated tokens shrank; use a new hook per generation")
        for tok in generated[self._n:]:
            self._consume(int(tok))
        self._n = len(generated)
        if self.done:
            return StepAction(stop=True)
        if self.part == "free":
            if self.c.free_text_limit is not None and self.free_count >= self.c.free_text_limit:
                self.stats.forced_tokens += 1
                return StepAction(forced=[self.free_close])
            return StepAction(mask=self.free_mask_tensor)
        assert self.matcher is not None
        forced = self.matcher.compute_ff_tokens()
        if forced:
            self.stats.forced_tokens += len(forced)
            return StepAction(forced=list(forced))
        return StepAction(mask=self.mask())

    def mask(self) -> torch.Tensor:
        """The current matcher's allowed tokens as a bool tensor of the engine's vocabulary size."""
        import torch

        t0 = time.perf_counter()
        assert self.matcher is not None
        llg_np.fill_next_token_bitmask(self.matcher, self._bits)
        bits = np.unpackbits(self._bits.view(np.uint8), bitorder="little")
        size = self.c.vocab_size
        if bits.shape[0] < size:
            bits = np.concatenate([bits, np.zeros(size - bits.shape[0], dtype=np.uint8)])
        mask = torch.from_numpy(bits[:size]).view(torch.bool)
        self.stats.masks += 1
        self.stats.mask_seconds.append(time.perf_counter() - t0)
        return mask
