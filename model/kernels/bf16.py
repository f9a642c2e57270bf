"""bf16 projections at decode sizes on the native ``bf16_linear`` kernel (csrc/bf16_kernels.cpp).

torch's bf16 ``F.linear`` with a few rows reads the weight at well under the machine's memory bandwidth on a
CPU without AMX; the kernel streams it once per call (one parallel region, AVX512-BF16 dot products, fp32
sums). It computes what ``F.linear`` computes up to the order of fp32 additions: bf16 products exact in fp32,
the bias added in fp32, one rounding to the output dtype.

:func:`use_kernel` decides per call which path runs: rows up to :func:`max_rows` (benchmarks/bf16_gemv.py
measured where the kernel wins), bf16 weights, no autograd. :class:`GemvLinear` is an ``nn.Linear`` that asks
it on every call; :func:`switch_linears` turns a loaded GptOss's attention projections and unembedding into
GemvLinear in place (same parameters, same state dict).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from ossagent.model import kernels

#: without AMX, inputs with at most this many rows take the kernel: benchmarks/bf16_gemv.py measured it ahead of
#: F.linear for every gpt-oss-20b projection shape at 1, 2, 4, 8 and 16 rows (1 thread, best of 15 calls at load
#: ~8: 1.7-2.7x at 1 row, 1.1-1.9x at 16)
MAX_ROWS = 16
#: with AMX tiles torch's oneDNN matmul is several times faster once the products, not the weight reads, bound
#: the call; the kernel keeps only the sizes where reading the weight is all the work (not measured on AMX)
MAX_ROWS_AMX = 4


@functools.cache
def _has_amx() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and "amx_bf16" in line.split() for line in f)
    except OSError:
        return False


def max_rows() -> int:
    """The most rows a call may have to take the kernel on this CPU."""
    return MAX_ROWS_AMX if _has_amx() else MAX_ROWS


def bf16_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, out_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """``x [..., K] @ weight[N, K]^T + bias`` on the kernel: x bf16 or fp32, weight bf16; the output dtype is
    ``out_dtype`` (default: x's). Needs the loaded kernels (``kernels.load()``)."""
    lead = x.shape[:-1]
    y = torch.ops.ossagent_kernels.bf16_linear(
        x.reshape(-1, x.shape[-1]), weight.contiguous(), bias, out_dtype or x.dtype)
    return y.reshape(*lead, weight.shape[0])


def use_kernel(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """True when this call should take the kernel: few rows, bf16 CPU tensors, nothing to differentiate."""
    return (
        x.dtype == torch.bfloat16
        and weight.dtype == torch.bfloat16
        and x.numel() <= max_rows() * x.shape[-1]
        and x.device.type == "cpu"
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and kernels.available()
    )


class GemvLinear(nn.Linear):
    """``nn.Linear`` whose decode-sized bf16 calls run on the native kernel; everything else is F.linear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if use_kernel(x, self.weight):
            return bf16_linear(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> GemvLinear:
        """A GemvLinear holding ``linear``'s own parameters (nothing copied)."""
        new = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        new.weight = linear.weight
        new.bias = linear.bias
        return new


def switch_linears(model: nn.Module) -> int:
    """Make the bf16 attention projections (q, k, v, out) and the unembedding of a GptOss GemvLinear, in place.
    Layers already replaced (8-bit, LoRA, GemvLinear) are left alone. Returns the number switched."""
    targets: list[tuple[nn.Module, str]] = [(model, "unembedding")]
    for block in model.get_submodule("blocks").children():
        targets += [(block.get_submodule("attn"), name) for name in ("q", "k", "v", "out")]
    switched = 0
    for parent, name in targets:
        linear = getattr(parent, name)
        if type(linear) is nn.Linear and linear.weight.dtype == torch.bfloat16 and linear.weight.device.type == "cpu":
            setattr(parent, name, GemvLinear.from_linear(linear))
            switched += 1
    return switched
