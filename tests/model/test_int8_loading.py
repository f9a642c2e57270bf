"""8-bit attention/unembedding quantised while loading: the same model as quantising after a bf16 load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ossagent.model.checkpoint_writer import write_checkpoint
from ossagent.model.config import GptOssConfig
from ossagent.model.engine import Engine, SamplingParams
from ossagent.model.loader import load_model
from ossagent.model.quant8 import Int8Linear, quantize_model, release_file_pages
from ossagent.model.safetensors_mmap import SafetensorsFile

TINY = GptOssConfig(
    num_hidden_layers=2, num_experts=8, experts_per_token=2, vocab_size=512, hidden_size=64,
    intermediate_size=96, head_dim=16, num_attention_heads=4, num_key_value_heads=2, sliding_window=8,
)


@pytest.mark.parametrize("layout", ["hf", "original"])
def test_int8_while_loading_equals_int8_after_loading(tmp_path: Path, layout: str) -> None:
    write_checkpoint(tmp_path, TINY, layout=layout, experts="mxfp4", seed=11)
    after = load_model(tmp_path)
    assert quantize_model(after) == 4 * TINY.num_hidden_layers + 1
    during = load_model(tmp_path, weights="int8")
    for name, mod in after.named_modules():
        if isinstance(mod, Int8Linear):
            other = during.get_submodule(name)
            assert isinstance(other, Int8Linear)
            assert torch.equal(other.weight, mod.weight) and torch.equal(other.scale, mod.scale)
            assert (other.bias is None) == (mod.bias is None)
            if mod.bias is not None:
                assert torch.equal(other.bias, mod.bias)
    tokens = torch.arange(20) * 7 % TINY.vocab_size
    with torch.no_grad():
        assert torch.equal(during(tokens), after(tokens))


def test_weights_option(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, TINY, seed=12)
    with pytest.raises(ValueError, match="weights must be one of"):
        load_model(tmp_path, weights="int4")
    engine = Engine.from_pretrained(tmp_path, device="cpu", weights="int8", native_kernels=False)
    assert isinstance(engine.model.unembedding, Int8Linear)
    assert isinstance(engine.model.blocks[0].attn.out, Int8Linear)
    params = SamplingParams(max_tokens=3, temperature=0.0)
    assert len(list(engine.generate([1, 2, 3], params))) == 3


def test_released_file_pages_read_back_the_same(tmp_path: Path) -> None:
    write_checkpoint(tmp_path, TINY, seed=13)
    f = SafetensorsFile(tmp_path / "model.safetensors")
    t = f.get("lm_head.weight")
    before = t.clone()
    release_file_pages(t)
    release_file_pages(t[3:9])
    assert torch.equal(t, before)
