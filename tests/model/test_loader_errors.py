"""Each bad checkpoint gives a clear error that names the file and the tensor (or key) at fault."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ossagent.model.config import ConfigError, GptOssConfig
from ossagent.model.loader import load_model
from ossagent.model.safetensors_mmap import CheckpointError, SafetensorsFile

EMBED = "model.embed_tokens.weight"
SINKS = "model.layers.1.self_attn.sinks"


@pytest.fixture
def folder(tmp_path: Path, ckpt_mxfp4: Path) -> Path:
    d = tmp_path / "m"
    shutil.copytree(ckpt_mxfp4, d)
    return d


def index(folder: Path) -> dict[str, str]:
    return json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]


def rewrite(folder: Path, name: str, tensor: torch.Tensor | None) -> Path:
    """Replace (or drop, with None) one tensor in the shard the index names for it."""
    shard = folder / index(folder)[name]
    tensors = load_file(shard)
    if tensor is None:
        del tensors[name]
    else:
        tensors[name] = tensor
    save_file(tensors, shard)
    return shard


def test_loads_when_intact(folder: Path) -> None:
    assert load_model(folder).config.num_hidden_layers == 4


def test_missing_shard_file(folder: Path) -> None:
    shard = folder / index(folder)[SINKS]
    shard.unlink()
    with pytest.raises(CheckpointError, match=rf"{shard.name}: file not found \(it should hold tensor"):
        load_model(folder)


def test_missing_tensor(folder: Path) -> None:
    shard = rewrite(folder, SINKS, None)
    with pytest.raises(CheckpointError, match=rf"{shard.name}: tensor '{SINKS}' is missing"):
        load_model(folder)


def test_missing_tensor_in_index(folder: Path) -> None:
    idx = json.loads((folder / "model.safetensors.index.json").read_text())
    del idx["weight_map"][SINKS]
    (folder / "model.safetensors.index.json").write_text(json.dumps(idx))
    with pytest.raises(CheckpointError, match=rf"tensor '{SINKS}' is missing from the checkpoint"):
        load_model(folder)


def test_wrong_shape(folder: Path) -> None:
    shard = rewrite(folder, SINKS, torch.zeros(7, dtype=torch.bfloat16))
    with pytest.raises(CheckpointError, match=rf"{shard.name}: tensor '{SINKS}' has shape \[7\], expected \[8\]"):
        load_model(folder)


def test_wrong_dtype(folder: Path) -> None:
    name = "model.layers.0.mlp.experts.gate_up_proj_blocks"
    good = load_file(folder / index(folder)[name])[name]
    shard = rewrite(folder, name, good.to(torch.int8))
    with pytest.raises(CheckpointError, match=rf"{shard.name}: tensor '{name}' has dtype torch.int8, expected torch.uint8"):
        load_model(folder)


def test_truncated_file(folder: Path) -> None:
    shard = folder / index(folder)[EMBED]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match=rf"{shard.name}: truncated file: tensor '.+' needs data up to byte"):
        load_model(folder)


def test_truncated_header(folder: Path) -> None:
    shard = folder / index(folder)[EMBED]
    shard.write_bytes(struct.pack("<Q", 10_000) + b"{}")
    with pytest.raises(CheckpointError, match=rf"{shard.name}: truncated file \(header claims"):
        load_model(folder)


def test_unexpected_tensor(folder: Path) -> None:
    rewrite(folder, SINKS, load_file(folder / index(folder)[SINKS])[SINKS])
    shard = folder / index(folder)[SINKS]
    tensors = load_file(shard)
    tensors["model.layers.9.mlp.router.weight"] = torch.zeros(2)
    save_file(tensors, shard)
    idx = json.loads((folder / "model.safetensors.index.json").read_text())
    idx["weight_map"]["model.layers.9.mlp.router.weight"] = shard.name
    (folder / "model.safetensors.index.json").write_text(json.dumps(idx))
    with pytest.raises(CheckpointError, match=r"tensors this model does not use: \['model.layers.9.mlp.router.weight'\]"):
        load_model(folder)


def test_config_errors(folder: Path) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "use_qk_norm": True}))
    with pytest.raises(ConfigError, match=r"config.json: unknown keys \['use_qk_norm'\]"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps({**cfg, "rope_scaling": {"rope_type": "linear", "factor": 2.0}}))
    with pytest.raises(ConfigError, match="rope_type 'linear' is not supported"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps({**cfg, "quantization_config": {"quant_method": "gptq"}}))
    with pytest.raises(ConfigError, match="quant_method 'gptq' is not supported"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps({**cfg, "tie_word_embeddings": True}))
    with pytest.raises(ConfigError, match="tie_word_embeddings"):
        load_model(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"config\.json: not valid JSON"):
        load_model(folder)
    (folder / "config.json").unlink()
    # without the HF config the original/ layout is used
    assert load_model(folder).config.num_hidden_layers == 4


def test_original_config_errors(folder: Path) -> None:
    orig = folder / "original" / "config.json"
    raw = json.loads(orig.read_text())
    orig.write_text(json.dumps({**raw, "num_shared_experts": 1}))
    with pytest.raises(ConfigError, match=r"original/config.json: unknown keys \['num_shared_experts'\]"):
        load_model(folder, layout="original")
    del raw["head_dim"]
    orig.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"missing keys \['head_dim'\]"):
        load_model(folder, layout="original")


def test_config_round_trips(config: GptOssConfig) -> None:
    assert GptOssConfig.from_hf_dict(config.to_hf_dict()) == config
    assert GptOssConfig.from_original_dict(config.to_original_dict()) == config
    with pytest.raises(ConfigError, match="multiple of num_key_value_heads"):
        GptOssConfig.from_original_dict({**config.to_original_dict(), "num_key_value_heads": 3})


def test_not_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"config\.json: file not found"):
        load_model(tmp_path)


# ---------------------------------------------------------------- hostile checkpoints: clear errors, quickly


def _shard_with_header(shard: Path, header: object, data: bytes = b"\0" * 64) -> None:
    raw = json.dumps(header).encode()
    shard.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("header", [
    [], "x", 5, None,
    {"t": 5}, {"t": {"dtype": "F32", "shape": "ab", "data_offsets": [0, 8]}},
    {"t": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}},  # reads the header as data
    {"t": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}},
    {"t": {"dtype": "F32", "shape": [-2, -1], "data_offsets": [0, 8]}},
    {"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 16]}},
    {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
     "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}},  # overlapping
    {"t": {"dtype": "F32", "shape": [2], "data_offsets": [0.5, 8.5]}},
    {"t": {"dtype": "F32", "shape": [True, 2], "data_offsets": [0, 8]}},
    {"__metadata__": 5},
], ids=lambda h: json.dumps(h)[:40])
def test_malformed_safetensors_headers(folder: Path, header: object) -> None:
    shard = folder / index(folder)[EMBED]
    _shard_with_header(shard, header)
    with pytest.raises(CheckpointError, match=rf"{shard.name}: "):
        SafetensorsFile(shard)
    with pytest.raises(CheckpointError, match=rf"{shard.name}: "):
        load_model(folder)


@pytest.mark.timeout(20)
def test_a_fifo_in_place_of_a_shard_does_not_hang(folder: Path) -> None:
    shard = folder / index(folder)[EMBED]
    shard.unlink()
    os.mkfifo(shard)
    with pytest.raises(CheckpointError, match=rf"{shard.name}: not a regular file"):
        SafetensorsFile(shard)
    with pytest.raises(CheckpointError, match=rf"{shard.name}"):
        load_model(folder)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("override", [
    {"sliding_window": 10**12}, {"num_hidden_layers": 10**9}, {"num_hidden_layers": 10**9, "layer_types": None},
    {"hidden_size": 10**9}, {"vocab_size": 10**12}, {"num_local_experts": 10**8}, {"head_dim": 10**8},
    {"rope_theta": 0}, {"rope_theta": -1.0}, {"rope_theta": 1.0}, {"rope_theta": float("nan")},
    {"rope_theta": float("inf")}, {"rms_norm_eps": -1.0}, {"swiglu_limit": float("nan")},
    {"rope_scaling": {"rope_type": "yarn", "factor": float("nan"), "beta_fast": 32.0, "beta_slow": 1.0,
                      "original_max_position_embeddings": 4096}},
    {"rope_scaling": {"rope_type": "yarn", "factor": 1e30, "beta_fast": 32.0, "beta_slow": 1.0,
                      "original_max_position_embeddings": 4096}},
    {"rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 0.0, "beta_slow": 0.0,
                      "original_max_position_embeddings": 4096}},
    {"rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                      "original_max_position_embeddings": 10**15}},
    {"num_hidden_layers": "4"}, {"sliding_window": 8.5}, {"num_key_value_heads": True},
], ids=lambda o: json.dumps(o)[:50])
def test_absurd_config_values(folder: Path, override: dict[str, object]) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(override)
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"config\.json: "):
        load_model(folder)


def test_sizes_that_disagree_with_the_tensors(folder: Path) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    for key, value in (("hidden_size", 128), ("vocab_size", 301), ("num_local_experts", 16), ("intermediate_size", 32)):
        (folder / "config.json").write_text(json.dumps({**cfg, key: value}))
        with pytest.raises((CheckpointError, ConfigError), match=r"has shape|expected|config\.json"):
            load_model(folder)


@pytest.mark.parametrize("weight_map", [[], {EMBED: 5}, {EMBED: "../escape.safetensors"}, {EMBED: "/dev/zero"}])
def test_malformed_index(folder: Path, weight_map: object) -> None:
    idx = json.loads((folder / "model.safetensors.index.json").read_text())
    idx["weight_map"] = weight_map
    (folder / "model.safetensors.index.json").write_text(json.dumps(idx))
    with pytest.raises(CheckpointError, match=r"index\.json: malformed index"):
        load_model(folder)
