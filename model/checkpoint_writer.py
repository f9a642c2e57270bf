"""Write gpt-oss checkpoints from a config: random weights, or given weights (a :class:`GptOss` state dict).

Layouts: ``"hf"`` (``config.json`` with ``quantization_config`` for MXFP4, sharded ``model-0000k-of-0000N``
safetensors + ``model.safetensors.index.json``) and ``"original"`` (``original/config.json`` +
``original/model*.safetensors`` with ``block.N.*`` names and fused qkv). Experts are ``"mxfp4"`` (packed; dense
inputs are rounded by :func:`ossagent.model.mxfp4.quantize`) or ``"bf16"`` (dequantized).

Tensors are produced one at a time and written shard by shard, so a 13.8 GB random checkpoint needs about one
shard of memory. Used by tests, benchmarks and the demo-model trainer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file

from ossagent.model import mxfp4
from ossagent.model.config import GptOssConfig

RMS_E2M1 = math.sqrt(sum(v * v for v in mxfp4.E2M1_VALUES) / 16)  # rms of a uniformly random E2M1 value
CHUNK = 1 << 24


def _randn(shape: tuple[int, ...], std: float, gen: torch.Generator, mean: float = 0.0) -> torch.Tensor:
    """bf16 N(mean, std) without a full-size fp32 temporary."""
    out = torch.empty(shape, dtype=torch.bfloat16)
    flat = out.view(-1)
    for a in range(0, flat.numel(), CHUNK):
        n = min(CHUNK, flat.numel() - a)
        flat[a : a + n] = torch.randn(n, generator=gen) * std + mean
    return out


def _random_packed(rows_shape: tuple[int, ...], k: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random MXFP4 weight [..., k] whose values have rms about 1/sqrt(k)."""
    blocks = torch.empty((*rows_shape, k // 32, 16), dtype=torch.uint8)
    flat = blocks.view(-1)
    for a in range(0, flat.numel(), CHUNK):
        n = min(CHUNK, flat.numel() - a)
        flat[a : a + n] = torch.randint(0, 256, (n,), generator=gen, dtype=torch.uint8)
    s = round(mxfp4.SCALE_BIAS + math.log2(1 / math.sqrt(k) / RMS_E2M1))
    scales = torch.randint(s - 1, s + 2, (*rows_shape, k // 32), generator=gen, dtype=torch.uint8)
    return blocks, scales


def _random_tensors(c: GptOssConfig, packed: bool, seed: int) -> Iterator[tuple[str, torch.Tensor]]:
    """(GptOss parameter name, tensor) in model order; experts packed when ``packed``."""
    gen = torch.Generator().manual_seed(seed)
    e, h, i, v = c.num_experts, c.hidden_size, c.intermediate_size, c.vocab_size
    q, kv = c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
    yield "embedding.weight", _randn((v, h), 1.0, gen)
    for n in range(c.num_hidden_layers):
        b = f"blocks.{n}"
        yield f"{b}.attn.norm.scale", _randn((h,), 0.1, gen, 1.0)
        for name, rows, cols in (("q", q, h), ("k", kv, h), ("v", kv, h), ("out", h, q)):
            yield f"{b}.attn.{name}.weight", _randn((rows, cols), 1 / math.sqrt(cols), gen)
            yield f"{b}.attn.{name}.bias", _randn((rows,), 0.1, gen)
        yield f"{b}.attn.sinks", _randn((c.num_attention_heads,), 1.0, gen)
        yield f"{b}.mlp.norm.scale", _randn((h,), 0.1, gen, 1.0)
        yield f"{b}.mlp.gate.weight", _randn((e, h), 4 / math.sqrt(h), gen)  # decisive routing, as trained
        yield f"{b}.mlp.gate.bias", _randn((e,), 0.1, gen)
        x = f"{b}.mlp.experts"
        if packed:
            blocks, scales = _random_packed((e, 2 * i), h, gen)
            yield f"{x}.mlp1_blocks", blocks
            yield f"{x}.mlp1_scales", scales
        else:
            yield f"{x}.mlp1_weight", _randn((e, 2 * i, h), 1 / math.sqrt(h), gen)
        yield f"{x}.mlp1_bias", _randn((e, 2 * i), 0.1, gen)
        if packed:
            blocks, scales = _random_packed((e, h), i, gen)
            yield f"{x}.mlp2_blocks", blocks
            yield f"{x}.mlp2_scales", scales
        else:
            yield f"{x}.mlp2_weight", _randn((e, h, i), 1 / math.sqrt(i), gen)
        yield f"{x}.mlp2_bias", _randn((e, h), 0.1, gen)
    yield "norm.scale", _randn((h,), 0.1, gen, 1.0)
    yield "unembedding.weight", _randn((v, h), 1 / math.sqrt(h), gen)


def _convert_experts(
    items: Iterator[tuple[str, torch.Tensor]], experts: str
) -> Iterator[tuple[str, torch.Tensor]]:
    """Bring expert tensors to the requested form: packed (mxfp4) or dense bf16 [E, out, in]."""
    pending: dict[str, torch.Tensor] = {}
    for name, t in items:
        base, _, leaf = name.rpartition(".")
        if leaf in ("mlp1_weight", "mlp2_weight") and experts == "mxfp4":
            blocks, scales = mxfp4.quantize(t)
            yield f"{base}.{leaf[:4]}_blocks", blocks
            yield f"{base}.{leaf[:4]}_scales", scales
        elif leaf.endswith(("_blocks", "_scales")) and experts == "bf16":
            pending[leaf] = t
            stem = leaf[:4]
            if f"{stem}_blocks" in pending and f"{stem}_scales" in pending:
                w = mxfp4.dequantize(pending.pop(f"{stem}_blocks"), pending.pop(f"{stem}_scales"), torch.bfloat16)
                yield f"{base}.{stem}_weight", w
        else:
            yield name, t


def _hf_names(
    items: Iterator[tuple[str, torch.Tensor]], c: GptOssConfig
) -> Iterator[tuple[str, torch.Tensor]]:
    attn = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "out": "o_proj"}
    experts = {"mlp1_blocks": "gate_up_proj_blocks", "mlp1_scales": "gate_up_proj_scales",
               "mlp1_bias": "gate_up_proj_bias", "mlp2_blocks": "down_proj_blocks",
               "mlp2_scales": "down_proj_scales", "mlp2_bias": "down_proj_bias"}
    for name, t in items:
        parts = name.split(".")
        if name == "embedding.weight":
            yield "model.embed_tokens.weight", t
        elif name == "norm.scale":
            yield "model.norm.weight", t
        elif name == "unembedding.weight":
            yield "lm_head.weight", t
        else:
            n, rest = parts[1], parts[2:]
            p = f"model.layers.{n}"
            if rest == ["attn", "norm", "scale"]:
                yield f"{p}.input_layernorm.weight", t
            elif rest == ["mlp", "norm", "scale"]:
                yield f"{p}.post_attention_layernorm.weight", t
            elif rest[0] == "attn" and rest[1] == "sinks":
                yield f"{p}.self_attn.sinks", t
            elif rest[0] == "attn":
                yield f"{p}.self_attn.{attn[rest[1]]}.{rest[2]}", t
            elif rest[1] == "gate":
                yield f"{p}.mlp.router.{rest[2]}", t
            elif rest[2] in ("mlp1_weight", "mlp2_weight"):  # HF dense experts are [E, in, out]
                hf = "gate_up_proj" if rest[2] == "mlp1_weight" else "down_proj"
                yield f"{p}.mlp.experts.{hf}", t.transpose(1, 2).contiguous()
            else:
                yield f"{p}.mlp.experts.{experts[rest[2]]}", t


def _original_names(items: Iterator[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
    qkv: dict[str, torch.Tensor] = {}
    for name, t in items:
        parts = name.split(".")
        if parts[0] != "blocks":
            yield name, t
            continue
        b, rest = f"block.{parts[1]}", parts[2:]
        if rest[0] == "attn" and rest[1] in ("q", "k", "v"):
            qkv[f"{rest[1]}.{rest[2]}"] = t
            for kind in ("weight", "bias"):
                if all(f"{x}.{kind}" in qkv for x in "qkv"):
                    yield f"{b}.attn.qkv.{kind}", torch.cat([qkv.pop(f"{x}.{kind}") for x in "qkv"])
        elif rest[0] == "mlp" and rest[1] == "experts":
            leaf = rest[2]
            if leaf.endswith(("_blocks", "_scales")):
                yield f"{b}.mlp.{leaf[:4]}_weight.{leaf[5:]}", t
            else:
                yield f"{b}.mlp.{leaf}", t
        else:
            yield f"{b}.{'.'.join(rest)}", t


def write_checkpoint(
    path: str | Path,
    config: GptOssConfig,
    state: Mapping[str, torch.Tensor] | None = None,
    *,
    layout: str = "hf",
    experts: str = "mxfp4",
    seed: int = 0,
    shard_bytes: int = 2 << 30,
) -> Path:
    """Write a checkpoint folder; returns the folder holding its config (``path`` or ``path/original``).

    ``state``: a :class:`GptOss` state dict (dense or packed experts); None writes random weights."""
    if layout not in ("hf", "original"):
        raise ValueError(f"layout must be 'hf' or 'original', got {layout!r}")
    if experts not in ("mxfp4", "bf16"):
        raise ValueError(f"experts must be 'mxfp4' or 'bf16', got {experts!r}")
    root = Path(path)
    folder = root if layout == "hf" else root / "original"
    folder.mkdir(parents=True, exist_ok=True)
    if state is None:
        items: Iterator[tuple[str, torch.Tensor]] = _random_tensors(config, experts == "mxfp4", seed)
    else:
        items = ((k, v.detach().cpu()) for k, v in state.items() if not k.endswith("inv_freq"))
        items = ((k, v if v.dtype == torch.uint8 else v.to(torch.bfloat16)) for k, v in items)
    items = _convert_experts(items, experts)
    items = _hf_names(items, config) if layout == "hf" else _original_names(items)

    shards: list[dict[str, torch.Tensor]] = [{}]
    sizes = [0]
    files: list[Path] = []
    tmp_names: list[str] = []
    weight_map: dict[str, int] = {}

    def flush() -> None:
        name = f"shard-{len(files):05d}.tmp"
        save_file({k: v.contiguous() for k, v in shards[-1].items()}, str(folder / name),
                  metadata={"format": "pt"})
        files.append(folder / name)
        tmp_names.append(name)
        shards[-1] = {}
        sizes[-1] = 0

    for name, t in items:
        nbytes = t.numel() * t.element_size()
        if shards[-1] and sizes[-1] + nbytes > shard_bytes:
            flush()
        shards[-1][name] = t
        sizes[-1] += nbytes
        weight_map[name] = len(files)
    if shards[-1]:
        flush()

    count = len(files)
    if layout == "hf" and count > 1:
        final = [f"model-{k + 1:05d}-of-{count:05d}.safetensors" for k in range(count)]
    else:
        final = ["model.safetensors"] if count == 1 else [f"model-{k:05d}.safetensors" for k in range(count)]
    for f, name in zip(files, final, strict=True):
        f.rename(folder / name)
    if layout == "hf":
        cfg = config.to_hf_dict()
        if experts == "mxfp4":
            cfg["quantization_config"] = {
                "quant_method": "mxfp4",
                "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                           "model.embed_tokens", "lm_head"],
            }
        (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        if count > 1:
            total = sum((folder / n).stat().st_size for n in final)
            index = {"metadata": {"total_size": total},
                     "weight_map": {k: final[v] for k, v in sorted(weight_map.items())}}
            (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    else:
        (folder / "config.json").write_text(json.dumps(config.to_original_dict(), indent=2) + "\n")
    return folder
