"""GptOssConfig: every size of the model, read from either checkpoint layout's config.json.

Two spellings exist on disk:
- Hugging Face (repo root ``config.json``): ``num_local_experts``, ``num_experts_per_tok``, ``rope_scaling`` or
  ``rope_parameters`` (yarn), ``layer_types``, ``rms_norm_eps``, ``quantization_config`` ...
- original (``original/config.json``): exactly the 16 fields of the reference ``ModelConfig``.

Keys that change the math but hold a value this implementation does not compute (for example a non-yarn RoPE,
tied embeddings, attention without biases) raise :class:`ConfigError`, and so do keys nobody knows: a silently
ignored key could mean wrong logits. Harmless bookkeeping keys of Hugging Face configs are accepted and ignored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The model folder's configuration is missing, malformed, or asks for math this code does not do."""


ORIGINAL_KEYS = (
    "num_hidden_layers",
    "num_experts",
    "experts_per_token",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "swiglu_limit",
    "head_dim",
    "num_attention_heads",
    "num_key_value_heads",
    "sliding_window",
    "initial_context_length",
    "rope_theta",
    "rope_scaling_factor",
    "rope_ntk_alpha",
    "rope_ntk_beta",
)

# Hugging Face keys that carry no math for inference (bookkeeping, training-only, generation defaults).
_HF_IGNORED = frozenset(
    {
        "architectures", "model_type", "torch_dtype", "dtype", "transformers_version", "use_cache",
        "output_router_logits", "router_aux_loss_coef", "initializer_range", "attention_dropout",
        "bos_token_id", "eos_token_id", "pad_token_id", "max_position_embeddings", "_name_or_path",
        "output_attentions", "output_hidden_states", "return_dict", "chunk_size_feed_forward",
        "is_encoder_decoder", "id2label", "label2id", "problem_type", "tokenizer_class", "pruned_heads",
        "quantization_config",  # validated by the loader, which knows which tensors are quantized
    }
)


# Upper bounds far above any gpt-oss (20b: 24 layers, 32 experts, 201,088 tokens, width 2,880, 131,072 context).
_LIMITS = {
    "num_hidden_layers": 1024, "num_experts": 4096, "vocab_size": 1 << 22, "hidden_size": 1 << 16,
    "intermediate_size": 1 << 18, "head_dim": 1024, "num_attention_heads": 1024, "initial_context_length": 1 << 22,
    "max_context": 1 << 24,
}


@dataclass(frozen=True)
class GptOssConfig:
    num_hidden_layers: int
    num_experts: int
    experts_per_token: int
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    head_dim: int
    num_attention_heads: int
    num_key_value_heads: int
    sliding_window: int
    swiglu_limit: float = 7.0
    initial_context_length: int = 4096
    rope_theta: float = 150000.0
    rope_scaling_factor: float = 32.0
    rope_ntk_alpha: float = 1.0
    rope_ntk_beta: float = 32.0
    rms_norm_eps: float = 1e-5
    swiglu_alpha: float = 1.702
    # "sliding_attention" / "full_attention" per layer; default: sliding on even layers (0, 2, ...)
    layer_types: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        n = self.num_hidden_layers
        if not self.layer_types and isinstance(n, int) and 0 < n <= _LIMITS["num_hidden_layers"]:
            object.__setattr__(
                self,
                "layer_types",
                tuple("sliding_attention" if i % 2 == 0 else "full_attention" for i in range(self.num_hidden_layers)),
            )
        self.validate()

    # ----------------------------------------------------------------------------------------- derived sizes
    @property
    def q_mult(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads

    @property
    def max_context(self) -> int:
        return int(self.initial_context_length * max(self.rope_scaling_factor, 1.0))

    def is_sliding(self, layer: int) -> bool:
        return self.layer_types[layer] == "sliding_attention"

    def validate(self) -> None:
        for name in ("num_hidden_layers", "num_experts", "experts_per_token", "vocab_size", "hidden_size",
                     "intermediate_size", "head_dim", "num_attention_heads", "num_key_value_heads",
                     "sliding_window", "initial_context_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        self._check_bounds()
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.experts_per_token > self.num_experts:
            raise ConfigError(f"experts_per_token ({self.experts_per_token}) > num_experts ({self.num_experts})")
        if self.head_dim % 2:
            raise ConfigError(f"head_dim must be even for half-split RoPE, got {self.head_dim}")
        if len(self.layer_types) != self.num_hidden_layers:
            raise ConfigError(
                f"layer_types has {len(self.layer_types)} entries for {self.num_hidden_layers} layers"
            )
        bad = sorted(set(self.layer_types) - {"sliding_attention", "full_attention"})
        if bad:
            raise ConfigError(f"unknown layer_types {bad}; expected sliding_attention / full_attention")
        if self.rope_scaling_factor > 1.0:
            low, high = self.yarn_bounds()
            if not 0 < low < high < self.head_dim // 2 - 1:
                raise ConfigError(
                    f"YaRN bounds low={low:.3f} high={high:.3f} are outside (0, head_dim/2 - 1); "
                    "check rope_theta, initial_context_length and rope_ntk_alpha/beta"
                )

    def _check_bounds(self) -> None:
        """Refuse sizes no real model has (a hostile config would otherwise make the loader allocate or loop for
        ever) and floats that are not finite or out of their domain (log of rope_theta, a norm's epsilon)."""
        floats = {"rope_theta": (1.0, 1e12), "rope_scaling_factor": (0.0, 1e4), "rope_ntk_alpha": (0.0, 1e6),
                  "rope_ntk_beta": (0.0, 1e6), "rms_norm_eps": (0.0, 1.0), "swiglu_limit": (0.0, 1e6),
                  "swiglu_alpha": (0.0, 1e3)}
        for name, (low, high) in floats.items():
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not low < value <= high:
                raise ConfigError(f"{name} must be a number in ({low:g}, {high:g}], got {value!r}")
        for name, top in _LIMITS.items():
            if getattr(self, name) > top:
                raise ConfigError(f"{name} is {getattr(self, name):,}; more than {top:,} is not a plausible gpt-oss")
        if self.sliding_window > self.max_context:
            raise ConfigError(f"sliding_window ({self.sliding_window:,}) is larger than the context "
                              f"({self.max_context:,})")

    def yarn_bounds(self) -> tuple[float, float]:
        d_half = self.head_dim / 2
        low = d_half * math.log(self.initial_context_length / (self.rope_ntk_beta * 2 * math.pi)) / math.log(
            self.rope_theta
        )
        high = d_half * math.log(self.initial_context_length / (self.rope_ntk_alpha * 2 * math.pi)) / math.log(
            self.rope_theta
        )
        return low, high

    # ----------------------------------------------------------------------------------------- parsing
    @classmethod
    def from_original_dict(cls, raw: dict[str, Any], source: str = "original/config.json") -> GptOssConfig:
        unknown = sorted(set(raw) - set(ORIGINAL_KEYS))
        if unknown:
            raise ConfigError(f"{source}: unknown keys {unknown}; the original layout has exactly {list(ORIGINAL_KEYS)}")
        missing = [k for k in ORIGINAL_KEYS if k not in raw]
        if missing:
            raise ConfigError(f"{source}: missing keys {missing}")
        try:
            return cls(**{k: raw[k] for k in ORIGINAL_KEYS})
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_hf_dict(cls, raw: dict[str, Any], source: str = "config.json") -> GptOssConfig:
        def fail(msg: str) -> ConfigError:
            return ConfigError(f"{source}: {msg}")

        if raw.get("model_type", "gpt_oss") != "gpt_oss":
            raise fail(f"model_type is {raw['model_type']!r}, expected 'gpt_oss'")
        if raw.get("tie_word_embeddings", False):
            raise fail("tie_word_embeddings=true is not gpt-oss (the unembedding is a separate matrix)")
        if raw.get("attention_bias", True) is not True:
            raise fail("attention_bias=false is not supported (gpt-oss attention projections have biases)")
        if raw.get("hidden_act", "silu") != "silu":
            raise fail(f"hidden_act {raw['hidden_act']!r} is not supported (gpt-oss uses its clamped SwiGLU)")

        try:
            theta, factor, beta_fast, beta_slow, orig = _rope_from_hf(raw, fail)
        except (TypeError, ValueError, AttributeError, OverflowError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise fail(f"malformed rope parameters: {exc}") from None

        known = {
            "num_hidden_layers", "num_local_experts", "num_experts", "num_experts_per_tok", "experts_per_token",
            "vocab_size", "hidden_size", "intermediate_size", "head_dim", "num_attention_heads",
            "num_key_value_heads", "sliding_window", "swiglu_limit", "swiglu_alpha", "initial_context_length",
            "rope_theta", "rope_scaling", "rope_parameters", "rms_norm_eps", "layer_types",
            "tie_word_embeddings", "attention_bias", "hidden_act",
        }
        unknown = sorted(set(raw) - known - _HF_IGNORED)
        if unknown:
            raise fail(f"unknown keys {unknown}: refusing to guess whether they change the model's math")

        def need(*names: str) -> Any:
            for n in names:
                if n in raw:
                    return raw[n]
            raise fail(f"missing key {names[0]!r}")

        experts = need("num_local_experts", "num_experts")
        per_tok = need("num_experts_per_tok", "experts_per_token")
        if "experts_per_token" in raw and "num_experts_per_tok" in raw and raw["experts_per_token"] != per_tok:
            raise fail("experts_per_token and num_experts_per_tok disagree")
        hidden = need("hidden_size")
        heads = need("num_attention_heads")
        layer_types = raw.get("layer_types")
        sliding = raw.get("sliding_window")
        if sliding is None:
            raise fail("sliding_window is null; gpt-oss needs a window for its banded layers")
        try:
            return cls(
                num_hidden_layers=need("num_hidden_layers"),
                num_experts=experts,
                experts_per_token=per_tok,
                vocab_size=need("vocab_size"),
                hidden_size=hidden,
                intermediate_size=need("intermediate_size"),
                head_dim=raw.get("head_dim") or hidden // heads,
                num_attention_heads=heads,
                num_key_value_heads=raw.get("num_key_value_heads") or heads,
                sliding_window=sliding,
                swiglu_limit=float(raw.get("swiglu_limit", 7.0)),
                swiglu_alpha=float(raw.get("swiglu_alpha", 1.702)),
                initial_context_length=int(orig),
                rope_theta=float(theta),
                rope_scaling_factor=factor,
                rope_ntk_alpha=beta_slow,
                rope_ntk_beta=beta_fast,
                rms_norm_eps=float(raw.get("rms_norm_eps", 1e-5)),
                layer_types=tuple(layer_types) if layer_types else (),
            )
        except ConfigError as exc:
            raise fail(str(exc)) from None
        except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
            raise fail(f"malformed value: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> GptOssConfig:
        """From a model folder (HF ``config.json`` preferred, else ``original/config.json``) or a config file."""
        p = Path(path)
        if p.is_dir():
            if (p / "config.json").is_file():
                return cls.from_hf_dict(_read_json(p / "config.json"), str(p / "config.json"))
            if (p / "original" / "config.json").is_file():
                f = p / "original" / "config.json"
                return cls.from_original_dict(_read_json(f), str(f))
            raise ConfigError(f"{p}: no config.json (nor original/config.json) in this model folder")
        raw = _read_json(p)
        if p.parent.name == "original" or set(raw) == set(ORIGINAL_KEYS):
            return cls.from_original_dict(raw, str(p))
        return cls.from_hf_dict(raw, str(p))

    # ----------------------------------------------------------------------------------------- writing
    def to_original_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: d[k] for k in ORIGINAL_KEYS}

    def to_hf_dict(self) -> dict[str, Any]:
        return {
            "architectures": ["GptOssForCausalLM"],
            "model_type": "gpt_oss",
            "attention_bias": True,
            "attention_dropout": 0.0,
            # the harmony ids (<|return|>, <|endoftext|>) when the vocabulary holds them
            "eos_token_id": 200002 if self.vocab_size > 200002 else None,
            "pad_token_id": 199999 if self.vocab_size > 199999 else None,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "hidden_size": self.hidden_size,
            "initial_context_length": self.initial_context_length,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate_size,
            "layer_types": list(self.layer_types),
            "max_position_embeddings": self.max_context,
            "num_attention_heads": self.num_attention_heads,
            "num_experts_per_tok": self.experts_per_token,
            "experts_per_token": self.experts_per_token,
            "num_hidden_layers": self.num_hidden_layers,
            "num_key_value_heads": self.num_key_value_heads,
            "num_local_experts": self.num_experts,
            "output_router_logits": False,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_scaling": {
                "beta_fast": self.rope_ntk_beta,
                "beta_slow": self.rope_ntk_alpha,
                "factor": self.rope_scaling_factor,
                "original_max_position_embeddings": self.initial_context_length,
                "rope_type": "yarn",
                "truncate": False,
            },
            "rope_theta": self.rope_theta,
            "router_aux_loss_coef": 0.9,
            "sliding_window": self.sliding_window,
            "swiglu_limit": self.swiglu_limit,
            "tie_word_embeddings": False,
            "use_cache": True,
            "vocab_size": self.vocab_size,
        }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return raw


def _rope_from_hf(
    raw: dict[str, Any], fail: Callable[[str], ConfigError]
) -> tuple[float, float, float, float, int]:
    """(rope_theta, factor, beta_fast = rope_ntk_beta, beta_slow = rope_ntk_alpha, original context).

    A yarn dict without ``truncate`` is read as gpt-oss YaRN (bounds not rounded)."""
    rope = raw.get("rope_parameters") or raw.get("rope_scaling")
    theta = raw.get("rope_theta", (rope or {}).get("rope_theta", 150000.0))
    orig = raw.get("initial_context_length", 4096)
    if rope is None:
        return float(theta), 1.0, 32.0, 1.0, int(orig)
    rope_type = rope.get("rope_type", rope.get("type"))
    if rope_type == "default":
        return float(theta), 1.0, 32.0, 1.0, int(orig)
    if rope_type != "yarn":
        raise fail(f"rope_type {rope_type!r} is not supported (gpt-oss uses yarn)")
    if rope.get("truncate", False):
        raise fail("rope truncate=true is not gpt-oss YaRN (its bounds are not rounded)")
    extra = sorted(set(rope) - {"rope_type", "type", "factor", "beta_fast", "beta_slow", "truncate",
                                "original_max_position_embeddings", "rope_theta"})
    if extra:
        raise fail(f"rope parameters {extra} are not supported")
    return (
        float(theta),
        float(rope.get("factor", 32.0)),
        float(rope.get("beta_fast", 32.0)),
        float(rope.get("beta_slow", 1.0)),
        int(rope.get("original_max_position_embeddings", orig)),
    )
