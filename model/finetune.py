"""Train LoRA adapters (:mod:`ossagent.model.lora`) on token sequences with per-token loss masks.

A sample is ``tokens`` and ``mask`` of the same length; ``mask[i]`` says token ``i`` is a target (predicted from
the tokens before it). The loss is the mean cross-entropy over the targets of a step, over the full vocabulary.

- Memory: the blocks run under gradient checkpointing (only each block's input is kept; a block is recomputed in
  the backward pass), the unembedding runs only at target positions and in chunks whose logits are recomputed
  too, and the base model has no gradients or optimizer state (experts stay packed MXFP4 and are decoded per use).
- Precision: base weights in the dtype they were loaded in (bf16 on GPU; fp32 or bf16 on CPU), adapters and
  AdamW state in fp32; logits and the loss in fp32.
- Reproducible and resumable: the data order of epoch ``e`` is a shuffle seeded by ``seed + e``; a checkpoint
  (adapter, optimizer, step, losses, RNG state) is written every ``save_every`` steps and at the end, and a run
  started with ``resume`` continues from it with the same losses an uninterrupted run has.
"""

from __future__ import annotations

import json
import math
import random
import resource
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ossagent.model.gpt_oss import Experts, GptOss, expert_mlp, group_by_expert, swiglu
from ossagent.model.lora import LoraAdapters, LoraConfig

STATE_FILE = "trainer_state.json"
CHECKPOINT_DIR = "checkpoint"


class Sample(Protocol):
    @property
    def tokens(self) -> Sequence[int]: ...

    @property
    def mask(self) -> Sequence[bool]: ...


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1
    lr: float = 2e-4
    batch: int = 4  # samples per optimizer step ...
    micro_batch: int = 1  # ... run this many at a time (padding costs compute; 1 pads nothing)
    warmup: int = 10  # steps of linear warm-up, then cosine decay to 10% of lr
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    checkpointing: bool = True
    loss_chunk: int = 128  # target positions per unembedding chunk (fp32 logits: 128 x vocab x 4 bytes, ~100 MB)
    save_every: int = 0  # steps between resumable checkpoints (0: only at the end)
    eval_every: int = 0  # steps between held-out evaluations (0: at the end only)
    max_steps: int | None = None  # stop early (same schedule as the full run)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch < 1 or self.micro_batch < 1 or self.loss_chunk < 1:
            raise ValueError("epochs, batch, micro_batch and loss_chunk must be at least 1")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, not {self.lr}")


@dataclass
class Progress:
    """What a progress callback gets after each step."""

    step: int
    total: int
    loss: float
    lr: float
    seconds: float
    tokens: int  # tokens run through the model so far (padding excluded)
    held_loss: float | None = None


@dataclass
class TrainResult:
    steps: int
    losses: list[float] = field(default_factory=list)
    held: list[tuple[int, float, float]] = field(default_factory=list)  # (step, loss, token accuracy)
    seconds: float = 0.0
    tokens: int = 0
    peak_memory: int = 0  # bytes: CUDA max allocated, or the process's peak RSS on CPU
    resumed_from: int = 0


class _FrozenExperts(torch.autograd.Function):
    """The MoE expert sum with frozen expert weights, keeping nothing of the experts for the backward pass.

    Autograd through :func:`~ossagent.model.gpt_oss.expert_mlp` keeps every used expert's decoded weights
    (about 1.6 GB a layer for gpt-oss-20b). Here the forward runs without autograd and the backward decodes one
    expert at a time again, recomputes its output for its tokens and takes the gradients of the input and of the
    routing weights: the same gradients, for one more decode of each expert."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, expert_weights: torch.Tensor, expert_ids: torch.Tensor,
                experts: Experts, limit: float, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x, expert_weights, expert_ids)
        ctx.experts, ctx.limit, ctx.alpha = experts, limit, alpha
        with torch.no_grad():
            return expert_mlp(x, expert_ids, expert_weights, experts, limit, alpha)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, expert_weights, expert_ids = ctx.saved_tensors
        experts = ctx.experts
        order, counts, token_of, w_sorted = group_by_expert(expert_ids, expert_weights, experts.mlp1_bias.shape[0])
        grad_x = torch.zeros_like(x)
        grad_w = torch.zeros(order.numel(), dtype=torch.float32, device=x.device)
        start = 0
        for e, c in enumerate(counts):
            if c == 0:
                continue
            sl = slice(start, start + c)
            idx = token_of[sl]
            w1, b1, w2, b2 = experts.weights(e)
            go = grad_out[idx]
            with torch.enable_grad():
                xi = x[idx].detach().requires_grad_(True)
                y = F.linear(swiglu(F.linear(xi, w1, b1), ctx.limit, ctx.alpha), w2, b2)  # [c, H], unweighted
                (gx,) = torch.autograd.grad(y, xi, go * w_sorted[sl, None].to(x.dtype))
            grad_x.index_add_(0, idx, gx)
            grad_w[order[sl]] = (y.detach().float() * go.float()).sum(-1)
            start += c
        return grad_x, grad_w.view_as(expert_weights).to(expert_weights.dtype), None, None, None, None


def frozen_expert_mlp(x: torch.Tensor, expert_ids: torch.Tensor, expert_weights: torch.Tensor, experts: Experts,
                      limit: float, alpha: float = 1.702) -> torch.Tensor:
    """:func:`~ossagent.model.gpt_oss.expert_mlp` for training around frozen experts (the same values and input
    gradients, without keeping decoded expert weights); plug in with ``GptOss.set_expert_kernel``."""
    if not torch.is_grad_enabled():
        return expert_mlp(x, expert_ids, expert_weights, experts, limit, alpha)
    out: torch.Tensor = _FrozenExperts.apply(x, expert_weights, expert_ids, experts, limit, alpha)
    return out


def hidden_states(model: GptOss, tokens: torch.Tensor, checkpointing: bool) -> torch.Tensor:
    """[B, T] -> the last block's output [B, T, H] (before the final norm), blocks checkpointed if asked."""
    t = tokens.shape[1]
    positions = torch.arange(t, device=tokens.device)
    cos_sin = model.rotary.cos_sin(positions, model.dtype)
    x = model.embedding(tokens)
    for block in model.blocks:
        if checkpointing and torch.is_grad_enabled():
            x = checkpoint(block, x, positions, cos_sin, None, use_reentrant=False)
        else:
            x = block(x, positions, cos_sin, None)
    return x


def _chunk_loss(model: GptOss, h: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model.unembedding(model.norm(h)).float()
    return F.cross_entropy(logits, targets, reduction="sum"), (logits.argmax(-1) == targets).sum()


def masked_loss(
    model: GptOss, tokens: torch.Tensor, mask: torch.Tensor, cfg: TrainConfig
) -> tuple[torch.Tensor, int, int]:
    """(summed cross-entropy over the targets, number of targets, number predicted right)."""
    h = hidden_states(model, tokens, cfg.checkpointing)
    sel = mask[:, 1:]
    h, targets = h[:, :-1][sel], tokens[:, 1:][sel]
    total = h.new_zeros((), dtype=torch.float32)
    right = 0
    for a in range(0, h.shape[0], cfg.loss_chunk):
        args = (model, h[a : a + cfg.loss_chunk], targets[a : a + cfg.loss_chunk])
        if cfg.checkpointing and torch.is_grad_enabled():
            loss, ok = checkpoint(_chunk_loss, *args, use_reentrant=False)
        else:
            loss, ok = _chunk_loss(*args)
        total = total + loss
        right += int(ok)
    return total, int(targets.numel()), right


def batch_tensors(samples: Sequence[Sample], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded [B, T] tokens (pad 0, never a target; causal attention never looks ahead) and mask."""
    n = max(len(s.tokens) for s in samples)
    tokens = torch.zeros(len(samples), n, dtype=torch.long)
    mask = torch.zeros(len(samples), n, dtype=torch.bool)
    for i, s in enumerate(samples):
        if len(s.tokens) != len(s.mask):
            raise ValueError(f"sample {i}: {len(s.tokens)} tokens but {len(s.mask)} mask entries")
        tokens[i, : len(s.tokens)] = torch.tensor(list(s.tokens))
        mask[i, : len(s.mask)] = torch.tensor(list(s.mask), dtype=torch.bool)
    return tokens.to(device), mask.to(device)


@torch.no_grad()
def evaluate(model: GptOss, samples: Sequence[Sample], cfg: TrainConfig) -> tuple[float, float]:
    """Mean loss per target and token accuracy (greedy prediction) over ``samples``."""
    device = next(model.parameters()).device
    loss_sum, count, right = 0.0, 0, 0
    for s in samples:
        tokens, mask = batch_tensors([s], device)
        loss, n, ok = masked_loss(model, tokens, mask, cfg)
        loss_sum, count, right = loss_sum + float(loss), count + n, right + ok
    return loss_sum / max(count, 1), right / max(count, 1)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n))
    random.Random(seed + epoch).shuffle(order)
    return order


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    warm = min(1.0, (step + 1) / max(cfg.warmup, 1))
    return cfg.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max(total, 1))))


def peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


class Trainer:
    """Trains adapter ``name`` of ``adapters`` (its model's own weights frozen); writes to ``out``."""

    def __init__(self, adapters: LoraAdapters, name: str, cfg: TrainConfig, out: str | Path,
                 progress: Callable[[Progress], None] | None = None) -> None:
        self.adapters, self.name, self.cfg, self.out = adapters, name, cfg, Path(out)
        self.model: GptOss = adapters.model  # type: ignore[assignment]
        self.progress = progress
        adapters.freeze_base()
        adapters.activate(name)
        self.params = adapters.parameters_of(name)
        for p in self.params:
            p.requires_grad_(True)
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.device = next(self.model.parameters()).device
        # any accelerated inference kernel is swapped for the training one (restored by ``restore_kernels``)
        self._kernels = [block.mlp.kernel for block in self.model.blocks]  # type: ignore[union-attr]
        self.model.set_expert_kernel(frozen_expert_mlp)

    def restore_kernels(self) -> None:
        for block, kernel in zip(self.model.blocks, self._kernels, strict=True):
            block.mlp.kernel = kernel  # type: ignore[union-attr]

    def _step(self, samples: Sequence[Sample]) -> tuple[float, int]:
        """One optimizer step over ``samples``: the mean loss over all their targets, and the tokens run."""
        targets = sum(sum(s.mask[1:]) for s in samples)
        if targets == 0:
            raise ValueError("a step without targets: every sample needs a masked token after its first")
        self.opt.zero_grad(set_to_none=True)
        total = 0.0
        for a in range(0, len(samples), self.cfg.micro_batch):
            tokens, mask = batch_tensors(samples[a : a + self.cfg.micro_batch], self.device)
            loss, n, _ = masked_loss(self.model, tokens, mask, self.cfg)
            if n:
                (loss / targets).backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        self.opt.step()
        return total / targets, sum(len(s.tokens) for s in samples)

    def fit(self, train: Sequence[Sample], held: Sequence[Sample] = (), resume: bool = False,
            meta: dict[str, Any] | None = None) -> TrainResult:
        cfg = self.cfg
        if not train:
            raise ValueError("no training samples")
        per_epoch = max(1, len(train) // cfg.batch)
        total = per_epoch * cfg.epochs
        stop = min(total, cfg.max_steps) if cfg.max_steps is not None else total
        torch.manual_seed(cfg.seed)
        result = TrainResult(steps=0)
        start = self._resume(result) if resume else 0
        t0 = time.monotonic() - result.seconds
        self.model.train()
        for step in range(start, stop):
            epoch, k = divmod(step, per_epoch)
            order = epoch_order(len(train), cfg.seed, epoch)
            lr = lr_at(step, total, cfg)
            for g in self.opt.param_groups:
                g["lr"] = lr
            loss, ntok = self._step([train[i] for i in order[k * cfg.batch : (k + 1) * cfg.batch]])
            result.losses.append(loss)
            result.tokens += ntok
            result.steps = step + 1
            result.seconds = time.monotonic() - t0
            held_loss = None
            if held and cfg.eval_every and result.steps % cfg.eval_every == 0 and result.steps < stop:
                held_loss = self._evaluate(held, result)
            if self.progress is not None:
                self.progress(Progress(result.steps, stop, loss, lr, result.seconds, result.tokens, held_loss))
            if cfg.save_every and result.steps % cfg.save_every == 0 and result.steps < stop:
                self._save_checkpoint(result)
        if held:
            self._evaluate(held, result)
        result.peak_memory = peak_memory(self.device)
        self._save_checkpoint(result)
        self.adapters.save(self.name, self.out, base_model=str((meta or {}).get("base_model", "")))
        record = {"train_config": asdict(cfg), "steps": result.steps, "losses": result.losses, "held": result.held,
                  "seconds": result.seconds, "tokens": result.tokens, **(meta or {})}
        (self.out / "training.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
        self.model.eval()
        return result

    def _evaluate(self, held: Sequence[Sample], result: TrainResult) -> float:
        self.model.eval()
        loss, acc = evaluate(self.model, held, self.cfg)
        self.model.train()
        result.held.append((result.steps, loss, acc))
        return loss

    def _save_checkpoint(self, result: TrainResult) -> None:
        folder = self.out / CHECKPOINT_DIR
        tmp = self.out / (CHECKPOINT_DIR + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.adapters.save(self.name, tmp)
        torch.save({"optimizer": self.opt.state_dict(), "rng": torch.get_rng_state()}, tmp / "optimizer.pt")
        state = {"step": result.steps, "losses": result.losses, "held": result.held, "seconds": result.seconds,
                 "tokens": result.tokens, "train_config": asdict(self.cfg)}
        (tmp / STATE_FILE).write_text(json.dumps(state) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)

    def _resume(self, result: TrainResult) -> int:
        folder = self.out / CHECKPOINT_DIR
        if not (folder / STATE_FILE).is_file():
            return 0
        state = json.loads((folder / STATE_FILE).read_text())
        saved = {k: v for k, v in state["train_config"].items() if k not in ("max_steps", "save_every", "eval_every")}
        now = {k: v for k, v in asdict(self.cfg).items() if k in saved}
        if saved != now:
            raise ValueError(f"{folder}: saved with another training configuration {saved}; this run has {now}")
        self.adapters.remove(self.name)
        self.adapters.load(folder, name=self.name)
        self.adapters.activate(self.name)
        self.params = self.adapters.parameters_of(self.name)
        for p in self.params:
            p.requires_grad_(True)
        blob = torch.load(folder / "optimizer.pt", weights_only=True)
        self.opt = torch.optim.AdamW(self.params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.opt.load_state_dict(blob["optimizer"])
        torch.set_rng_state(blob["rng"])
        result.losses, result.seconds, result.tokens = list(state["losses"]), state["seconds"], state["tokens"]
        result.held = [tuple(h) for h in state["held"]]  # type: ignore[misc]
        result.steps = result.resumed_from = int(state["step"])
        return result.steps


def finetune(
    model: GptOss, train: Sequence[Sample], out: str | Path, *, held: Sequence[Sample] = (),
    lora: LoraConfig | None = None, cfg: TrainConfig | None = None, name: str = "adapter", resume: bool = False,
    progress: Callable[[Progress], None] | None = None, meta: dict[str, Any] | None = None,
) -> TrainResult:
    """Attach a new adapter ``name`` to ``model``, train it on ``train`` and save it in ``out``."""
    cfg = cfg or TrainConfig()
    adapters = LoraAdapters(model)
    adapters.add(name, lora or LoraConfig(), seed=cfg.seed)
    trainer = Trainer(adapters, name, cfg, out, progress)
    try:
        return trainer.fit(train, held, resume=resume, meta=meta)
    finally:
        trainer.restore_kernels()
