"""Tiny gpt-oss configurations and checkpoints written by the tests (both layouts, MXFP4 and bf16 experts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ossagent.model.checkpoint_writer import write_checkpoint
from ossagent.model.config import GptOssConfig


def tiny_config(**overrides: object) -> GptOssConfig:
    """Every size small; the sliding window is scaled down to 8 so short sequences cross it."""
    base: dict[str, object] = dict(
        num_hidden_layers=4, num_experts=8, experts_per_token=2, vocab_size=300, hidden_size=64,
        intermediate_size=64, head_dim=16, num_attention_heads=8, num_key_value_heads=2, sliding_window=8,
    )
    base.update(overrides)
    return GptOssConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def config() -> GptOssConfig:
    return tiny_config()


@pytest.fixture(scope="session")
def ckpt_mxfp4(tmp_path_factory: pytest.TempPathFactory, config: GptOssConfig) -> Path:
    """HF layout (3+ shards with index) and original/ layout of the same random MXFP4 weights."""
    d = tmp_path_factory.mktemp("ckpt-mxfp4")
    write_checkpoint(d, config, layout="hf", experts="mxfp4", seed=1, shard_bytes=200_000)
    write_checkpoint(d, config, layout="original", experts="mxfp4", seed=1)
    return d


@pytest.fixture(scope="session")
def ckpt_bf16(tmp_path_factory: pytest.TempPathFactory, config: GptOssConfig) -> Path:
    d = tmp_path_factory.mktemp("ckpt-bf16")
    write_checkpoint(d, config, layout="hf", experts="bf16", seed=2, shard_bytes=300_000)
    write_checkpoint(d, config, layout="original", experts="bf16", seed=2)
    return d
