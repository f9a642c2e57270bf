"""LoRA adapters on a :class:`~ossagent.model.gpt_oss.GptOss`: low-rank updates of its linear maps, by name.

An adapter adds ``scale * B @ A`` (``A [r, in]``, ``B [out, r]``, ``scale = alpha / r``) to the weight of each
target: the attention projections ``q``, ``k``, ``v``, ``out`` of every block, optionally the router
(``router``: ``blocks.N.mlp.gate``) and the unembedding (``unembedding``). Expert weights are never targets: they
stay frozen and, in an MXFP4 checkpoint, packed.

The adapters ride on forward hooks: the model's modules, parameter names and ``state_dict`` are those of the base
model, so the same forward (and the loader, the checkpoint writer, the engine) works with or without them. A hook
adds ``B (A x) * scale`` to its linear map's output while its adapter is active, which equals the forward of the
merged weight ``W + scale * B A`` (:meth:`LoraAdapters.merged_state_dict`). Several adapters can be attached at
once; one is active at a time (:meth:`LoraAdapters.activate`, :meth:`LoraAdapters.using`).

On disk an adapter is a folder with ``adapter_config.json`` and ``adapter_model.safetensors``; tensor names and
config keys follow the PEFT convention for the Hugging Face gpt-oss layout
(``base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight``, ``r``, ``lora_alpha``, ``target_modules``),
plus an ``ossagent`` entry with the base model's sizes, checked when the adapter is loaded.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ossagent.model.config import GptOssConfig

FORMAT = "ossagent.lora/1"
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
ATTENTION = ("q", "k", "v", "out")
TARGETS = (*ATTENTION, "router", "unembedding")
_HF_ATTN = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "out": "o_proj"}
_HF_MODULE = {**_HF_ATTN, "router": "router", "unembedding": "lm_head"}
_PEFT_PREFIX = "base_model.model."


class AdapterError(ValueError):
    """An adapter that does not fit the model, or a folder that is not an adapter (the user's fault)."""


@dataclass(frozen=True)
class LoraConfig:
    """Rank, ``alpha`` (the update is scaled by ``alpha / rank``), targets and dropout on the adapter's input."""

    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ATTENTION
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise AdapterError(f"rank must be at least 1, not {self.rank}")
        if not self.alpha > 0:
            raise AdapterError(f"alpha must be positive, not {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise AdapterError(f"dropout must be within [0, 1), not {self.dropout}")
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or not self.targets:
            raise AdapterError(f"targets {list(self.targets)}: choose one or more of {', '.join(TARGETS)}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def target_paths(config: GptOssConfig, targets: tuple[str, ...]) -> dict[str, str]:
    """GptOss module path -> Hugging Face module name (``blocks.3.attn.q`` -> ``model.layers.3.self_attn.q_proj``)."""
    out: dict[str, str] = {}
    for n in range(config.num_hidden_layers):
        for t in targets:
            if t in _HF_ATTN:
                out[f"blocks.{n}.attn.{t}"] = f"model.layers.{n}.self_attn.{_HF_ATTN[t]}"
            elif t == "router":
                out[f"blocks.{n}.mlp.gate"] = f"model.layers.{n}.mlp.router"
    if "unembedding" in targets:
        out["unembedding"] = "lm_head"
    return out


class LoraPair(nn.Module):
    """One target's ``A [r, in]`` and ``B [out, r]``; B starts at zero, so a new adapter changes nothing."""

    def __init__(self, n_in: int, n_out: int, cfg: LoraConfig, gen: torch.Generator | None, dtype: torch.dtype,
                 device: torch.device) -> None:
        super().__init__()
        a = torch.empty(cfg.rank, n_in, dtype=torch.float32)
        bound = 1.0 / math.sqrt(n_in)  # kaiming-uniform with a = sqrt(5), as nn.Linear and PEFT
        a.uniform_(-bound, bound, generator=gen)
        self.lora_A = nn.Parameter(a.to(device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros(n_out, cfg.rank, device=device, dtype=dtype))
        self.scale = cfg.scale
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout and self.training:
            x = F.dropout(x, self.dropout)
        return F.linear(F.linear(x, self.lora_A.to(x.dtype)), self.lora_B.to(x.dtype)) * self.scale

    def delta(self) -> torch.Tensor:
        """``scale * B A`` in fp32, the change of the merged weight."""
        return (self.lora_B.float() @ self.lora_A.float()) * self.scale


class LoraAdapters(nn.Module):
    """Named adapters attached to ``model`` by forward hooks on its target modules.

    ``adapters[name]`` maps an escaped module path (dots as ``-``) to its :class:`LoraPair`. The base model's
    parameters are not touched; :meth:`freeze_base` turns off their gradients for training."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self._model = [model]  # a list, so the model is not registered as a submodule of the adapters
        self.adapters = nn.ModuleDict()
        self.configs: dict[str, LoraConfig] = {}
        self.active: str | None = None
        self._hooks: dict[str, Any] = {}

    @property
    def model(self) -> nn.Module:
        return self._model[0]

    @property
    def config(self) -> GptOssConfig:
        cfg = getattr(self.model, "config", None)
        if not isinstance(cfg, GptOssConfig):
            raise AdapterError("LoRA adapters attach to a GptOss model (it has no GptOssConfig)")
        return cfg

    # -- building ----------------------------------------------------------------------------------------------
    def add(self, name: str, cfg: LoraConfig, seed: int = 0, dtype: torch.dtype = torch.float32) -> None:
        """A new adapter (B = 0: the model's outputs do not change until it is trained); it becomes active."""
        if not name or "." in name:
            raise AdapterError(f"adapter name {name!r}: give a non-empty name without dots")
        if name in self.adapters:
            raise AdapterError(f"an adapter named {name!r} is already attached")
        gen = torch.Generator().manual_seed(seed)
        pairs = nn.ModuleDict()
        for path in target_paths(self.config, cfg.targets):
            linear = self.model.get_submodule(path)
            n_in, n_out = getattr(linear, "in_features", None), getattr(linear, "out_features", None)
            weight = getattr(linear, "weight", None)
            if not isinstance(n_in, int) or not isinstance(n_out, int) or not isinstance(weight, torch.Tensor):
                raise AdapterError(f"{path} is a {type(linear).__name__}, not a linear map")
            pairs[_key(path)] = LoraPair(n_in, n_out, cfg, gen, dtype, weight.device)
            self._hook(path)
        self.adapters[name] = pairs
        self.configs[name] = cfg
        self.active = name

    def _hook(self, path: str) -> None:
        if path in self._hooks:
            return
        key = _key(path)

        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
            if self.active is None:
                return output
            pairs = self._pairs(self.active)
            if key not in pairs:
                return output
            return output + pairs[key](inputs[0])

        self._hooks[path] = self.model.get_submodule(path).register_forward_hook(hook)

    def remove(self, name: str) -> None:
        self._check(name)
        del self.adapters[name]
        del self.configs[name]
        if self.active == name:
            self.active = None

    def detach(self) -> None:
        """Remove every hook: the model is the base model again."""
        for h in self._hooks.values():
            h.remove()
        self._hooks.clear()
        self.active = None

    def _pairs(self, name: str) -> nn.ModuleDict:
        return cast(nn.ModuleDict, self.adapters[name])

    def _pair(self, name: str, path: str) -> LoraPair:
        return cast(LoraPair, self._pairs(name)[_key(path)])

    # -- choosing ----------------------------------------------------------------------------------------------
    def _check(self, name: str) -> None:
        if name not in self.adapters:
            have = ", ".join(sorted(self.adapters)) or "none"
            raise AdapterError(f"no adapter named {name!r} (attached: {have})")

    def activate(self, name: str | None) -> None:
        """Make ``name`` the adapter in effect; None runs the base model."""
        if name is not None:
            self._check(name)
        self.active = name

    @contextmanager
    def using(self, name: str | None) -> Iterator[None]:
        before = self.active
        self.activate(name)
        try:
            yield
        finally:
            self.active = before

    def names(self) -> list[str]:
        return list(self.adapters)

    def parameters_of(self, name: str) -> list[nn.Parameter]:
        self._check(name)
        return list(self.adapters[name].parameters())

    def freeze_base(self) -> None:
        """No gradients for any base parameter (experts, norms, embeddings, the targets' own weights)."""
        for p in self.model.parameters():
            p.requires_grad_(False)

    # -- merging -----------------------------------------------------------------------------------------------
    def deltas(self, name: str) -> dict[str, torch.Tensor]:
        """GptOss weight name -> ``scale * B A`` (fp32) of adapter ``name``."""
        self._check(name)
        out = {}
        for key, pair in self._pairs(name).items():
            linear = self.model.get_submodule(_path(key))
            if not isinstance(linear, nn.Linear) or not linear.weight.is_floating_point():
                raise AdapterError(f"{_path(key)} is a {type(linear).__name__}: an adapter merges into the float "
                                   "weights as loaded (before int8 or other weight swaps); use it unmerged here")
            out[_path(key) + ".weight"] = cast(LoraPair, pair).delta()
        return out

    @torch.no_grad()
    def merged_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        """The base ``state_dict`` with adapter ``name`` merged into its targets (fp32 sum, cast to the weight's
        dtype); every other tensor, the packed experts included, is the base tensor itself."""
        state = dict(self.model.state_dict())
        for wname, delta in self.deltas(name).items():
            w = state[wname]
            state[wname] = (w.float() + delta.to(w.device)).to(w.dtype)
        return state

    @torch.no_grad()
    def merge_into_model(self, name: str) -> None:
        """Fold adapter ``name`` into the model's weights (new tensors, so a memory-mapped base is never
        written) and remove it: inference then costs exactly what the base model costs."""
        for wname, delta in self.deltas(name).items():
            path = wname.rsplit(".", 1)[0]
            linear = cast(nn.Linear, self.model.get_submodule(path))
            w = linear.weight
            merged = (w.float() + delta.to(w.device)).to(w.dtype)
            linear.weight = nn.Parameter(merged, requires_grad=w.requires_grad)
        self.remove(name)

    # -- files -------------------------------------------------------------------------------------------------
    def save(self, name: str, folder: str | Path, base_model: str = "") -> Path:
        """Write adapter ``name`` (PEFT-style names, fp32) and its config to ``folder``."""
        from safetensors.torch import save_file

        self._check(name)
        cfg, mc = self.configs[name], self.config
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = target_paths(mc, cfg.targets)
        tensors: dict[str, torch.Tensor] = {}
        for path, hf in paths.items():
            pair = self._pair(name, path)
            tensors[f"{_PEFT_PREFIX}{hf}.lora_A.weight"] = pair.lora_A.detach().float().cpu().contiguous()
            tensors[f"{_PEFT_PREFIX}{hf}.lora_B.weight"] = pair.lora_B.detach().float().cpu().contiguous()
        save_file(dict(sorted(tensors.items())), str(out / WEIGHTS_FILE), metadata={"format": "pt"})
        meta = {
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": cfg.rank, "lora_alpha": cfg.alpha,
            "lora_dropout": cfg.dropout, "bias": "none", "base_model_name_or_path": base_model,
            "target_modules": sorted({_HF_MODULE[t] for t in cfg.targets}),
            "ossagent": {"format": FORMAT, "name": name, "targets": list(cfg.targets), "base": _fingerprint(mc)},
        }
        (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return out

    def load(self, folder: str | Path, name: str | None = None, dtype: torch.dtype = torch.float32) -> str:
        """Attach the adapter saved in ``folder`` under ``name`` (default: the name it was saved with); it
        becomes active. Checks the base model's sizes and every tensor's shape."""
        from safetensors.torch import load_file

        src = Path(folder)
        cfg, saved_name = read_adapter_config(src, self.config)
        name = name or saved_name
        self.add(name, cfg, dtype=dtype)
        try:
            tensors = load_file(str(src / WEIGHTS_FILE))
        except (OSError, ValueError) as exc:
            self.remove(name)
            raise AdapterError(f"{src / WEIGHTS_FILE}: cannot read ({exc})") from None
        expected = set()
        with torch.no_grad():
            for path, hf in target_paths(self.config, cfg.targets).items():
                pair = self._pair(name, path)
                for leaf, p in (("lora_A", pair.lora_A), ("lora_B", pair.lora_B)):
                    tname = f"{_PEFT_PREFIX}{hf}.{leaf}.weight"
                    expected.add(tname)
                    t = tensors.get(tname)
                    if t is None or tuple(t.shape) != tuple(p.shape):
                        self.remove(name)
                        got = "missing" if t is None else f"shape {list(t.shape)}"
                        raise AdapterError(f"{src / WEIGHTS_FILE}: {tname} is {got}, expected {list(p.shape)}")
                    p.copy_(t.to(p.dtype))
        extra = sorted(set(tensors) - expected)
        if extra:
            self.remove(name)
            raise AdapterError(f"{src / WEIGHTS_FILE}: tensors this adapter config does not name: {extra[:3]}")
        return name


def _key(path: str) -> str:
    return path.replace(".", "-")


def _path(key: str) -> str:
    return key.replace("-", ".")


def _fingerprint(c: GptOssConfig) -> dict[str, int]:
    return {"num_hidden_layers": c.num_hidden_layers, "hidden_size": c.hidden_size, "vocab_size": c.vocab_size,
            "num_attention_heads": c.num_attention_heads, "num_key_value_heads": c.num_key_value_heads,
            "head_dim": c.head_dim, "num_experts": c.num_experts}


def read_adapter_config(folder: Path, model_config: GptOssConfig | None = None) -> tuple[LoraConfig, str]:
    """(LoraConfig, saved name) of an adapter folder; with ``model_config``, checks that it fits that model."""
    path = folder / CONFIG_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdapterError(f"{folder}: not an adapter folder (no {CONFIG_FILE})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{path}: cannot read ({exc})") from None
    own = meta.get("ossagent") if isinstance(meta, dict) else None
    if not isinstance(own, dict) or own.get("format") != FORMAT:
        raise AdapterError(f"{path}: not an ossagent LoRA adapter (expected ossagent.format {FORMAT!r})")
    try:
        cfg = LoraConfig(rank=int(meta["r"]), alpha=float(meta["lora_alpha"]), targets=tuple(own["targets"]),
                         dropout=float(meta.get("lora_dropout", 0.0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise AdapterError(f"{path}: malformed adapter config ({exc})") from None
    if model_config is not None and own.get("base") != _fingerprint(model_config):
        raise AdapterError(f"{path}: made for a model with {own.get('base')}, this model has "
                           f"{_fingerprint(model_config)}")
    return cfg, str(own.get("name") or folder.name)


def merge_checkpoint(base: str | Path, adapter: str | Path, out: str | Path, shard_bytes: int = 2 << 30) -> Path:
    """Write ``base`` with ``adapter`` merged as a new Hugging Face-layout checkpoint in ``out``; MXFP4 experts are
    copied packed, bit for bit. Memory: the base model (memory-mapped) plus one merged weight at a time."""
    from ossagent.model.checkpoint_writer import write_checkpoint
    from ossagent.model.loader import load_model

    model = load_model(base, device="cpu")
    experts = "mxfp4" if model.blocks[0].mlp.experts.quantized else "bf16"  # type: ignore[union-attr]
    adapters = LoraAdapters(model)
    name = adapters.load(adapter)
    folder = write_checkpoint(out, model.config, adapters.merged_state_dict(name), layout="hf", experts=experts,
                              shard_bytes=shard_bytes)
    src = Path(base)
    for f in sorted(src.iterdir()):  # tokenizer files, generation config, chat template: copied as they are
        if f.is_file() and f.suffix != ".safetensors" and f.name not in ("config.json", "model.safetensors.index.json"):
            shutil.copyfile(f, folder / f.name)
    return folder


def attach_adapters(model: nn.Module, folders: dict[str, str | Path], merge: bool = True) -> LoraAdapters:
    """Adapters for inference (``--adapter``): ``folders`` maps a name to an adapter folder.

    One adapter with ``merge``: folded into the weights (call before int8 or other weight swaps), so inference
    costs what the base model costs; the returned object then holds no adapter. Otherwise they stay separate
    and :meth:`LoraAdapters.activate` picks one per request, none active to begin with. An engine that keeps a
    KV cache must drop it when the active adapter changes (the cached keys and values depend on it)."""
    adapters = LoraAdapters(model)
    merging = merge and len(folders) == 1
    dtype = torch.float32 if merging else getattr(model, "dtype", torch.float32)  # unmerged: no cast per call
    for name, folder in folders.items():
        adapters.load(folder, name=name, dtype=dtype)
    adapters.activate(None)
    for p in adapters.parameters():
        p.requires_grad_(False)
    if merging:
        adapters.merge_into_model(next(iter(folders)))
    return adapters
