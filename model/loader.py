"""Load a gpt-oss model folder (Hugging Face or ``original/`` layout) into :class:`GptOss`.

- HF: ``config.json`` + ``model.safetensors.index.json`` with shards (or one ``model.safetensors``); experts as
  MXFP4 ``*_blocks``/``*_scales`` (``quantization_config.quant_method == "mxfp4"``) or dequantized bf16
  ``gate_up_proj [E, H, 2I]`` / ``down_proj [E, I, H]`` (used through a transposed view, no copy).
- original: ``original/config.json`` + every ``*.safetensors`` beside it, ``block.N.*`` names, fused ``qkv``
  (split into three views, no copy).

Everything is memory-mapped. On CPU with the checkpoint's dtype the model's tensors *are* the mapped pages; MXFP4
experts stay packed and are decoded per use. Errors are :class:`CheckpointError` naming file and tensor.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ossagent.model.config import ConfigError, GptOssConfig
from ossagent.model.gpt_oss import GptOss
from ossagent.model.safetensors_mmap import CheckpointError, SafetensorsFile

HF_INDEX = "model.safetensors.index.json"

Transform = Callable[[list[torch.Tensor]], torch.Tensor]


@dataclass
class Source:
    """How one model tensor is made: from checkpoint tensors ``names``, each of ``shape`` and ``dtype``."""

    names: list[str]
    shapes: list[tuple[int, ...]]
    dtypes: list[torch.dtype]
    transform: Transform


def _one(name: str, shape: tuple[int, ...], dtype: torch.dtype = torch.bfloat16) -> Source:
    return Source([name], [shape], [dtype], lambda ts: ts[0])


def _rows(a: int, b: int) -> Transform:
    def take(ts: list[torch.Tensor]) -> torch.Tensor:
        return ts[0][a:b]

    return take


def _layout(path: Path, layout: str | None) -> tuple[str, Path]:
    """-> ("hf" | "original", folder holding the safetensors)."""
    if layout not in (None, "hf", "original"):
        raise ValueError(f"layout must be 'hf', 'original' or None, got {layout!r}")
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a model folder")
    has_hf = (path / "config.json").is_file()
    orig = path / "original"
    has_orig = (orig / "config.json").is_file()
    if layout == "original" or (layout is None and not has_hf and has_orig):
        if not has_orig:
            raise CheckpointError(f"{orig / 'config.json'}: file not found (original layout)")
        return "original", orig
    if not has_hf:
        raise CheckpointError(f"{path / 'config.json'}: file not found (no original/config.json either)")
    return "hf", path


def _shards(layout: str, folder: Path) -> dict[str, Path]:
    """tensor name -> file that should hold it."""
    index = folder / HF_INDEX
    if layout == "hf" and index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index}: malformed index ({exc})") from None
        if not isinstance(weight_map, dict) or not all(
                isinstance(f, str) and f == Path(f).name and f not in ("", ".", "..") for f in weight_map.values()):
            raise CheckpointError(f"{index}: malformed index (weight_map must map tensor names to file names "
                                  "in this folder)")
        return {name: folder / fname for name, fname in weight_map.items()}
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder}: no *.safetensors files (and no {HF_INDEX})")
    out: dict[str, Path] = {}
    for f in files:
        for name in SafetensorsFile(f).entries:
            out[name] = f
    return out


def _hf_sources(c: GptOssConfig, names: set[str]) -> dict[str, Source]:
    e, h, i, v = c.num_experts, c.hidden_size, c.intermediate_size, c.vocab_size
    q, kv = c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
    quantized = "model.layers.0.mlp.experts.gate_up_proj_blocks" in names
    src = {
        "embedding.weight": _one("model.embed_tokens.weight", (v, h)),
        "norm.scale": _one("model.norm.weight", (h,)),
        "unembedding.weight": _one("lm_head.weight", (v, h)),
    }
    for n in range(c.num_hidden_layers):
        hf, me = f"model.layers.{n}", f"blocks.{n}"
        src[f"{me}.attn.norm.scale"] = _one(f"{hf}.input_layernorm.weight", (h,))
        src[f"{me}.mlp.norm.scale"] = _one(f"{hf}.post_attention_layernorm.weight", (h,))
        for mine, theirs, rows, cols in (("q", "q_proj", q, h), ("k", "k_proj", kv, h), ("v", "v_proj", kv, h),
                                         ("out", "o_proj", h, q)):
            src[f"{me}.attn.{mine}.weight"] = _one(f"{hf}.self_attn.{theirs}.weight", (rows, cols))
            src[f"{me}.attn.{mine}.bias"] = _one(f"{hf}.self_attn.{theirs}.bias", (rows,))
        src[f"{me}.attn.sinks"] = _one(f"{hf}.self_attn.sinks", (c.num_attention_heads,))
        src[f"{me}.mlp.gate.weight"] = _one(f"{hf}.mlp.router.weight", (e, h))
        src[f"{me}.mlp.gate.bias"] = _one(f"{hf}.mlp.router.bias", (e,))
        ex, mex = f"{hf}.mlp.experts", f"{me}.mlp.experts"
        src[f"{mex}.mlp1_bias"] = _one(f"{ex}.gate_up_proj_bias", (e, 2 * i))
        src[f"{mex}.mlp2_bias"] = _one(f"{ex}.down_proj_bias", (e, h))
        if quantized:
            src[f"{mex}.mlp1_blocks"] = _one(f"{ex}.gate_up_proj_blocks", (e, 2 * i, h // 32, 16), torch.uint8)
            src[f"{mex}.mlp1_scales"] = _one(f"{ex}.gate_up_proj_scales", (e, 2 * i, h // 32), torch.uint8)
            src[f"{mex}.mlp2_blocks"] = _one(f"{ex}.down_proj_blocks", (e, h, i // 32, 16), torch.uint8)
            src[f"{mex}.mlp2_scales"] = _one(f"{ex}.down_proj_scales", (e, h, i // 32), torch.uint8)
        else:  # dequantized HF layout is [E, in, out]; ours is [E, out, in]: a transposed view
            src[f"{mex}.mlp1_weight"] = Source([f"{ex}.gate_up_proj"], [(e, h, 2 * i)], [torch.bfloat16],
                                               lambda ts: ts[0].transpose(1, 2))
            src[f"{mex}.mlp2_weight"] = Source([f"{ex}.down_proj"], [(e, i, h)], [torch.bfloat16],
                                               lambda ts: ts[0].transpose(1, 2))
    return src


def _original_sources(c: GptOssConfig, names: set[str]) -> dict[str, Source]:
    e, h, i, v = c.num_experts, c.hidden_size, c.intermediate_size, c.vocab_size
    q, kv = c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
    quantized = "block.0.mlp.mlp1_weight.blocks" in names
    src = {
        "embedding.weight": _one("embedding.weight", (v, h)),
        "norm.scale": _one("norm.scale", (h,)),
        "unembedding.weight": _one("unembedding.weight", (v, h)),
    }
    splits = {"q": (0, q), "k": (q, q + kv), "v": (q + kv, q + 2 * kv)}
    for n in range(c.num_hidden_layers):
        blk, me = f"block.{n}", f"blocks.{n}"
        src[f"{me}.attn.norm.scale"] = _one(f"{blk}.attn.norm.scale", (h,))
        src[f"{me}.mlp.norm.scale"] = _one(f"{blk}.mlp.norm.scale", (h,))
        for mine, (a, b) in splits.items():  # fused qkv rows [q | k | v], split as views
            src[f"{me}.attn.{mine}.weight"] = Source([f"{blk}.attn.qkv.weight"], [(q + 2 * kv, h)], [torch.bfloat16],
                                                     _rows(a, b))
            src[f"{me}.attn.{mine}.bias"] = Source([f"{blk}.attn.qkv.bias"], [(q + 2 * kv,)], [torch.bfloat16],
                                                   _rows(a, b))
        src[f"{me}.attn.out.weight"] = _one(f"{blk}.attn.out.weight", (h, q))
        src[f"{me}.attn.out.bias"] = _one(f"{blk}.attn.out.bias", (h,))
        src[f"{me}.attn.sinks"] = _one(f"{blk}.attn.sinks", (c.num_attention_heads,))
        src[f"{me}.mlp.gate.weight"] = _one(f"{blk}.mlp.gate.weight", (e, h))
        src[f"{me}.mlp.gate.bias"] = _one(f"{blk}.mlp.gate.bias", (e,))
        mex = f"{me}.mlp.experts"
        src[f"{mex}.mlp1_bias"] = _one(f"{blk}.mlp.mlp1_bias", (e, 2 * i))
        src[f"{mex}.mlp2_bias"] = _one(f"{blk}.mlp.mlp2_bias", (e, h))
        if quantized:
            src[f"{mex}.mlp1_blocks"] = _one(f"{blk}.mlp.mlp1_weight.blocks", (e, 2 * i, h // 32, 16), torch.uint8)
            src[f"{mex}.mlp1_scales"] = _one(f"{blk}.mlp.mlp1_weight.scales", (e, 2 * i, h // 32), torch.uint8)
            src[f"{mex}.mlp2_blocks"] = _one(f"{blk}.mlp.mlp2_weight.blocks", (e, h, i // 32, 16), torch.uint8)
            src[f"{mex}.mlp2_scales"] = _one(f"{blk}.mlp.mlp2_weight.scales", (e, h, i // 32), torch.uint8)
        else:
            src[f"{mex}.mlp1_weight"] = _one(f"{blk}.mlp.mlp1_weight", (e, 2 * i, h))
            src[f"{mex}.mlp2_weight"] = _one(f"{blk}.mlp.mlp2_weight", (e, h, i))
    return src


def _check_quantization(layout: str, folder: Path, quantized: bool) -> None:
    if layout != "hf":
        return
    raw = json.loads((folder / "config.json").read_text())
    qc = raw.get("quantization_config")
    if qc is None:
        return
    method = qc.get("quant_method") if isinstance(qc, dict) else None
    if method != "mxfp4":
        raise ConfigError(f"{folder / 'config.json'}: quantization_config.quant_method {method!r} is not supported "
                          "(only mxfp4 experts, or no quantization_config for bf16 experts)")
    if not quantized:
        raise CheckpointError(f"{folder}: config says mxfp4 but the checkpoint has no *_blocks expert tensors")


def _set(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    *path, leaf = name.split(".")
    mod = model.get_submodule(".".join(path))
    if leaf in mod._parameters:
        mod._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)
    elif leaf in mod._buffers:
        mod._buffers[leaf] = tensor
    else:  # pragma: no cover - sources and model are built from the same names
        raise KeyError(name)


def load_model(
    path: str | Path,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.bfloat16,
    layout: str | None = None,
) -> GptOss:
    """Build :class:`GptOss` from a model folder. ``layout`` None picks HF when ``config.json`` exists."""
    root = Path(path)
    kind, folder = _layout(root, layout)
    config = GptOssConfig.load(folder / "config.json")
    where = _shards(kind, folder)
    names = set(where)
    sources = _hf_sources(config, names) if kind == "hf" else _original_sources(config, names)
    quantized = any(n.endswith("_blocks") for n in sources)
    _check_quantization(kind, folder, quantized)

    used = {n for s in sources.values() for n in s.names}
    unexpected = sorted(names - used)
    if unexpected:
        more = f" (and {len(unexpected) - 5} more)" if len(unexpected) > 5 else ""
        raise CheckpointError(
            f"{folder}: tensors this model does not use: {unexpected[:5]}{more}; is the config for this checkpoint?"
        )

    with torch.device("meta"):
        model = GptOss(config, quantized_experts=quantized, dtype=dtype)
    files: dict[Path, SafetensorsFile] = {}
    target = torch.device(device) if device is not None else torch.device("cpu")
    for mine, src in sources.items():
        inputs = []
        for name, shape, want in zip(src.names, src.shapes, src.dtypes, strict=True):
            if name not in where:
                raise CheckpointError(f"{folder}: tensor {name!r} is missing from the checkpoint")
            fpath = where[name]
            if fpath not in files:
                if not fpath.is_file():
                    raise CheckpointError(f"{fpath}: file not found (it should hold tensor {name!r})")
                files[fpath] = SafetensorsFile(fpath)
            f = files[fpath]
            if name not in f.entries:
                raise CheckpointError(f"{fpath}: tensor {name!r} is missing (the index places it in this file)")
            got_dtype, got_shape, _, _ = f.entries[name]
            if got_shape != shape:
                raise CheckpointError(f"{fpath}: tensor {name!r} has shape {list(got_shape)}, expected {list(shape)}")
            ok_dtypes = (want,) if want == torch.uint8 else (torch.bfloat16, torch.float16, torch.float32)
            if got_dtype not in ok_dtypes:
                raise CheckpointError(f"{fpath}: tensor {name!r} has dtype {got_dtype}, expected {want}")
            inputs.append(f.get(name))
        t = src.transform(inputs)
        want_dtype = torch.float32 if mine.endswith("norm.scale") else (
            torch.uint8 if t.dtype == torch.uint8 else dtype)
        if t.dtype != want_dtype or t.device != target:
            t = t.to(device=target, dtype=want_dtype)
        _set(model, mine, t)
    model.rotary = type(model.rotary)(config, target)
    model.eval()
    return model
