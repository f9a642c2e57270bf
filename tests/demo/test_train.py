"""The demo trainer: its model is gpt-oss (differential vs transformers), its loss is the exact full-vocabulary
cross-entropy, its MXFP4 matches the reference decoder, and a micro run is bit-for-bit reproducible."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
import torch

from scripts.demo import mxfp4
from scripts.demo.tinymodel import Shape, TinyGptOss
from scripts.demo.train import PRESETS, VOCAB, hf_config, loss_fn, save, train


def _hf_model(shape: Shape) -> torch.nn.Module:
    from transformers import GptOssConfig, GptOssForCausalLM

    conf = GptOssConfig(vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                        num_hidden_layers=shape.layers, num_local_experts=shape.experts,
                        num_experts_per_tok=shape.top_k, num_attention_heads=shape.heads,
                        num_key_value_heads=shape.kv_heads, head_dim=shape.head_dim, sliding_window=128,
                        rope_parameters={"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                                         "truncate": False, "original_max_position_embeddings": 4096,
                                         "rope_theta": 150000.0})
    conf._attn_implementation = "eager"
    return GptOssForCausalLM(conf).eval()


def test_tiny_model_matches_transformers_gpt_oss() -> None:
    torch.manual_seed(0)
    shape = Shape(300, 64, 4, 4, 2, 64, 4, 2, 32)
    ref = _hf_model(shape)
    with torch.no_grad():
        for n, p in ref.named_parameters():
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if n.endswith("norm.weight") else 0.0))
    ours = TinyGptOss(shape).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)  # same names and layouts
    ids = torch.randint(0, 300, (2, 200))  # longer than the 128-token window
    with torch.no_grad():
        a = ref.model(input_ids=ids).last_hidden_state
        b = ours(ids)
    torch.testing.assert_close(b, a, atol=2e-5, rtol=2e-5)


def test_loss_equals_cross_entropy_over_the_full_vocabulary() -> None:
    torch.manual_seed(1)
    used, hidden = 50, 8
    h = torch.randn(7, hidden)
    head = torch.randn(used, hidden)
    tgt = torch.randint(0, used, (7,))
    full = torch.zeros(1000, hidden)
    full[:used] = head  # the other 950 rows are zero, as in the saved checkpoint
    expected = torch.nn.functional.cross_entropy(h @ full.t(), tgt)
    torch.testing.assert_close(loss_fn(h, head, tgt, 1000 - used), expected)


def test_mxfp4_matches_the_reference_decoder() -> None:
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    torch.manual_seed(2)
    w = torch.randn(3, 8, 64) * torch.logspace(-3, 1, 8).view(1, 8, 1)  # [E, out, in]
    blocks, scales = mxfp4.quantize(w)
    assert blocks.shape == (3, 8, 2, 16) and scales.shape == (3, 8, 2)
    ours = mxfp4.dequantize(blocks, scales)
    ref = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32).transpose(1, 2)  # HF returns [E, in, out]
    torch.testing.assert_close(ours, ref.reshape(ours.shape), atol=0, rtol=0)
    # the error is at most half the widest E2M1 gap (4 to 6) times the block scale, which is below amax / 3
    amax = w.abs().reshape(3, 8, 2, 32).amax(-1, keepdim=True)
    assert ((ours - w).abs().reshape(3, 8, 2, 32) <= amax / 3 + 1e-12).all()
    assert math.isclose(float(mxfp4.fake_quantize(torch.tensor([[6.0] * 32]))[0, 0]), 6.0)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_micro_training_is_bit_for_bit_reproducible(tmp_path: Path) -> None:
    cfg = PRESETS["micro"]
    outs = []
    for run in ("a", "b"):
        tensors, config, losses = train(cfg, log=False)
        save(tensors, config, tmp_path / run, {"demo_config": "micro"})
        outs.append(losses)
    assert outs[0] == outs[1]
    for shard in sorted((tmp_path / "a").iterdir()):
        assert _sha(shard) == _sha(tmp_path / "b" / shard.name), shard.name
    assert config == hf_config(cfg)
    emb = tensors["model.embed_tokens.weight"]
    assert emb.shape == (VOCAB, cfg.hidden)
    seen = emb.abs().sum(-1) > 0
    assert 0 < int(seen.sum()) < 5000, "only the rows of tokens seen in training are non-zero"
    assert torch.equal(seen, tensors["lm_head.weight"].abs().sum(-1) > 0)


@pytest.mark.slow
def test_training_data_does_not_depend_on_the_number_of_worker_processes() -> None:
    from dataclasses import replace

    from scripts.demo.train import build_data

    cfg = replace(PRESETS["micro"], n_tasks=7)
    one = build_data(replace(cfg, threads=1))
    two = build_data(replace(cfg, threads=2))
    assert one == two
    assert len(one[0]) == 7 and all(any(mask) for _, mask in one[0])


def test_previous_token_heads_look_one_and_two_tokens_back() -> None:
    from scripts.demo.tinymodel import _rope, yarn_cos_sin
    from scripts.demo.train import DemoConfig, build_model

    model = build_model(DemoConfig(), 100)
    attn, s = model.model.layers[0].self_attn, model.shape
    t, d = 600, s.head_dim
    x = torch.randn(1, t, s.hidden)  # whatever the input: these heads depend on position only
    cos, sin = yarn_cos_sin(s, t)
    with torch.no_grad():
        q = _rope(attn.q_proj(x).view(1, t, s.heads, d), cos, sin)[0]
        k = _rope(attn.k_proj(x).view(1, t, s.kv_heads, d), cos, sin)[0]
    pos = torch.arange(2, t)
    for head, back in ((0, 1), (1, 2)):
        scores = (q[:, head] @ k[:, 0].t() / math.sqrt(d)).masked_fill(torch.ones(t, t).triu(1).bool(), -1e9)
        w = torch.softmax(scores, -1)
        assert float(w[pos, pos - back].min()) > 0.99


def test_copy_heads_write_back_what_they_attend_to() -> None:
    from scripts.demo.train import DemoConfig, build_model

    cfg = DemoConfig()
    model = build_model(cfg, 100)
    attn = model.model.layers[1].self_attn
    rep = cfg.heads // cfg.kv_heads
    # all heads attending to one position: output = o_proj(v for each head) = gain * rep * input
    x = torch.randn(cfg.hidden)
    with torch.no_grad():
        v = attn.v_proj(x).view(cfg.kv_heads, cfg.head_dim).repeat_interleave(rep, 0).reshape(-1)
        out = attn.o_proj(v) - attn.o_proj.bias
    torch.testing.assert_close(out, cfg.copy_gain * rep * x, atol=1e-5, rtol=1e-4)
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)  # start equal ...
    assert model.lm_head.weight is not model.model.embed_tokens.weight  # ... but untied


def _induction_mass(model: TinyGptOss, rows: list[tuple[list[int], list[bool]]], head: int = 0) -> float:
    """Share of layer 1 ``head``'s attention on induction targets: from position i, the positions j whose previous
    token equals token i (the token to copy next), over the repeated spans of copy rows."""
    from scripts.demo.tinymodel import _rope, yarn_cos_sin

    s, d = model.shape, model.shape.head_dim
    attn = model.model.layers[1].self_attn
    seen: list[torch.Tensor] = []  # layer 1's normalised input, taken from the model's own forward pass
    hook = model.model.layers[1].input_layernorm.register_forward_hook(lambda _m, _i, out: seen.append(out))
    right = total = 0.0
    for toks, mask in rows:
        t = len(toks)
        cos, sin = yarn_cos_sin(s, t)
        causal = torch.ones(t, t).tril().bool()
        with torch.no_grad():
            model(torch.tensor([toks]))
            h = seen.pop()
            q = _rope(attn.q_proj(h).view(1, t, s.heads, d), cos, sin)[0, :, head]
            k = _rope(attn.k_proj(h).view(1, t, s.kv_heads, d), cos, sin)[0, :, head // (s.heads // s.kv_heads)]
            scores = (q @ k.t() / math.sqrt(d)).masked_fill(~causal, -1e9)
            w = torch.softmax(torch.cat([attn.sinks[head].expand(t, 1), scores], 1), -1)[:, 1:]
        for i in range(t - 1):
            if mask[i]:
                targets = [j for j in range(2, i) if toks[j - 1] == toks[i]
                           and (head < 2 or toks[j - 2] == toks[i - 1])]
                right, total = right + float(w[i, targets].sum()), total + 1
    hook.remove()
    return right / total


def test_induction_heads_attend_to_what_comes_next_after_the_current_token() -> None:
    import random
    from dataclasses import replace

    from scripts.demo.train import DemoConfig, build_model, copy_row

    rng = random.Random(1)
    rows = [copy_row(rng, list(range(2000)), 2999, 160) for _ in range(8)]
    torch.manual_seed(0)
    built = _induction_mass(build_model(DemoConfig(), 3000), rows)
    torch.manual_seed(0)
    plain = _induction_mass(build_model(replace(DemoConfig(), induction_layer=None), 3000), rows)
    assert built > 0.5, built
    assert plain < 0.1, plain
    two = replace(DemoConfig(), induction_two_back=True)
    torch.manual_seed(0)
    assert _induction_mass(build_model(two, 3000), rows, head=2) > 0.5
    torch.manual_seed(0)
    assert _induction_mass(build_model(DemoConfig(), 3000), rows, head=2) < 0.1


def test_copy_rows_repeat_their_span_and_listed_rows_separate_items_by_one_token() -> None:
    import random

    from scripts.demo.train import copy_row

    rng, plain, sep = random.Random(0), list(range(100, 400)), 7
    for listed in (False, True):
        for _ in range(20):
            toks, mask = copy_row(rng, plain, sep, 400, listed=listed)
            first, second = toks.index(sep), len(toks) - 1 - toks[::-1].index(sep)
            span = toks[second + 1 :]
            assert toks[first + 1 : first + 1 + len(span)] == span
            assert mask == [i > second for i in range(len(toks))]  # loss on the repeat only
            if listed:
                assert len(set(span[1::2])) == 1 and len(span) % 2 == 1  # item, comma, item, ..., item


def test_wording_flags_reach_the_config_and_the_data_cache_key(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import json
    from dataclasses import replace

    from scripts.demo.train import cached_data, data_key, main

    cfg = replace(PRESETS["micro"], n_tasks=5, threads=1)
    assert data_key(cfg) == {"n_tasks": 5, "seed": 0, "version": 7, "wording": "fixed"}
    varied = replace(cfg, wording="varied", wording_mix=1.0)
    assert data_key(varied) == {**data_key(cfg), "wording": "varied", "wording_mix": 1.0}
    assert data_key(replace(varied, wording_mix=0.3)) != data_key(varied)
    cache = tmp_path / "data.json"
    fixed_data = cached_data(cfg, cache)
    assert json.loads(cache.read_text())["key"] == data_key(cfg)
    varied_data = cached_data(varied, cache)  # another key: built again, not the fixed data
    assert varied_data != fixed_data and json.loads(cache.read_text())["key"] == data_key(varied)
    assert cached_data(varied, cache) == varied_data
    assert main(["--preset", "micro", "--wording", "varied", "--wording-mix", "1", "--threads", "1", "--lr", "0.01",
                 "--data-only", "--data-cache", str(tmp_path / "cli.json")]) == 0
    key = json.loads((tmp_path / "cli.json").read_text())["key"]
    assert key == {**data_key(PRESETS["micro"]), "wording": "varied", "wording_mix": 1.0}
    for bad in (["--wording-mix", "1.5"], ["--threads", "0"], ["--wording", "loose"]):
        with pytest.raises(SystemExit) as exc:
            main(["--preset", "micro", "--data-only", *bad])
        assert exc.value.code == 2
    assert "not a share between 0 and 1" in capsys.readouterr().err
