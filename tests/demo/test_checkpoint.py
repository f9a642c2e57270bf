"""The demo checkpoint format: what the trainer exports is what the real loader and engine compute with."""

from __future__ import annotations

from pathlib import Path

import torch

from ossagent.model.loader import load_model
from scripts.demo import mxfp4
from scripts.demo.tinymodel import Shape, TinyGptOss
from scripts.demo.train import VOCAB, DemoConfig, export, hf_config, save


def _rounded_like_checkpoint(model: TinyGptOss) -> None:
    """Round the trainer's weights the way the checkpoint stores them (bf16; MXFP4 experts)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("experts.gate_up_proj") or name.endswith("experts.down_proj"):
                p.copy_(mxfp4.fake_quantize(p.transpose(1, 2)).transpose(1, 2))
            else:
                p.copy_(p.to(torch.bfloat16).float())


def test_exported_checkpoint_loads_through_the_real_loader_and_computes_the_same(tmp_path: Path) -> None:
    cfg = DemoConfig(hidden=32, layers=2, experts=2, top_k=1, intermediate=32, heads=2, kv_heads=1, head_dim=16)
    used = [5, 17, 200002, 200006, 200008, 1000, 4321]
    torch.manual_seed(3)
    shape = Shape(len(used), cfg.hidden, cfg.layers, cfg.experts, cfg.top_k, cfg.intermediate, cfg.heads,
                  cfg.kv_heads, cfg.head_dim)
    tiny = TinyGptOss(shape)
    with torch.no_grad():
        for n, p in tiny.named_parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if n.endswith("norm.weight") else 0.0))
    tiny.lm_head.weight = tiny.model.embed_tokens.weight
    save(export(tiny, used, cfg), hf_config(cfg), tmp_path, {})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["config.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                     "model-00003-of-00003.safetensors", "model.safetensors.index.json"]

    real = load_model(tmp_path, dtype=torch.float32)
    assert real.config.vocab_size == VOCAB and real.config.hidden_size == cfg.hidden
    _rounded_like_checkpoint(tiny)
    ids = torch.tensor([used[i % len(used)] for i in range(150)])  # past the 128-token window
    local = torch.tensor([i % len(used) for i in range(150)])
    with torch.no_grad():
        logits = real(ids)  # [T, 201088]
        hidden = tiny(local[None])[0]
        expected_used = hidden @ tiny.lm_head.weight.t()
    torch.testing.assert_close(logits[:, used], expected_used, atol=1e-4, rtol=1e-4)
    others = torch.ones(VOCAB, dtype=torch.bool)
    others[used] = False
    assert torch.all(logits[:, others] == 0), "tokens never seen in training have all-zero rows, so logit 0"


def test_shipped_demo_checkpoint_loads_is_small_and_speaks_harmony() -> None:
    import pytest

    from ossagent.model.demo import demo_model_dir
    from ossagent.model.tokenizer import o200k_harmony

    folder = demo_model_dir()
    if folder is None:
        pytest.skip("this checkout carries no demo checkpoint (model/demo_weights)")
    for f in folder.iterdir():
        assert f.stat().st_size < 30_000_000, f"{f.name} is larger than 30 MB"
    model = load_model(folder, dtype=torch.float32)
    emb = model.embedding.weight
    seen = int((emb.abs().sum(-1) > 0).sum())
    assert 1000 < seen < 5000, "only the rows of tokens seen in training are non-zero"
    enc = o200k_harmony()
    prompt = enc.encode(
        "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: "
        "2024-06\nCurrent date: 2026-11-30\n\nReasoning: low\n\n# Valid channels: analysis, commentary, final. "
        "Channel must be included for every message.<|end|><|start|>user<|message|>What is 12 * 34?<|end|>"
        "<|start|>assistant", allowed_special="all")
    with torch.no_grad():
        first = int(model(torch.tensor(prompt))[-1].argmax())
    assert first == 200005, "the demo model starts its answer with <|channel|>"
