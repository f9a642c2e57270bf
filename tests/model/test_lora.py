"""LoRA adapters: the hooked forward equals the merged weights' forward; save, load and merge round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ossagent.model.config import GptOssConfig
from ossagent.model.gpt_oss import GptOss
from ossagent.model.loader import load_model
from ossagent.model.lora import TARGETS, AdapterError, LoraAdapters, LoraConfig, merge_checkpoint
from ossagent.model.safetensors_mmap import SafetensorsFile


def _randomize(adapters: LoraAdapters, name: str, seed: int, std: float = 0.05) -> None:
    """A trained-looking adapter: B is zero when an adapter is made, which would make every test pass."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapters.parameters_of(name):
            p.copy_(torch.randn(p.shape, generator=g) * std)


def _fp32_model(config: GptOssConfig, quantized: bool = False) -> GptOss:
    model = GptOss(config, quantized_experts=quantized, dtype=torch.float32)
    model.init_random(seed=3)
    return model.eval()


@pytest.mark.parametrize("targets", [("q", "k", "v", "out"), TARGETS])
def test_forward_equals_merged_forward(config: GptOssConfig, targets: tuple[str, ...]) -> None:
    model = _fp32_model(config)
    tokens = torch.randint(0, config.vocab_size, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base = model(tokens)
    adapters = LoraAdapters(model)
    adapters.add("a", LoraConfig(rank=4, alpha=8.0, targets=targets))
    with torch.no_grad():
        assert torch.equal(model(tokens), base)  # B = 0: a new adapter changes nothing
    _randomize(adapters, "a", seed=1)
    merged = GptOss(config, dtype=torch.float32)
    merged.load_state_dict(adapters.merged_state_dict("a"))
    with torch.no_grad():
        got, want = model(tokens), merged.eval()(tokens)
        assert (got - base).abs().max() > 1e-2  # the adapter does something ...
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)  # ... and it is the merged weights
        with adapters.using(None):
            assert torch.equal(model(tokens), base)
    adapters.merge_into_model("a")
    assert adapters.names() == []
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), want, rtol=1e-5, atol=1e-5)


def test_several_adapters_by_name_and_errors(config: GptOssConfig) -> None:
    model = _fp32_model(config)
    tokens = torch.arange(12) % config.vocab_size
    adapters = LoraAdapters(model)
    adapters.add("one", LoraConfig(rank=2))
    adapters.add("two", LoraConfig(rank=3, targets=("q", "unembedding")))
    _randomize(adapters, "one", 1)
    _randomize(adapters, "two", 2)
    with torch.no_grad():
        outs = {}
        for name in ("one", "two", None):
            adapters.activate(name)
            outs[name] = model(tokens)
    assert not torch.allclose(outs["one"], outs["two"])
    assert adapters.active is None
    with pytest.raises(AdapterError, match="no adapter named 'three'"):
        adapters.activate("three")
    with pytest.raises(AdapterError, match="already attached"):
        adapters.add("one", LoraConfig())
    with pytest.raises(AdapterError, match="targets"):
        LoraConfig(targets=("experts",))
    with pytest.raises(AdapterError, match="rank"):
        LoraConfig(rank=0)


def test_save_load_round_trip(config: GptOssConfig, tmp_path: Path) -> None:
    model = _fp32_model(config)
    tokens = torch.arange(16) % config.vocab_size
    adapters = LoraAdapters(model)
    adapters.add("mine", LoraConfig(rank=4, alpha=4.0, targets=("q", "v", "router")))
    _randomize(adapters, "mine", 5)
    with torch.no_grad():
        want = model(tokens)
    folder = adapters.save("mine", tmp_path / "adapter", base_model="tiny")
    names = SafetensorsFile(folder / "adapter_model.safetensors").keys()
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in names
    assert "base_model.model.model.layers.3.mlp.router.lora_B.weight" in names

    fresh = _fp32_model(config)
    loaded = LoraAdapters(fresh)
    assert loaded.load(folder) == "mine"
    assert loaded.load(folder, name="again") == "again"
    with torch.no_grad():
        torch.testing.assert_close(fresh(tokens), want, rtol=0, atol=0)

    other = GptOss(GptOssConfig(**{**config.__dict__, "hidden_size": 32, "layer_types": ()}), dtype=torch.float32)
    with pytest.raises(AdapterError, match="made for a model with"):
        LoraAdapters(other).load(folder)
    with pytest.raises(AdapterError, match="not an adapter folder"):
        LoraAdapters(fresh).load(tmp_path)


def test_merge_checkpoint_keeps_experts_packed(config: GptOssConfig, ckpt_mxfp4: Path, tmp_path: Path) -> None:
    """The merged checkpoint loads with the logits of base + adapter; the MXFP4 experts are copied bit for bit."""
    model = load_model(ckpt_mxfp4, layout="hf")
    adapters = LoraAdapters(model)
    adapters.add("m", LoraConfig(rank=4, targets=TARGETS))
    _randomize(adapters, "m", 7, std=0.1)
    tokens = torch.arange(24) % config.vocab_size
    with torch.no_grad():
        want = model(tokens).float()
    adapter_dir = adapters.save("m", tmp_path / "adapter")
    out = merge_checkpoint(ckpt_mxfp4, adapter_dir, tmp_path / "merged", shard_bytes=300_000)
    with torch.no_grad():
        got = load_model(out)(tokens).float()
    # bf16 weights: merging rounds W + BA once, the hooked forward rounds W x and BA x separately
    assert (got - want).abs().max() < 0.05 * want.abs().max()

    def tensors(folder: Path) -> dict[str, torch.Tensor]:
        return {k: f.get(k) for p in sorted(folder.glob("*.safetensors")) for f in [SafetensorsFile(p)]
                for k in f.entries}

    base, merged = tensors(ckpt_mxfp4), tensors(out)
    assert set(base) == set(merged)
    for k, t in base.items():
        same = torch.equal(t, merged[k])
        changed_kind = any(s in k for s in ("self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                            "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                                            "mlp.router.weight", "lm_head.weight"))
        assert same != changed_kind, k


def test_attach_for_inference_merged_or_by_name_and_on_int8(config: GptOssConfig, tmp_path: Path) -> None:
    from ossagent.model.lora import attach_adapters
    from ossagent.model.quant8 import quantize_model

    tokens = torch.arange(10) % config.vocab_size
    src = LoraAdapters(_fp32_model(config))
    outs: dict[str, torch.Tensor] = {}
    for i, name in enumerate(("x", "y")):
        src.add(name, LoraConfig(rank=2, targets=("q", "v", "unembedding")))
        _randomize(src, name, 10 + i)
        src.save(name, tmp_path / name)
        with torch.no_grad():
            outs[name] = src.model(tokens)
    merged = _fp32_model(config)
    assert attach_adapters(merged, {"x": tmp_path / "x"}).names() == []
    several = attach_adapters(_fp32_model(config), {"x": tmp_path / "x", "y": tmp_path / "y"})
    assert several.active is None
    with torch.no_grad():
        torch.testing.assert_close(merged(tokens), outs["x"], rtol=1e-5, atol=1e-5)
        for name in ("x", "y"):
            with several.using(name):
                torch.testing.assert_close(several.model(tokens), outs[name], rtol=1e-5, atol=1e-5)

    int8 = _fp32_model(config)
    quantize_model(int8)  # int8 attention and unembedding: adapters still apply unmerged, merging is refused
    on_int8 = attach_adapters(int8, {"y": tmp_path / "y"}, merge=False)
    with torch.no_grad(), on_int8.using("y"):
        assert (int8(tokens) - outs["y"]).abs().max() < 0.05 * outs["y"].abs().max()
    with pytest.raises(AdapterError, match=r"Int8Linear: an adapter merges"):
        on_int8.merge_into_model("y")
