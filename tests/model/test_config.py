"""The published gpt-oss-20b configs (both layouts) parse to the same GptOssConfig."""

from __future__ import annotations

import math

import pytest

from ossagent.model.config import ConfigError, GptOssConfig

# The 16 keys of gpt-oss-20b's original/config.json.
ORIGINAL_20B = {
    "num_hidden_layers": 24, "num_experts": 32, "experts_per_token": 4, "vocab_size": 201088,
    "hidden_size": 2880, "intermediate_size": 2880, "swiglu_limit": 7.0, "head_dim": 64,
    "num_attention_heads": 64, "num_key_value_heads": 8, "sliding_window": 128, "initial_context_length": 4096,
    "rope_theta": 150000, "rope_scaling_factor": 32.0, "rope_ntk_alpha": 1, "rope_ntk_beta": 32,
}

# gpt-oss-20b's HF config.json, as published (transformers 4.55 era).
HF_20B = {
    "architectures": ["GptOssForCausalLM"], "attention_bias": True, "attention_dropout": 0.0,
    "eos_token_id": 200002, "experts_per_token": 4, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2880,
    "initial_context_length": 4096, "initializer_range": 0.02, "intermediate_size": 2880,
    "layer_types": ["sliding_attention", "full_attention"] * 12, "max_position_embeddings": 131072,
    "model_type": "gpt_oss", "num_attention_heads": 64, "num_experts_per_tok": 4, "num_hidden_layers": 24,
    "num_key_value_heads": 8, "num_local_experts": 32, "output_router_logits": False, "pad_token_id": 199999,
    "quantization_config": {"modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                       "model.embed_tokens", "lm_head"], "quant_method": "mxfp4"},
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0, "original_max_position_embeddings": 4096,
                     "rope_type": "yarn", "truncate": False},
    "rope_theta": 150000, "router_aux_loss_coef": 0.9, "sliding_window": 128, "swiglu_limit": 7.0,
    "tie_word_embeddings": False, "transformers_version": "4.55.0.dev0", "use_cache": True, "vocab_size": 201088,
}


def test_published_20b_configs_agree() -> None:
    a = GptOssConfig.from_original_dict(ORIGINAL_20B)
    b = GptOssConfig.from_hf_dict(HF_20B)
    assert a == b
    assert a.is_sliding(0) and not a.is_sliding(1) and a.is_sliding(22) and not a.is_sliding(23)
    assert a.q_mult == 8 and a.max_context == 131072 and a.rms_norm_eps == 1e-5
    low, high = a.yarn_bounds()
    assert math.isclose(low, 8.092779115512402) and math.isclose(high, 17.39802450158856)


def test_newer_rope_parameters_spelling() -> None:
    raw = {k: v for k, v in HF_20B.items() if k not in ("rope_scaling", "rope_theta")}
    raw["rope_parameters"] = {**HF_20B["rope_scaling"], "rope_theta": 150000.0}  # type: ignore[dict-item]
    assert GptOssConfig.from_hf_dict(raw) == GptOssConfig.from_hf_dict(HF_20B)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_experts_per_tok": 2}, "disagree"),
        ({"rope_scaling": {**HF_20B["rope_scaling"], "truncate": True}}, "truncate"),  # type: ignore[dict-item]
        ({"rope_scaling": {**HF_20B["rope_scaling"], "mscale": 2.0}}, "mscale"),  # type: ignore[dict-item]
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"layer_types": ["chunked_attention"] * 24}, "chunked_attention"),
        ({"sliding_window": None}, "sliding_window"),
        ({"model_type": "llama"}, "model_type"),
        ({"num_hidden_layers": 0}, "num_hidden_layers must be a positive integer"),
    ],
)
def test_hf_config_errors(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GptOssConfig.from_hf_dict({**HF_20B, **change}, "x/config.json")
