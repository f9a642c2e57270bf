"""A tiny random gpt-oss checkpoint with the full harmony vocabulary, for end-to-end runs of the real engine."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ossagent.model.checkpoint_writer import write_checkpoint
    from ossagent.model.config import GptOssConfig

    config = GptOssConfig(num_hidden_layers=2, num_experts=4, experts_per_token=2, vocab_size=201088,
                          hidden_size=64, intermediate_size=64, head_dim=16, num_attention_heads=4,
                          num_key_value_heads=2, sliding_window=8)
    folder = tmp_path_factory.mktemp("tiny-gpt-oss")
    write_checkpoint(folder, config, layout="hf", experts="mxfp4", seed=0)
    return folder


@pytest.fixture(scope="session")
def tiny_backend(tiny_model: Path) -> object:
    from ossagent.agent.local import LocalBackend

    return LocalBackend.from_pretrained(tiny_model, device="cpu")
