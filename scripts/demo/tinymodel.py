"""A compact, training-friendly gpt-oss in plain PyTorch with the Hugging Face parameter names and layouts.

Same math as gpt-oss (checked against transformers' GptOssForCausalLM in tests/demo/test_train.py):
RMSNorm (eps 1e-5), GQA attention with biases, learned sinks, sliding window 128 on even layers, YaRN RoPE
(half-split, concentration on cos and sin), top-k router with softmax over the selected logits, clamped
SwiGLU (alpha 1.702, limit 7, ``+1`` on the linear half, interleaved gate/linear columns). For speed on a small
CPU it runs every expert densely and weights the unselected ones by zero, which gives the same outputs and
gradients as sparse dispatch. Right padding needs no mask because attention is causal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class Shape:
    vocab: int
    hidden: int
    layers: int
    experts: int
    top_k: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    sliding_window: int = 128
    rope_theta: float = 150000.0
    rope_factor: float = 32.0
    rope_original: int = 4096
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    swiglu_limit: float = 7.0


def yarn_cos_sin(shape: Shape, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    d = shape.head_dim
    freq = shape.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
    s = shape.rope_factor
    conc = 0.1 * math.log(s) + 1.0
    d_half = d / 2
    low = d_half * math.log(shape.rope_original / (shape.beta_fast * 2 * math.pi)) / math.log(shape.rope_theta)
    high = d_half * math.log(shape.rope_original / (shape.beta_slow * 2 * math.pi)) / math.log(shape.rope_theta)
    ramp = (torch.arange(d // 2, dtype=torch.float32) - low) / (high - low)
    mask = 1 - ramp.clamp(0, 1)
    inv = (1.0 / (s * freq)) * (1 - mask) + (1.0 / freq) * mask
    ang = torch.arange(n, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cos(ang) * conc, torch.sin(ang) * conc


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


class RMSNorm(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight


class Attention(nn.Module):
    def __init__(self, s: Shape, sliding: bool) -> None:
        super().__init__()
        self.s, self.sliding = s, sliding
        self.q_proj = nn.Linear(s.hidden, s.heads * s.head_dim)
        self.k_proj = nn.Linear(s.hidden, s.kv_heads * s.head_dim)
        self.v_proj = nn.Linear(s.hidden, s.kv_heads * s.head_dim)
        self.o_proj = nn.Linear(s.heads * s.head_dim, s.hidden)
        self.sinks = nn.Parameter(torch.zeros(s.heads))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``mask``: bool [t, 1 + t], column 0 is the sink (always visible), column 1 + j is key j."""
        b, t, _ = x.shape
        s, d = self.s, self.s.head_dim
        rep = s.heads // s.kv_heads
        # query head h uses kv head h // rep
        q = _rope(self.q_proj(x).view(b, t, s.heads, d), cos, sin).transpose(1, 2)  # [b, H, t, d]
        k = _rope(self.k_proj(x).view(b, t, s.kv_heads, d), cos, sin).transpose(1, 2).repeat_interleave(rep, 1)
        v = self.v_proj(x).view(b, t, s.kv_heads, d).transpose(1, 2).repeat_interleave(rep, 1)
        # The learned sink is one extra logit per head in the softmax, with nothing to add to the output. Written
        # as an extra key so the fused attention kernel does the work: queries get a constant 1 in an extra
        # dimension, the sink key has sink * sqrt(d) there (the score scale is 1/sqrt(d)) and zeros elsewhere,
        # and its value is zero. Real keys have 0 in the extra dimension, so their scores are unchanged.
        one, zero = q.new_ones(b, s.heads, t, 1), q.new_zeros(b, s.heads, t, 1)
        sink = (self.sinks * math.sqrt(d)).view(1, s.heads, 1, 1).expand(b, -1, -1, -1)
        q = torch.cat([q, one], -1)  # [b, H, t, d + 1]
        k = torch.cat([torch.cat([q.new_zeros(b, s.heads, 1, d), sink], -1), torch.cat([k, zero], -1)], 2)
        v = torch.cat([q.new_zeros(b, s.heads, 1, d + 1), torch.cat([v, zero], -1)], 2)  # [b, H, 1 + t, d + 1]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0 / math.sqrt(d))[..., :d]
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class Router(nn.Module):
    def __init__(self, s: Shape) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(s.experts, s.hidden))
        self.bias = nn.Parameter(torch.zeros(s.experts))


class Experts(nn.Module):
    def __init__(self, s: Shape) -> None:
        super().__init__()
        self.gate_up_proj = nn.Parameter(torch.empty(s.experts, s.hidden, 2 * s.intermediate))
        self.gate_up_proj_bias = nn.Parameter(torch.zeros(s.experts, 2 * s.intermediate))
        self.down_proj = nn.Parameter(torch.empty(s.experts, s.intermediate, s.hidden))
        self.down_proj_bias = nn.Parameter(torch.zeros(s.experts, s.hidden))


class MoE(nn.Module):
    def __init__(self, s: Shape) -> None:
        super().__init__()
        self.s = s
        self.router = Router(s)
        self.experts = Experts(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, ex = self.s, self.experts
        logits = x @ self.router.weight.t() + self.router.bias
        top_v, top_i = torch.topk(logits, s.top_k, dim=-1)
        weights = torch.zeros_like(logits).scatter(-1, top_i, torch.softmax(top_v, dim=-1))
        h = torch.einsum("...d,edf->...ef", x, ex.gate_up_proj) + ex.gate_up_proj_bias
        gate = h[..., 0::2].clamp(max=s.swiglu_limit)
        lin = h[..., 1::2].clamp(-s.swiglu_limit, s.swiglu_limit)
        a = gate * torch.sigmoid(1.702 * gate) * (lin + 1)
        y = torch.einsum("...ei,eih->...eh", a, ex.down_proj) + ex.down_proj_bias
        return torch.einsum("...eh,...e->...h", y, weights)


class Layer(nn.Module):
    def __init__(self, s: Shape, i: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(s.hidden)
        self.self_attn = Attention(s, sliding=i % 2 == 0)
        self.post_attention_layernorm = RMSNorm(s.hidden)
        self.mlp = MoE(s)


class Body(nn.Module):
    def __init__(self, s: Shape) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(s.vocab, s.hidden)
        self.layers = nn.ModuleList(Layer(s, i) for i in range(s.layers))
        self.norm = RMSNorm(s.hidden)


class TinyGptOss(nn.Module):
    """``forward(ids)`` returns the final hidden states; logits are ``hidden @ lm_head.weight.T``."""

    def __init__(self, s: Shape) -> None:
        super().__init__()
        self.shape = s
        self.model = Body(s)
        self.lm_head = nn.Linear(s.hidden, s.vocab, bias=False)
        self._init()

    def _init(self) -> None:
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                continue
            if name.endswith("bias") or name.endswith("sinks"):
                nn.init.zeros_(p)
            else:
                nn.init.normal_(p, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        s = self.shape
        t = ids.shape[1]
        cos, sin = yarn_cos_sin(s, t)
        q = torch.arange(t)[:, None]
        k = torch.arange(t)[None, :]
        sink = torch.ones(t, 1, dtype=torch.bool)
        full = torch.cat([sink, k <= q], 1)  # [t, 1 + t]
        band = torch.cat([sink, (k <= q) & (k > q - s.sliding_window)], 1)
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            mask = band if layer.self_attn.sliding else full
            x = x + layer.self_attn(layer.input_layernorm(x), cos, sin, mask)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.model.norm(x)
