"""Synthetic number-extraction rows: the skill every reworded arithmetic question needs, taught without prose.

A reworded question puts its numbers between words that the code does not repeat (``the product of 628 and
44, multiplied by 166`` becomes ``(628 * 44) * 166``), so the copy circuit cannot find the next number by the
tokens before it, as it can in the generator's own wording (``(628 * 44) * `` is followed by `` 166`` in the
question too). What it needs is the number that comes after the one it wrote last, wherever the words between
them put it, and the digits of a number written in words. An extraction row asks exactly that: noise, a
separator, numbers with random filler tokens between them (some spelled out in English, some after a space,
some not), noise, the separator again, then the same numbers in digits joined one way (``,`` or ``, `` or ``
* `` ...). The loss is on that last part only. The rows are cheap (no tool runs, ~130 tokens), so each batch
can carry several.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from scripts.demo.wordings import spelled


@dataclass(frozen=True)
class ExtractVocab:
    """Token ids an extraction row is built from (model-independent: o200k_harmony ids)."""

    numbers: list[int]  # numbers[n] is the one token of ``str(n)`` for n in 0..999
    spelled: dict[int, list[int]]  # n in 0..99 -> the tokens of `` {spelled(n)}``
    space: int  # `` ``, the token before a number in running text
    fillers: list[int]  # ordinary tokens that are neither numbers nor the space
    joiners: list[list[int]]  # what the target puts between two numbers


def extract_vocab(enc: Callable[[str], list[int]], decode: Callable[[list[int]], str], plain: list[int]
                  ) -> ExtractVocab:
    """The vocabulary from a tokenizer's ``encode_ordinary`` and ``decode`` and the ordinary token ids a row may
    use as filler. Fillers never hold a digit or a number word, so a row's numbers are exactly its items."""
    numbers = []
    for n in range(1000):
        toks = enc(str(n))
        if len(toks) != 1:
            raise ValueError(f"{n} is not one token in this tokenizer")
        numbers.append(toks[0])
    (space,) = enc(" ")
    words = {n: enc(f" {spelled(n)}") for n in range(100)}
    joiners = [enc(j) for j in (",", ", ", " * ", " + ", " - ", "*", " ", "; ")]
    vocab = ExtractVocab(numbers, words, space, [], joiners)
    return replace(vocab, fillers=filler_tokens(vocab, decode, plain))


def filler_tokens(vocab: ExtractVocab, decode: Callable[[list[int]], str], plain: list[int]) -> list[int]:
    """The ids of ``plain`` that may stand between a row's numbers: no number, space or number-word token, and
    nothing whose text holds a digit."""
    skip = {*vocab.numbers, vocab.space} | {t for toks in vocab.spelled.values() for t in toks}
    return [t for t in plain if t not in skip and not any(c.isdigit() for c in decode([t]))]


def vocab_tokens(vocab: ExtractVocab) -> set[int]:
    """Every token id an extraction row can contain apart from fillers and the separator."""
    out = {*vocab.numbers, vocab.space, *(t for j in vocab.joiners for t in j)}
    return out | {t for toks in vocab.spelled.values() for t in toks}


def extract_row(rng: random.Random, vocab: ExtractVocab, sep: int, n: int) -> tuple[list[int], list[bool]]:
    """One row of at most ``n`` tokens and its loss mask (see the module doc)."""
    values = [rng.randint(0, 999) if rng.random() < 0.7 else rng.randint(0, 99) for _ in range(rng.randint(2, 7))]
    source: list[int] = []
    for v in values:
        source += rng.choices(vocab.fillers, k=rng.randint(1, 4))
        if v < 100 and rng.random() < 0.25:
            source += vocab.spelled[v]
        elif rng.random() < 0.7:
            source += [vocab.space, vocab.numbers[v]]
        else:
            source.append(vocab.numbers[v])
    joiner = rng.choice(vocab.joiners)
    target = [vocab.numbers[values[0]]]
    for v in values[1:]:
        target += [*joiner, vocab.numbers[v]]
    a = rng.choices(vocab.fillers, k=rng.randint(0, 30))
    b = rng.choices(vocab.fillers, k=rng.randint(0, 10))
    toks = [*a, sep, *source, *b, sep, *target]
    if len(toks) > n:  # keep the whole target: cut the noise in front
        toks = toks[len(toks) - n :]
    start = len(toks) - len(target)
    return toks, [i >= start for i in range(len(toks))]
