"""Optional 8-bit weights for the attention projections and the unembedding.

Each output row of a weight [N, K] is stored as int8 with one fp32 scale (symmetric, round to nearest:
``w ~= q * scale``, ``scale = max|w_row| / 127``). That halves the bytes a decoded token reads from these
matrices (about 2.4 GB -> 1.2 GB for gpt-oss-20b), which is what bounds decode speed on a CPU.

Decode rows (a few tokens) use the native int8 GEMV: with ``int8_activations`` (set by ``accelerate``) the
activation row is quantised to int8 per 32 values and multiplied with VNNI integer dot products, else fp32
activations, exact products, fp32 sums. More rows dequantise the weight in row chunks to the activation dtype and use ``F.linear`` (AMX for bf16).
Without the native kernels, ``torch._weight_int8pack_mm`` or a plain dequantise-and-multiply is used.
"""

from __future__ import annotations

import ctypes
import mmap
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ossagent.model import kernels

#: inputs with at most this many rows use the int8 GEMV kernel
GEMV_MAX_ROWS = 4
_CHUNK_ROWS = 8192


def release_file_pages(t: torch.Tensor) -> None:
    """Drop the resident pages under ``t``, a view of a private file mapping (safetensors) that was only read.

    The next read faults them in again from the file, so values never change; only resident memory does. Never
    call it on ordinary (anonymous) memory: there the kernel would hand back zeros. Linux only; else a no-op."""
    if not sys.platform.startswith("linux") or t.numel() == 0 or not t.is_contiguous():
        return
    page = mmap.PAGESIZE
    start = t.data_ptr()
    end = start + t.numel() * t.element_size()
    start_aligned = -(-start // page) * page  # whole pages inside the tensor only
    end_aligned = end // page * page
    if end_aligned > start_aligned:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise(ctypes.c_void_p(start_aligned), ctypes.c_size_t(end_aligned - start_aligned), 4)  # DONTNEED


def quantize_rows(
    weight: torch.Tensor, release: Callable[[torch.Tensor], None] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """weight [N, K] -> (int8 [N, K], fp32 scale [N]); processed in row chunks (no full fp32 copy).

    ``release`` is called with each chunk of ``weight`` once it is quantised (the loader frees the file pages
    it read, so the bf16 and the int8 copies are never resident together)."""
    n, k = weight.shape
    q = torch.empty(n, k, dtype=torch.int8)
    scale = torch.empty(n, dtype=torch.float32)
    for a in range(0, n, _CHUNK_ROWS):
        w = weight[a : a + _CHUNK_ROWS].detach().to(device="cpu", dtype=torch.float32)
        s = w.abs().amax(dim=1).clamp_min(1e-30) / 127.0
        q[a : a + _CHUNK_ROWS] = torch.round(w / s[:, None]).clamp_(-127, 127).to(torch.int8)
        scale[a : a + _CHUNK_ROWS] = s
        if release is not None:
            release(weight[a : a + _CHUNK_ROWS])
    return q, scale


class Int8Linear(nn.Module):
    """``nn.Linear`` replacement holding int8 rows + fp32 scales; output in the input's dtype."""

    #: decode rows quantise the activation to int8 per 32 values (VNNI kernel); see ``accelerate``
    int8_activations = False

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.in_features = weight.shape[1]
        self.out_features = weight.shape[0]
        self.weight: torch.Tensor
        self.scale: torch.Tensor
        self.bias: torch.Tensor | None
        self.register_buffer("weight", weight.contiguous())
        self.register_buffer("scale", scale.contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        q, s = quantize_rows(linear.weight)
        return cls(q, s, linear.bias)

    def dequantized(self, dtype: torch.dtype, rows: slice = slice(None)) -> torch.Tensor:
        return (self.weight[rows].to(torch.float32) * self.scale[rows, None]).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        m = x2.shape[0]
        if m <= GEMV_MAX_ROWS and kernels.available() and self.int8_activations and self.in_features % 32 == 0:
            y = torch.ops.ossagent_kernels.int8_gemv_q8(x2, self.weight, self.scale, self.bias).to(x.dtype)
        elif m <= GEMV_MAX_ROWS and kernels.available() and self.in_features % 16 == 0:
            y = torch.ops.ossagent_kernels.int8_gemv(x2, self.weight, self.scale, self.bias).to(x.dtype)
        else:
            parts = []
            for a in range(0, self.out_features, _CHUNK_ROWS):
                rows = slice(a, a + _CHUNK_ROWS)
                b = None if self.bias is None else self.bias[rows].to(x.dtype)
                parts.append(F.linear(x2, self.dequantized(x.dtype, rows), b))
            y = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 rows"


def quantize_model(
    model: nn.Module, attention: bool = True, unembedding: bool = True, int8_activations: bool = True
) -> int:
    """Swap the attention projections and/or the unembedding of a GptOss for :class:`Int8Linear` in place.

    This is the 8-bit configuration: with ``int8_activations`` and the native kernels loaded, decode-sized calls
    of these layers and of the MXFP4 experts also quantise their activations to int8 (see
    ``set_int8_activations``). Returns the number of layers swapped. The bf16
    weights are dropped as each is replaced."""
    swapped = 0
    targets: list[tuple[nn.Module, str]] = []
    if attention:
        blocks = model.get_submodule("blocks")
        for block in blocks.children():
            targets += [(block.get_submodule("attn"), name) for name in ("q", "k", "v", "out")]
    if unembedding:
        targets.append((model, "unembedding"))
    for parent, name in targets:
        linear = getattr(parent, name)
        if isinstance(linear, nn.Linear):
            setattr(parent, name, Int8Linear.from_linear(linear))
            del linear
            swapped += 1
    if int8_activations and kernels.available():
        set_int8_activations(model, True)
    return swapped


def set_int8_activations(model: nn.Module, on: bool) -> int:
    """Let decode-sized calls of the MXFP4 experts and of the 8-bit projections quantise their activations to
    int8 per 32-value block (VNNI kernels), or not. Returns the number of modules switched."""
    from ossagent.model.gpt_oss import Experts

    switched = 0
    for mod in model.modules():
        if isinstance(mod, (Experts, Int8Linear)):
            setattr(mod, "int8_activations", on)  # noqa: B010 - Experts does not declare it
            switched += 1
    return switched
