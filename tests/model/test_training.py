"""GptOss.forward is differentiable with dense experts (the demo-model trainer trains it on CPU)."""

from __future__ import annotations

from pathlib import Path

import torch

from ossagent.model.checkpoint_writer import write_checkpoint
from ossagent.model.config import GptOssConfig
from ossagent.model.gpt_oss import GptOss
from ossagent.model.loader import load_model


def test_gradients_reach_every_parameter_and_loss_drops(config: GptOssConfig, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = GptOss(config, quantized_experts=False, dtype=torch.float32)
    model.init_random(seed=0)
    x = torch.randint(0, config.vocab_size, (2, 24))  # batch of 2, longer than the window
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        logits = model(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, config.vocab_size), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        losses.append(loss.item())
        opt.step()
    assert losses[-1] < losses[0] - 0.5
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    # experts a batch never routes to get no gradient; everything else must
    assert all(".experts." in n for n in no_grad), no_grad

    # a trained model saves in both layouts and loads back with the same logits
    write_checkpoint(tmp_path, config, model.state_dict(), layout="hf", experts="bf16")
    write_checkpoint(tmp_path, config, model.state_dict(), layout="original", experts="mxfp4")
    with torch.no_grad():
        ref = model.to(torch.bfloat16)(x[0])
        got = load_model(tmp_path, layout="hf")(x[0])
        quant = load_model(tmp_path, layout="original")(x[0])
    assert (got.float() - ref.float()).abs().max() < 0.1
    assert (quant.float() - ref.float()).abs().mean() < 0.5  # MXFP4 rounding of the experts
