"""The gpt-oss transformer, top to bottom (math: shared/docs/gpt-oss-model.md, section 1).

Shapes use: B batch, T new tokens, S attended keys, H hidden, E experts, I expert width, nh query heads,
nkv key/value heads, qm = nh/nkv query heads per KV head, d head_dim, V vocab.

Parameter names follow the ``original/`` checkpoint (``blocks.N.attn.*``, ``blocks.N.mlp.*``), except that
q/k/v are three matrices (the HF layout stores them apart; ``original/`` rows are split as views, no copy).
Expert weights are either dense (``mlp1_weight [E, 2I, H]``, ``mlp2_weight [E, H, I]``, trainable) or MXFP4
packed buffers (``mlp1_blocks``/``mlp1_scales`` ...) dequantized per used expert by :func:`expert_mlp`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ossagent.model import mxfp4
from ossagent.model.cache import KeyView
from ossagent.model.config import GptOssConfig
from ossagent.model.kernels import attention as native_attention

if TYPE_CHECKING:
    from ossagent.model.cache import KVCache


class RMSNorm(nn.Module):
    """y = x * rsqrt(mean(x^2) + eps) * scale, computed in fp32 (scale kept fp32), cast back to x's dtype."""

    def __init__(self, size: int, eps: float, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(size, dtype=torch.float32, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.scale).to(x.dtype)


class Rotary(nn.Module):
    """Half-split (NeoX) RoPE with YaRN frequencies; concentration multiplies both cos and sin."""

    def __init__(self, config: GptOssConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        d = config.head_dim
        freq = config.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float32, device=device) / d)  # [d/2]
        if config.rope_scaling_factor > 1.0:
            self.concentration = 0.1 * math.log(config.rope_scaling_factor) + 1.0
            low, high = config.yarn_bounds()
            interpolation = 1.0 / (config.rope_scaling_factor * freq)
            extrapolation = 1.0 / freq
            ramp = (torch.arange(d // 2, dtype=torch.float32, device=device) - low) / (high - low)
            mask = 1 - ramp.clamp(0, 1)
            inv_freq = interpolation * (1 - mask) + extrapolation * mask
        else:
            self.concentration = 1.0
            inv_freq = 1.0 / freq
        self.inv_freq: torch.Tensor
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        angle = positions.float()[:, None] * self.inv_freq[None, :]  # [T, d/2], fp32
        return (angle.cos() * self.concentration).to(dtype), (angle.sin() * self.concentration).to(dtype)

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # x: [B, T, heads, d]; cos/sin: [T, d/2]
        x1, x2 = x.chunk(2, dim=-1)
        c, s = cos[:, None, :], sin[:, None, :]
        return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)


class Attention(nn.Module):
    def __init__(self, config: GptOssConfig, layer: int, device: torch.device | str | None, dtype: torch.dtype):
        super().__init__()
        h, d = config.hidden_size, config.head_dim
        self.nh, self.nkv, self.d = config.num_attention_heads, config.num_key_value_heads, d
        self.window = config.sliding_window if config.is_sliding(layer) else 0  # 0 = full causal
        self.norm = RMSNorm(h, config.rms_norm_eps, device)
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.q = nn.Linear(h, self.nh * d, bias=True, **kw)
        self.k = nn.Linear(h, self.nkv * d, bias=True, **kw)
        self.v = nn.Linear(h, self.nkv * d, bias=True, **kw)
        self.out = nn.Linear(self.nh * d, h, bias=True, **kw)
        self.sinks = nn.Parameter(torch.zeros(self.nh, **kw))  # one logit per query head
        self.sm_scale = 1.0 / math.sqrt(d)
        self.block_elements = 1 << 24  # fp32 logits per query block (64 MB): bounds memory at long context
        # True: prefill chunks may use torch's fused CPU kernel (3-7x faster attention, benchmarks/attention.py).
        # Off by default: its bf16 results differ from the plain path's by a rounding step, so which path a row
        # takes would depend on how its prompt was chunked, and the batch engine's output would no longer equal
        # Engine.generate's token for token on a bf16 model
        self.fused = False
        # True (set by accelerate()): one-token steps against a cache take the native kernel, a whole batch of
        # sequences in one call (ossagent.model.kernels.attention); False: _attend per sequence
        self.native_decode = False

    def forward(
        self,
        x: torch.Tensor,  # [B, T, H]
        positions: torch.Tensor,  # [T] absolute positions of the new tokens
        cos_sin: tuple[torch.Tensor, torch.Tensor],
        layer_cache: LayerCacheLike | None,
    ) -> torch.Tensor:
        b = x.shape[0]
        q, k, v = self._project(x, cos_sin)
        if layer_cache is not None:
            if b != 1:
                raise ValueError("a KV cache holds one sequence; batch size must be 1")
            if x.shape[1] == 1 and self._native(q):
                return self.out(self._decode(q[0], k[0], v[0], positions.tolist(), [layer_cache])[None])
            k_all, v_all, key_pos = layer_cache.update(k[0], v[0], int(positions[0]))  # [S, nkv, d], [S]
            k_all, v_all = k_all[None], v_all[None]
        else:
            k_all, v_all, key_pos = k, v, positions
        o = self.attend(q, k_all, v_all, positions, key_pos)  # [B, T, nh*d]
        return self.out(o)

    def _project(
        self, x: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normed x [B, T, H] -> rotated q [B, T, nh, d], rotated k and v [B, T, nkv, d]."""
        b, t, _ = x.shape
        y = self.norm(x)
        q = self.q(y).view(b, t, self.nh, self.d)
        k = self.k(y).view(b, t, self.nkv, self.d)
        v = self.v(y).view(b, t, self.nkv, self.d)
        return Rotary.rotate(q, *cos_sin), Rotary.rotate(k, *cos_sin), v

    def forward_packed(
        self,
        x: torch.Tensor,  # [1, N, H]: the new tokens of several sequences, one after another
        positions: torch.Tensor,  # [N] each token's position in its own sequence
        cos_sin: tuple[torch.Tensor, torch.Tensor],
        segments: Sequence[tuple[int, int]],  # [a, b) of x per sequence
        layer_caches: Sequence[LayerCacheLike],  # one per segment
    ) -> torch.Tensor:
        """Projections once for all N tokens; attention against each sequence's own cache: the one-token
        segments (decode steps) in one native call when :meth:`_native`, the others one by one."""
        q, k, v = self._project(x, cos_sin)
        ones = [i for i, (a, b) in enumerate(segments) if b - a == 1] if self._native(q) else []
        if ones and len(ones) == len(segments):  # a pure decode step: row i is sequence i
            return self.out(self._decode(q[0], k[0], v[0], positions.tolist(), layer_caches)[None])
        outs: list[torch.Tensor | None] = [None] * len(segments)
        if ones:
            rows = [segments[i][0] for i in ones]
            at = positions.tolist()
            o = self._decode(q[0, rows], k[0, rows], v[0, rows], [at[r] for r in rows], [layer_caches[i] for i in ones])
            for j, i in enumerate(ones):
                outs[i] = o[None, j : j + 1]
        for i, ((a, b), layer_cache) in enumerate(zip(segments, layer_caches, strict=True)):
            if outs[i] is None:
                k_all, v_all, key_pos = layer_cache.update(k[0, a:b], v[0, a:b], int(positions[a]))
                outs[i] = self.attend(q[:, a:b], k_all[None], v_all[None], positions[a:b], key_pos)
        return self.out(torch.cat([o for o in outs if o is not None], dim=1))

    def _native(self, q: torch.Tensor) -> bool:
        return self.native_decode and native_attention.usable(q)

    def _decode(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, positions: list[int],
        layer_caches: Sequence[LayerCacheLike],
    ) -> torch.Tensor:
        """One new token per sequence: q [n, nh, d], k/v [n, nkv, d] -> [n, nh*d], on the native kernel."""
        views = [c.update_one(k[i], v[i], p) for i, (c, p) in enumerate(zip(layer_caches, positions, strict=True))]
        return native_attention.decode_attention(q, views, positions, self.sinks, self.sm_scale, self.window)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor
    ) -> torch.Tensor:
        """q [B, T, nh, d], k/v [B, S, nkv, d] -> [B, T, nh*d]. Chunks of ``FLASH_MIN_QUERIES`` or more tokens on
        the CPU without autograd go through torch's fused kernel (:meth:`_attend_flash`, ``FLASH_BLOCK`` queries a
        call); decode, training and other devices through :meth:`_attend`, in query blocks that keep the fp32
        logits near ``block_elements``."""
        b, t = q.shape[:2]
        fused = self.fused and t >= FLASH_MIN_QUERIES and q.device.type == "cpu" and not torch.is_grad_enabled()
        flash = flash_attention_op() if fused else None
        if flash is not None:
            step = max(1, min(FLASH_BLOCK, self.block_elements // k.shape[1]))  # the mask: S elements per query
            fn: Callable[..., torch.Tensor] = functools.partial(self._attend_flash, flash)
        else:
            step = max(1, self.block_elements // (b * self.nh * k.shape[1]))
            fn = self._attend
        if step >= t:
            return fn(q, k, v, q_pos, k_pos)
        return torch.cat([fn(q[:, a : a + step], k, v, q_pos[a : a + step], k_pos) for a in range(0, t, step)], dim=1)

    def _allowed(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """[T, S] bool: causal on absolute positions, valid slot (k_pos >= 0), inside the sliding window."""
        allowed = (k_pos[None, :] <= q_pos[:, None]) & (k_pos[None, :] >= 0)
        if self.window:
            allowed &= k_pos[None, :] > q_pos[:, None] - self.window
        return allowed

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor
    ) -> torch.Tensor:
        """softmax over [scaled masked logits, sink] with the sink column dropped; GQA without expanding K/V."""
        b, t, _, d = q.shape
        s = k.shape[1]
        qm = self.nh // self.nkv
        # query head h = g*qm + m uses KV head g
        qg = q.reshape(b, t, self.nkv, qm, d).permute(0, 2, 3, 1, 4).reshape(b, self.nkv, qm * t, d)
        kg = k.permute(0, 2, 3, 1)  # [B, nkv, d, S]
        vg = v.permute(0, 2, 1, 3)  # [B, nkv, S, d]
        logits = torch.matmul(qg, kg).view(b, self.nkv, qm, t, s).float() * self.sm_scale
        logits = logits.masked_fill(~self._allowed(q_pos, k_pos), float("-inf"))
        sink = self.sinks.float().view(1, self.nkv, qm, 1, 1).expand(b, self.nkv, qm, t, 1)
        weights = torch.softmax(torch.cat([logits, sink], dim=-1), dim=-1)[..., :-1]  # rows may sum < 1
        o = torch.matmul(weights.to(v.dtype).reshape(b, self.nkv, qm * t, s), vg)  # [B, nkv, qm*T, d]
        return o.view(b, self.nkv, qm, t, d).permute(0, 3, 1, 2, 4).reshape(b, t, self.nh * d)

    def _attend_flash(
        self, flash: FlashOp, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_pos: torch.Tensor,
        k_pos: torch.Tensor,
    ) -> torch.Tensor:
        """What :meth:`_attend` computes, in one fused pass. The kernel's softmax has no sink column, but it
        returns each row's logsumexp: with Z = sum_j e^(l_j) = e^lse, adding the sink to the denominator scales
        the row by Z / (Z + e^sink) = sigmoid(lse - sink), done in fp32."""
        b, t = q.shape[:2]
        allowed = self._allowed(q_pos, k_pos)  # [T, S]
        cols = allowed.any(0).nonzero()[:, 0]  # keys some query sees: pass only their span (window, causal end)
        if len(cols) == 0:
            return q.new_zeros(b, t, self.nh * self.d)  # every weight on the sink
        lo, hi = int(cols[0]), int(cols[-1]) + 1
        k, v, allowed = k[:, lo:hi], v[:, lo:hi], allowed[:, lo:hi]
        mask = None
        if not bool(allowed.all()):  # additive, in q's dtype (the kernel's rule)
            mask = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device).masked_fill_(~allowed, float("-inf"))
        # [B, heads, L, d] views: the cache's head-major storage is read in place; GQA inside the kernel
        out, lse = flash(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), 0.0, False, attn_mask=mask, scale=self.sm_scale
        )  # [B, nh, T, d], [B, nh, T] fp32
        keep = torch.sigmoid(lse.float() - self.sinks.float()[:, None])[..., None]  # [B, nh, T, 1]
        # a query with no key puts all its weight on the sink (output 0); the kernel may give NaN there
        o = torch.where(allowed.any(-1)[:, None], out.float() * keep, 0.0)
        return o.to(q.dtype).transpose(1, 2).reshape(b, t, self.nh * self.d)


FlashOp = Callable[..., tuple[torch.Tensor, torch.Tensor]]
FLASH_MIN_QUERIES = 16  # fewer new tokens (decode, short turns): the plain path is faster (benchmarks/attention.py)
FLASH_BLOCK = 64  # queries per fused call: each call reads only the keys its queries can see


@functools.cache
def flash_attention_op() -> FlashOp | None:
    """torch's fused CPU attention (private: ``(out, logsumexp) = op(q, k, v, dropout, is_causal, attn_mask=,
    scale=)``) if this torch has it and it takes fewer key/value heads than query heads; else None. Checked once
    against plain softmax attention on a tiny input."""
    try:
        op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, n, 3, 8, generator=g) for n in (4, 2, 2))
        mask = torch.tensor([[0.0, float("-inf"), float("-inf")], [0.0, 0.0, float("-inf")], [0.0, 0.0, 0.0]])
        out, lse = op(q, k, v, 0.0, False, attn_mask=mask, scale=0.5)
        logits = q @ k.repeat_interleave(2, 1).transpose(-1, -2) * 0.5 + mask
        want = torch.softmax(logits, -1) @ v.repeat_interleave(2, 1)
        ok = torch.allclose(out, want, atol=1e-5) and torch.allclose(lse, logits.logsumexp(-1), atol=1e-5)
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return None
    return op if ok else None  # type: ignore[no-any-return]


class Experts(nn.Module):
    """Expert weights, dense or MXFP4-packed. ``weights(e)`` gives expert e's matrices in F.linear layout."""

    def __init__(
        self, config: GptOssConfig, quantized: bool, device: torch.device | str | None, dtype: torch.dtype
    ) -> None:
        super().__init__()
        e, h, i = config.num_experts, config.hidden_size, config.intermediate_size
        self.quantized = quantized
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.mlp1_bias = nn.Parameter(torch.zeros(e, 2 * i, **kw))  # [E, 2I]
        self.mlp2_bias = nn.Parameter(torch.zeros(e, h, **kw))  # [E, H]
        if quantized:
            if h % mxfp4.BLOCK or i % mxfp4.BLOCK:
                raise ValueError(f"MXFP4 experts need hidden_size and intermediate_size divisible by {mxfp4.BLOCK}")
            u8: dict[str, Any] = {"device": device, "dtype": torch.uint8}
            self.register_buffer("mlp1_blocks", torch.zeros(e, 2 * i, h // 32, 16, **u8))
            self.register_buffer("mlp1_scales", torch.zeros(e, 2 * i, h // 32, **u8))
            self.register_buffer("mlp2_blocks", torch.zeros(e, h, i // 32, 16, **u8))
            self.register_buffer("mlp2_scales", torch.zeros(e, h, i // 32, **u8))
        else:
            self.mlp1_weight = nn.Parameter(torch.zeros(e, 2 * i, h, **kw))  # [E, 2I, H]; rows gate0, lin0, ...
            self.mlp2_weight = nn.Parameter(torch.zeros(e, h, i, **kw))  # [E, H, I]

    def weights(self, e: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(w1 [2I, H], b1 [2I], w2 [H, I], b2 [H]) of expert e; MXFP4 experts are decoded now, only this one."""
        if self.quantized:
            blocks1, scales1, blocks2, scales2 = (
                self.get_buffer(n) for n in ("mlp1_blocks", "mlp1_scales", "mlp2_blocks", "mlp2_scales"))
            w1 = mxfp4.dequantize(blocks1[e], scales1[e], self.mlp1_bias.dtype)
            w2 = mxfp4.dequantize(blocks2[e], scales2[e], self.mlp1_bias.dtype)
        else:
            w1, w2 = self.mlp1_weight[e], self.mlp2_weight[e]
        return w1, self.mlp1_bias[e], w2, self.mlp2_bias[e]


def swiglu(h: torch.Tensor, limit: float, alpha: float = 1.702) -> torch.Tensor:
    """[N, 2I] with interleaved (gate, linear) columns -> [N, I]."""
    gate, lin = h[..., 0::2], h[..., 1::2]
    gate = gate.clamp(max=limit)
    lin = lin.clamp(-limit, limit)
    return gate * torch.sigmoid(alpha * gate) * (lin + 1)


def group_by_expert(
    expert_ids: torch.Tensor,  # [N, k]
    expert_weights: torch.Tensor,  # [N, k]
    n_experts: int,
) -> tuple[torch.Tensor, list[int], torch.Tensor, torch.Tensor]:
    """The N*k (token, slot) pairs sorted by expert (stable): order [N*k], tokens per expert (list of E),
    token index of each sorted pair [N*k], and its routing weight [N*k]."""
    k = expert_ids.shape[1]
    flat = expert_ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=n_experts).tolist()
    return order, counts, order // k, expert_weights.reshape(-1)[order]


def expert_mlp(
    x: torch.Tensor,  # [N, H] normed tokens
    expert_ids: torch.Tensor,  # [N, k] selected experts per token
    expert_weights: torch.Tensor,  # [N, k] softmax over the selected router logits
    experts: Experts,
    limit: float,
    alpha: float = 1.702,
) -> torch.Tensor:
    """sum_j w_j * (W2[e_j] swiglu(W1[e_j] x + b1) + b2): tokens grouped by expert, each used expert decoded once.

    This is the seam for faster kernels: any function with this signature can replace it per model through
    :meth:`GptOss.set_expert_kernel`."""
    _, counts, token_of, w_sorted = group_by_expert(expert_ids, expert_weights, experts.mlp1_bias.shape[0])
    out = torch.zeros_like(x)
    start = 0
    for e, c in enumerate(counts):
        if c == 0:
            continue
        idx = token_of[start : start + c]
        w1, b1, w2, b2 = experts.weights(e)
        h = swiglu(F.linear(x[idx], w1, b1), limit, alpha)  # [c, I]
        y = F.linear(h, w2, b2) * w_sorted[start : start + c, None].to(x.dtype)  # [c, H]
        out = out.index_add(0, idx, y) if torch.is_grad_enabled() else out.index_add_(0, idx, y)
        start += c
    return out


ExpertKernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Experts, float, float], torch.Tensor]


class MoE(nn.Module):
    def __init__(
        self, config: GptOssConfig, quantized: bool, device: torch.device | str | None, dtype: torch.dtype
    ) -> None:
        super().__init__()
        self.k = config.experts_per_token
        self.limit, self.alpha = config.swiglu_limit, config.swiglu_alpha
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, device)
        self.gate = nn.Linear(config.hidden_size, config.num_experts, bias=True, device=device, dtype=dtype)
        self.experts = Experts(config, quantized, device, dtype)
        self.kernel: ExpertKernel = expert_mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, H] -> [B, T, H]
        shape = x.shape
        y = self.norm(x).reshape(-1, shape[-1])  # [N, H]
        top = torch.topk(self.gate(y), self.k, dim=-1, sorted=True)  # router logits [N, E] -> k best
        weights = torch.softmax(top.values.float(), dim=-1).to(x.dtype)  # softmax over the selected only
        return self.kernel(y, top.indices, weights, self.experts, self.limit, self.alpha).view(shape)


class Block(nn.Module):
    def __init__(
        self, config: GptOssConfig, layer: int, quantized: bool, device: torch.device | str | None,
        dtype: torch.dtype,
    ) -> None:
        super().__init__()
        self.attn = Attention(config, layer, device, dtype)
        self.mlp = MoE(config, quantized, device, dtype)

    def forward(
        self, x: torch.Tensor, positions: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor],
        layer_cache: LayerCacheLike | None,
    ) -> torch.Tensor:
        x = x + self.attn(x, positions, cos_sin, layer_cache)
        return x + self.mlp(x)

    def forward_packed(
        self, x: torch.Tensor, positions: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor],
        segments: Sequence[tuple[int, int]], layer_caches: Sequence[LayerCacheLike],
    ) -> torch.Tensor:
        x = x + self.attn.forward_packed(x, positions, cos_sin, segments, layer_caches)
        return x + self.mlp(x)  # the experts see every sequence's tokens at once: each used expert read once


class GptOss(nn.Module):
    """tokens [T] or [B, T] -> logits [T, V] / [B, T, V]. With a cache: B = 1 and positions continue it."""

    def __init__(
        self,
        config: GptOssConfig,
        quantized_experts: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        super().__init__()
        self.config = config
        v, h = config.vocab_size, config.hidden_size
        self.embedding = nn.Embedding(v, h, device=device, dtype=dtype)
        self.blocks = nn.ModuleList(
            Block(config, i, quantized_experts, device, dtype) for i in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(h, config.rms_norm_eps, device)
        self.unembedding = nn.Linear(h, v, bias=False, device=device, dtype=dtype)  # not tied to embedding
        self.rotary = Rotary(config, device)

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding.weight.dtype

    def set_expert_kernel(self, kernel: ExpertKernel) -> None:
        for block in self.blocks:
            block.mlp.kernel = kernel  # type: ignore[union-attr]

    def forward(
        self, tokens: torch.Tensor, cache: KVCache | None = None, last_only: bool = False
    ) -> torch.Tensor:
        squeeze = tokens.dim() == 1
        if squeeze:
            tokens = tokens[None]
        _b, t = tokens.shape
        start = 0 if cache is None else cache.length
        positions = torch.arange(start, start + t, device=tokens.device)
        cos_sin = self.rotary.cos_sin(positions, self.dtype)
        x = self.embedding(tokens)  # [B, T, H]
        for i, block in enumerate(self.blocks):
            x = block(x, positions, cos_sin, None if cache is None else cache.layers[i])
        if cache is not None:
            cache.advance(t)
        if last_only:
            x = x[:, -1:]
        logits = self.unembedding(self.norm(x))  # [B, T, V]
        return logits[0] if squeeze else logits

    @torch.no_grad()
    def forward_packed(self, chunks: Sequence[Sequence[int]], caches: Sequence[KVCache]) -> torch.Tensor:
        """One forward over several sequences: ``chunks[i]`` continues ``caches[i]``. Logits [B, V] after the
        last token of each chunk. Every weight matrix is read once for all of them."""
        if len(chunks) != len(caches) or not chunks or any(len(c) == 0 for c in chunks):
            raise ValueError("forward_packed needs one non-empty chunk per cache")
        if len({id(c) for c in caches}) != len(caches):
            raise ValueError("forward_packed got the same cache twice")
        device = self.embedding.weight.device
        segments, pos, at = [], [], 0
        for chunk, cache in zip(chunks, caches, strict=True):
            segments.append((at, at + len(chunk)))
            pos.append(torch.arange(cache.length, cache.length + len(chunk), device=device))
            at += len(chunk)
        positions = torch.cat(pos)
        tokens = torch.tensor([int(t) for c in chunks for t in c], dtype=torch.long, device=device)
        cos_sin = self.rotary.cos_sin(positions, self.dtype)
        x = self.embedding(tokens)[None]  # [1, N, H]
        for i, block in enumerate(self.blocks):
            x = block.forward_packed(x, positions, cos_sin, segments, [c.layers[i] for c in caches])  # type: ignore[operator]
        for chunk, cache in zip(chunks, caches, strict=True):
            cache.advance(len(chunk))
        last = torch.tensor([b - 1 for _, b in segments], device=device)
        return self.unembedding(self.norm(x[0, last]))  # [B, V]

    def init_random(self, seed: int = 0, std: float = 0.02) -> None:
        """Random weights for tests, benchmarks and training from scratch (norm scales stay 1)."""
        g = torch.Generator(device="cpu").manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("norm.scale"):
                    continue
                p.copy_((torch.randn(p.shape, generator=g) * std).to(p.dtype))
            for name, buf in self.named_buffers():
                if name.endswith("_blocks"):
                    buf.copy_(torch.randint(0, 256, buf.shape, generator=g, dtype=torch.uint8))
                elif name.endswith("_scales"):  # 2**-7 .. 2**-5 times E2M1 values: std about 0.02-0.06
                    buf.copy_(torch.randint(120, 123, buf.shape, generator=g, dtype=torch.uint8))


class LayerCacheLike(Protocol):
    """What attention needs from a cache layer (see ossagent.model.cache)."""

    def update(
        self, k: torch.Tensor, v: torch.Tensor, start: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Store k/v [T, nkv, d] for positions start.. and return (keys, values, key positions) to attend to."""
        ...

    def update_one(self, k: torch.Tensor, v: torch.Tensor, start: int) -> KeyView:
        """Store one token's k/v [nkv, d] at ``start``; where its query's keys live (read in place)."""
        ...
