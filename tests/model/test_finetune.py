"""LoRA training: loss drops on a tiny model, checkpointed = plain gradients, resume = one run, GPU smoke test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ossagent.model.config import GptOssConfig
from ossagent.model.finetune import (
    TrainConfig,
    Trainer,
    batch_tensors,
    finetune,
    frozen_expert_mlp,
    masked_loss,
)
from ossagent.model.gpt_oss import GptOss
from ossagent.model.loader import load_model
from ossagent.model.lora import TARGETS, LoraAdapters, LoraConfig


@dataclass(frozen=True)
class S:
    tokens: list[int]
    mask: list[bool]


def _samples(config: GptOssConfig, n: int, length: int = 24, seed: int = 0) -> list[S]:
    """Fixed random sequences; the loss is on their second half (what a model 'writes' after a prompt)."""
    g = torch.Generator().manual_seed(seed)
    return [S(torch.randint(0, config.vocab_size, (length,), generator=g).tolist(),
              [i >= length // 2 for i in range(length)]) for _ in range(n)]


def _model(config: GptOssConfig, dtype: torch.dtype = torch.float32, device: str = "cpu") -> GptOss:
    model = GptOss(config, quantized_experts=True, dtype=dtype, device=device)
    model.init_random(seed=4)
    return model


def test_a_few_steps_reduce_the_loss_and_touch_only_the_adapter(config: GptOssConfig, tmp_path: Path) -> None:
    model = _model(config)
    packed = {n: b.clone() for n, b in model.named_buffers() if n.endswith(("_blocks", "_scales"))}
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = _samples(config, 4)
    cfg = TrainConfig(epochs=8, lr=3e-2, batch=2, warmup=2, seed=1)
    result = finetune(model, data, tmp_path / "out", held=data[:2], lora=LoraConfig(rank=8, targets=TARGETS),
                      cfg=cfg)
    assert result.steps == 16
    first, last = sum(result.losses[:2]) / 2, sum(result.losses[-2:]) / 2
    assert last < first - 1.0, result.losses
    assert result.held and result.held[-1][1] < first - 1.0
    assert all(torch.equal(b, packed[n]) for n, b in model.named_buffers() if n in packed)  # experts packed, as is
    assert all(torch.equal(p, base[n]) and p.grad is None for n, p in model.named_parameters())
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "out" / "training.json").is_file()


def test_bf16_base_on_cpu_trains_fp32_adapters(config: GptOssConfig, tmp_path: Path) -> None:
    model = _model(config, dtype=torch.bfloat16)
    data = _samples(config, 2)
    adapters = LoraAdapters(model)
    adapters.add("b", LoraConfig(rank=8, targets=TARGETS))
    result = Trainer(adapters, "b", TrainConfig(epochs=8, lr=1e-2, batch=2, warmup=1), tmp_path).fit(data)
    assert result.losses[-1] < result.losses[0] - 1.0, result.losses
    assert {p.dtype for p in adapters.parameters_of("b")} == {torch.float32}
    assert model.dtype == torch.bfloat16


def test_checkpointed_chunked_loss_equals_the_plain_forward(config: GptOssConfig) -> None:
    model = _model(config)
    adapters = LoraAdapters(model)
    adapters.add("a", LoraConfig(rank=4, targets=TARGETS))
    adapters.freeze_base()
    with torch.no_grad():
        for p in adapters.parameters_of("a"):
            p.normal_(0, 0.05)
    data = _samples(config, 3, length=20)
    tokens, mask = batch_tensors([data[0], S(data[1].tokens[:13], data[1].mask[:13]), data[2]], torch.device("cpu"))

    def grads(cfg: TrainConfig) -> tuple[float, list[torch.Tensor]]:
        for p in adapters.parameters_of("a"):
            p.grad = None
        loss, _n, _ = masked_loss(model, tokens, mask, cfg)
        loss.backward()
        return float(loss.detach()), [p.grad.clone() for p in adapters.parameters_of("a")]  # type: ignore[union-attr]

    with torch.no_grad():
        plain_logits = model(tokens)
    sel = mask[:, 1:]
    want = float(F.cross_entropy(plain_logits[:, :-1][sel].float(), tokens[:, 1:][sel], reduction="sum"))
    loss_a, g_a = grads(TrainConfig(checkpointing=False, loss_chunk=10_000))
    loss_b, g_b = grads(TrainConfig(checkpointing=True, loss_chunk=7))
    model.set_expert_kernel(frozen_expert_mlp)  # the training kernel: same gradients, no decoded experts kept
    loss_c, g_c = grads(TrainConfig(checkpointing=True, loss_chunk=7))
    for loss in (loss_a, loss_b, loss_c):
        assert loss == pytest.approx(want, rel=1e-5)
    for a, b, c in zip(g_a, g_b, g_c, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-6)
    assert all(g.abs().sum() > 0 for g in g_a)  # router adapters too: the routing weights' gradient arrives


def test_resume_continues_as_one_run(config: GptOssConfig, tmp_path: Path) -> None:
    data = _samples(config, 6)
    lora = LoraConfig(rank=4, dropout=0.1)

    def run(out: Path, max_steps: int | None, resume: bool) -> list[float]:
        cfg = TrainConfig(epochs=2, lr=1e-2, batch=2, warmup=2, seed=5, save_every=2, max_steps=max_steps)
        return finetune(_model(config), data, out, lora=lora, cfg=cfg, resume=resume).losses

    straight = run(tmp_path / "a", None, False)
    assert len(straight) == 6
    part = run(tmp_path / "b", 3, False)
    assert part == straight[:3]
    assert run(tmp_path / "b", None, True) == straight
    a, b = LoraAdapters(_model(config)), LoraAdapters(_model(config))
    a.load(tmp_path / "a")
    b.load(tmp_path / "b")
    for x, y in zip(a.parameters_of("adapter"), b.parameters_of("adapter"), strict=True):
        assert torch.equal(x, y)
    with pytest.raises(ValueError, match="another training configuration"):
        Trainer(_adapters(config), "adapter", TrainConfig(lr=1.0, seed=5, epochs=2, batch=2, warmup=2),
                tmp_path / "b").fit(data, resume=True)


def _adapters(config: GptOssConfig) -> LoraAdapters:
    adapters = LoraAdapters(_model(config))
    adapters.add("adapter", LoraConfig(rank=4, dropout=0.1))
    return adapters


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_bf16_smoke(config: GptOssConfig, ckpt_mxfp4: Path, tmp_path: Path) -> None:
    """bf16 on the GPU from a real (tiny, MXFP4) checkpoint: the loss drops and memory is reported."""
    model = load_model(ckpt_mxfp4, device="cuda", dtype=torch.bfloat16)
    data = _samples(config, 4, length=64)
    result = finetune(model, data, tmp_path / "gpu", held=data[:1], lora=LoraConfig(rank=8),
                      cfg=TrainConfig(epochs=10, lr=2e-2, batch=2, warmup=2))
    assert sum(result.losses[-2:]) < sum(result.losses[:2]) - 1.0, result.losses
    assert result.peak_memory > 0
    assert next(model.parameters()).dtype == torch.bfloat16
