"""Number-extraction rows (scripts/demo/extract.py) and the extra-family data that goes with them."""

from __future__ import annotations

import random

import pytest

from ossagent.model.tokenizer import o200k_harmony
from scripts.demo.extract import ExtractVocab, extract_row, extract_vocab, vocab_tokens
from scripts.demo.tasks import generate, generate_family
from scripts.demo.wordings import spelled

SEP = 200008


def _read_numbers(tokens: list[int], vocab: ExtractVocab) -> tuple[list[int], int, int]:
    """The numbers a row's source holds, in order, and how many were spelled out or written without a space."""
    words = {tuple(v): n for n, v in vocab.spelled.items()}
    out, n_spelled, n_bare, i = [], 0, 0, 0
    while i < len(tokens):
        two, one = tuple(tokens[i : i + 2]), (tokens[i],)
        if two in words or one in words:
            out.append(words[two] if two in words else words[one])
            n_spelled += 1
            i += 2 if two in words else 1
            continue
        if tokens[i] in vocab.numbers:
            out.append(vocab.numbers.index(tokens[i]))
            n_bare += i == 0 or tokens[i - 1] != vocab.space
        i += 1
    return out, n_spelled, n_bare


def test_an_extraction_row_asks_for_the_source_numbers_in_order_in_digits() -> None:
    enc = o200k_harmony()
    vocab = extract_vocab(enc.encode_ordinary, enc.decode, list(range(300, 8000)))
    words = {t for v in vocab.spelled.values() for t in v}
    assert not set(vocab.fillers) & ({*vocab.numbers, vocab.space} | words)
    assert words <= vocab_tokens(vocab)
    assert not any(c.isdigit() for t in vocab.fillers for c in enc.decode([t]))
    assert enc.decode(vocab.spelled[44]) == " " + spelled(44) == " forty-four"
    rng = random.Random(3)
    spelled_total = bare_total = 0
    for _ in range(300):
        toks, mask = extract_row(rng, vocab, SEP, 160)
        assert len(toks) <= 160 and toks.count(SEP) == 2
        first, second = toks.index(SEP), len(toks) - 1 - toks[::-1].index(SEP)
        assert mask == [i > second for i in range(len(toks))]  # loss on the digits part only
        target = [vocab.numbers.index(t) for t in toks[second + 1 :] if t in vocab.numbers]
        source, n_spelled, n_bare = _read_numbers(toks[first + 1 : second], vocab)
        assert source == target and 2 <= len(target) <= 7
        joined = enc.decode(toks[second + 1 :])
        assert joined.replace(" ", "").replace(",", "").replace(";", "").replace("*", "").replace("+", "").replace(
            "-", "") == "".join(map(str, target))
        spelled_total, bare_total = spelled_total + n_spelled, bare_total + n_bare
    assert spelled_total > 50 and bare_total > 50  # both harder layouts occur


def test_extraction_vocab_refuses_a_tokenizer_that_splits_numbers() -> None:
    with pytest.raises(ValueError, match="not one token"):
        extract_vocab(lambda s: [ord(c) for c in s], lambda t: "".join(map(chr, t)), [])


def test_extra_family_tasks_come_from_their_own_stream() -> None:
    base = [t.user for t in generate(10, 0, "train", "varied", 0.6)]
    extra = list(generate_family("python", 9, 0, "train", "varied", 0.6))
    assert [t.user for t in generate(10, 0, "train", "varied", 0.6)] == base  # untouched by the extras
    assert {t.family for t in extra} == {"python"} and [t.effort for t in extra[:3]] == ["low", "medium", "high"]
    assert [t.user for t in generate_family("python", 9, 0, "train", "varied", 0.6)] == [t.user for t in extra]
    assert not {t.user for t in extra} & set(base)


def test_extra_python_tasks_follow_the_base_data_and_leave_it_as_it_was() -> None:
    from dataclasses import replace

    from scripts.demo.train import PRESETS, build_data

    cfg = replace(PRESETS["micro"], n_tasks=5, threads=1)
    base, _ = build_data(cfg)
    more, _ = build_data(replace(cfg, python_extra=2))
    assert len(base) == 5 and len(more) == 7 and more[:5] == base


def test_extra_data_and_extraction_flags_reach_the_config_and_the_cache_key() -> None:
    from dataclasses import replace

    from scripts.demo.train import PRESETS, data_key, main

    cfg = PRESETS["micro"]
    assert "python_extra" not in data_key(cfg)  # the shipped recipe's cache key is unchanged
    assert data_key(replace(cfg, python_extra=5)) == {**data_key(cfg), "python_extra": 5}
    assert data_key(replace(cfg, extract_rows=3)) == data_key(cfg)  # rows made while training, not cached data
    for bad in (["--python-extra", "-1"], ["--extract-rows", "-2"]):
        with pytest.raises(SystemExit):
            main(["--preset", "micro", "--data-only", *bad])
