"""Train the demo model: a tiny gpt-oss (same architecture, tokenizer and harmony format) on generated tasks.

    .venv/bin/python -m scripts.demo.train --out model/demo_weights        # the shipped checkpoint
    .venv/bin/python -m scripts.demo.train --preset micro --out /tmp/micro # seconds; used by the tests

Reproducible bit-for-bit on one machine: fixed seeds, a fixed thread count (``threads``), deterministic
algorithms, data generated from the seed. How the 201,088-row vocabulary stays small: training runs over the
``V`` token ids that occur in the training data or in :func:`scripts.demo.tasks.vocabulary_pieces` (remapped to
0..V-1). The loss is still the exact full-vocabulary cross-entropy, because every
other row of the saved embedding and unembedding is zero, so those tokens all have logit 0: the softmax
denominator is ``sum(exp(used logits)) + (201088 - V) * exp(0)``, which the loss adds as one extra column
``log(201088 - V)``. Zero rows compress to almost nothing in git.

How a model this small learns to copy (numbers, names and file names from the question or a tool result into
code and answers, which every task family needs): training starts with a working induction circuit. Layer 0
heads look one and two tokens back (:func:`init_previous_token_heads`) and write a code of the token they see
into their own subspace of the residual stream, layer 1's first heads match the current token's code against
the previous-token code (:func:`init_induction_heads`), and layer 1's value/output maps copy what they attend
to (:func:`init_copy_heads`); the embedding and unembedding start equal (then train untied). Training begins
with synthetic copy rows only (:func:`copy_row`) until their loss is below ``copy_until`` (at most
``copy_warmup`` steps); copy rows stay in every later batch, one of them a list whose items are separated by one
token (``a , b , c``: after the separator only the item before it says what comes next, as in the ``[a,b,c]``
number lists and ``"key":value`` records of the tasks). Measured on the shipped recipe: the copy loss
falls from chance (8.3) to below 1 in about 230 steps (228, 226 and 233 in the last three builds), without a
plateau. With only the previous-token and copy ends, when (and whether) it left chance was luck: about 300
steps in one run, still at chance after 1,000 in the next; from a plain random start no run made progress.

For reworded questions (``--wording varied``) two opt-in aids: ``--python-extra N`` adds N arithmetic tasks to the
data, and ``--extract-rows K`` adds K number-extraction rows to every batch after the warm-up
(:mod:`scripts.demo.extract`): numbers between random filler, some spelled out, to be written back in digits in
order. The shipped recipe uses neither.

Expert weights are trained in float32, then rounded to MXFP4 and frozen for the last ``qat_frac`` of the steps
while everything else adapts to the rounding; the saved experts are exactly those rounded values.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass, replace
from itertools import chain
from pathlib import Path
from typing import Any

import torch

from scripts.demo import mxfp4
from scripts.demo.extract import extract_row, extract_vocab, filler_tokens, vocab_tokens
from scripts.demo.realgen import gold_sequence
from scripts.demo.tasks import generate, generate_family, vocabulary_pieces
from scripts.demo.tinymodel import Shape, TinyGptOss, _rope, yarn_cos_sin
from scripts.demo.wordings import WORDINGS

VOCAB = 201088


@dataclass(frozen=True)
class DemoConfig:
    hidden: int = 64
    layers: int = 4
    experts: int = 4
    top_k: int = 2
    intermediate: int = 128
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 32
    n_tasks: int = 6000
    steps: int = 6600
    batch: int = 4
    lr: float = 3e-3
    warmup: int = 50
    qat_frac: float = 0.15
    seed: int = 0
    threads: int = 2
    copy_rows: int = 2  # synthetic copy rows added to every batch (see copy_row) ...
    listed_copy_rows: int = 1  # ... of which this many copy lists with one separator token (see copy_row)
    prev_token_init: bool = True  # see init_previous_token_heads
    copy_layers: tuple[int, ...] = (1, 3)  # see init_copy_heads
    induction_layer: int | None = 1  # see init_induction_heads (None: leave its query/key maps random)
    induction_amp: float = 3.0
    induction_two_back: bool = False  # also start KV head 1 of that layer as a two-back matcher (an experiment)
    copy_gain: float = 0.05
    copy_warmup: int = 2000  # at most this many first steps of copy rows only (copy_batch of them) ...
    copy_until: float = 1.0  # ... until their mean loss over 10 steps is below this: induction has formed
    copy_batch: int = 32
    eval_every: int = 250  # teacher-forced accuracy on held-out transcripts every this many steps (0: never)
    wording: str = "fixed"  # fixed: the generator's own questions; varied: see scripts/demo/wordings.py ...
    wording_mix: float = 0.5  # ... which asks this share of the tasks in another way
    python_extra: int = 0  # this many more python (arithmetic) tasks on top of n_tasks (tasks.generate_family)
    extract_rows: int = 0  # number-extraction rows added to every batch after the copy warm-up (see extract.py)


PRESETS = {
    "full": DemoConfig(),
    "micro": DemoConfig(hidden=32, layers=2, experts=2, top_k=1, intermediate=32, heads=2, kv_heads=2,
                        head_dim=16, n_tasks=10, steps=6, batch=2, warmup=2, qat_frac=0.34, eval_every=0,
                        copy_warmup=3, copy_batch=4, copy_layers=(1,)),
}


def hf_config(cfg: DemoConfig, vocab: int = VOCAB) -> dict[str, Any]:
    """The Hugging Face ``config.json`` of a gpt-oss model with these sizes."""
    return {
        "architectures": ["GptOssForCausalLM"],
        "model_type": "gpt_oss",
        "vocab_size": vocab,
        "hidden_size": cfg.hidden,
        "intermediate_size": cfg.intermediate,
        "num_hidden_layers": cfg.layers,
        "num_local_experts": cfg.experts,
        "num_experts_per_tok": cfg.top_k,
        "experts_per_token": cfg.top_k,
        "num_attention_heads": cfg.heads,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_dim,
        "sliding_window": 128,
        "layer_types": ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(cfg.layers)],
        "rms_norm_eps": 1e-5,
        "rope_theta": 150000.0,
        "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                         "truncate": False, "original_max_position_embeddings": 4096},
        "max_position_embeddings": 131072,
        "initial_context_length": 4096,
        "swiglu_limit": 7.0,
        "attention_bias": True,
        "tie_word_embeddings": False,
        "eos_token_id": 200002,
        "pad_token_id": 199999,
        "torch_dtype": "bfloat16",
        "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": [
            "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]},
    }


def _gold_shard(args: tuple[int, int, str, float, int, int, int, bool]) -> list[tuple[int, list[int], list[bool]]]:
    """Gold transcripts of the training tasks whose index is ``k`` modulo ``workers`` (one process's share)."""
    n_tasks, seed, wording, mix, python_extra, k, workers, log = args
    from ossagent.model.tokenizer import o200k_harmony

    enc = o200k_harmony()
    out = []
    t0 = time.time()
    tasks = chain(generate(n_tasks, seed, "train", wording, mix),
                  generate_family("python", python_extra, seed, "train", wording, mix))
    for i, task in enumerate(tasks):
        if i % workers != k:
            continue
        toks, mask, result = gold_sequence(task, enc)
        if result.stop_reason != "final":
            raise RuntimeError(f"gold run of {task.user!r} stopped with {result.stop_reason}")
        out.append((i, toks, mask))
        if log and len(out) % 250 == 0:
            print(f"  {len(out) * workers} transcripts ({time.time() - t0:.0f}s)", flush=True)
    return out


def build_data(cfg: DemoConfig, log: bool = False) -> tuple[list[tuple[list[int], list[bool]]], list[int]]:
    """Gold transcripts run through the real agent loop and tools, and the sorted token ids they use.

    ``cfg.threads`` processes share the tasks (the tools' subprocesses leave the cores idle in between); the
    result does not depend on how many.
    """
    from ossagent.model.tokenizer import o200k_harmony

    enc = o200k_harmony()
    workers = max(1, cfg.threads)
    shards = [(cfg.n_tasks, cfg.seed, cfg.wording, cfg.wording_mix, cfg.python_extra, k, workers, log and k == 0)
              for k in range(workers)]
    if workers == 1:
        parts = [_gold_shard(shards[0])]
    else:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_gold_shard, shards)
    rows = sorted(row for part in parts for row in part)
    data = [(toks, mask) for _, toks, mask in rows]
    used: set[int] = {t for piece in vocabulary_pieces() for t in enc.encode_ordinary(piece)}
    for toks, _ in data:
        used.update(toks)
    return data, sorted(used)


def build_model(cfg: DemoConfig, vocab: int) -> TinyGptOss:
    """The trainable gpt-oss (HF parameter names), started with the copy circuit's two ends (see the module doc)."""
    model = TinyGptOss(Shape(vocab, cfg.hidden, cfg.layers, cfg.experts, cfg.top_k, cfg.intermediate, cfg.heads,
                             cfg.kv_heads, cfg.head_dim))
    with torch.no_grad():
        model.lm_head.weight.copy_(model.model.embed_tokens.weight)  # untied, but they start equal
    if cfg.prev_token_init:
        init_previous_token_heads(model)
    for layer in cfg.copy_layers:
        init_copy_heads(model, layer, cfg.copy_gain)
    if cfg.induction_layer is not None:
        init_induction_heads(model, cfg.induction_layer, cfg.copy_gain, cfg.induction_amp, cfg.induction_two_back)
    return model


def slow_rotary_dims(shape: Shape, span: int = 1500, tol: float = 0.1) -> list[int]:
    """Head dimensions whose rotary angle moves less than ``tol`` radians over ``span`` positions: a query/key
    product on them depends on content, not on distance (YaRN slows the low frequencies 32-fold)."""
    cos, sin = yarn_cos_sin(shape, 2)
    angle = torch.atan2(sin[1], cos[1])
    half = shape.head_dim // 2
    pairs = [k for k in range(half) if float(angle[k]) * span < tol]
    return pairs + [k + half for k in pairs]  # half-split rotary: pair k is dims k and k + half


def init_induction_heads(model: TinyGptOss, layer: int, gain: float, amp: float, two_back: bool = False) -> None:
    """The middle of the induction circuit (needs :func:`init_previous_token_heads`).

    ``P``, ``C``, ``D`` are orthogonal ``m``-dimensional subspaces of the residual stream (``m`` = the number of
    slow rotary dims). Layer 0's KV head 0 values are ``P x`` (a code of the token), its one-back head writes
    that code into ``C`` and its two-back head into ``D`` (times ``gain``, the size of an embedding). ``layer``'s
    query heads on KV head 0 compare ``P x_i`` (the current token) with ``C x_j`` (the token before j) on the
    slow rotary dims, so they attend to the position after an earlier occurrence of the current token: ~70% of
    their attention on the right place at initialisation (random: ~1.5%). With ``two_back``, the query heads on
    KV head 1 compare ``C x_i`` (the token before i) with ``D x_j`` (two before j): together the two kinds of
    head single out the place after an earlier ``t[i-1], t[i]`` pair, which one-back matching cannot do after a
    token as common as the space before every number."""
    s = model.shape
    d, rep = s.head_dim, s.heads // s.kv_heads
    dims = slow_rotary_dims(s)
    m = len(dims)
    if not dims or 3 * m > s.hidden:
        raise ValueError(f"induction init needs 1..{s.hidden // 3} slow rotary dims, found {m}")
    if not 0 < layer < s.layers:
        raise ValueError(f"induction_layer: layer {layer} must be after layer 0 and exist (the model has {s.layers})")
    gen = torch.Generator().manual_seed(4321)
    basis = torch.linalg.qr(torch.randn(s.hidden, s.hidden, generator=gen))[0]  # orthonormal rows
    code, prev1, prev2 = basis[:m], basis[m : 2 * m], basis[2 * m : 3 * m]  # [m, hidden] each
    first, target = model.model.layers[0].self_attn, model.model.layers[layer].self_attn
    with torch.no_grad():
        first.v_proj.weight[:d].zero_()
        first.v_proj.bias[:d].zero_()
        first.v_proj.weight[:m] = code
        first.o_proj.weight[:, : rep * d].zero_()
        for h, sub in enumerate((prev1, prev2)[:rep]):
            first.o_proj.weight[:, h * d : h * d + m] = gain * sub.t()
        for h in range(rep):
            target.q_proj.weight[h * d : (h + 1) * d].zero_()
            target.q_proj.bias[h * d : (h + 1) * d].zero_()
            target.q_proj.weight[[h * d + j for j in dims]] = amp * code
        target.k_proj.weight[:d].zero_()
        target.k_proj.bias[:d].zero_()
        target.k_proj.weight[dims] = amp * prev1
        if two_back and s.kv_heads > 1 and rep > 1:
            for h in range(rep, 2 * rep):
                target.q_proj.weight[h * d : (h + 1) * d].zero_()
                target.q_proj.bias[h * d : (h + 1) * d].zero_()
                target.q_proj.weight[[h * d + j for j in dims]] = amp * prev1
            target.k_proj.weight[d : 2 * d].zero_()
            target.k_proj.bias[d : 2 * d].zero_()
            target.k_proj.weight[[d + j for j in dims]] = amp * prev2


def init_copy_heads(model: TinyGptOss, layer: int, gain: float) -> None:
    """Start the value/output maps of ``layer``'s heads as a copy: together they write back (times ``gain``)
    the normalised input of the position they attend to. With the unembedding starting equal to the embedding,
    attending to a token then raises that token's logit at once, so the query/key maps that find the right
    position get a useful gradient from the first step (from a random value/output map they get none, which is
    the plateau). Measured on the pure copy task: loss 8.4 -> 0.6 in 350 steps; random start: no progress."""
    s = model.shape
    d, rep = s.head_dim, s.heads // s.kv_heads
    if s.kv_heads * d < s.hidden:
        raise ValueError("copy init needs kv_heads * head_dim >= hidden")
    if not 0 <= layer < s.layers:
        raise ValueError(f"copy_layers: layer {layer} does not exist (the model has {s.layers})")
    gen = torch.Generator().manual_seed(1234 + layer)
    u = torch.linalg.qr(torch.randn(s.kv_heads * d, s.hidden, generator=gen))[0]  # orthonormal columns
    attn = model.model.layers[layer].self_attn
    with torch.no_grad():
        attn.v_proj.weight.copy_(u)
        attn.v_proj.bias.zero_()
        for h in range(s.heads):
            g = h // rep
            attn.o_proj.weight[:, h * d : (h + 1) * d] = gain * u[g * d : (g + 1) * d].t()


def init_previous_token_heads(model: TinyGptOss, amp: float = 6.0, pairs: int = 6) -> None:
    """Start layer 0's first KV head as position-only heads: query head 0 attends to the previous token, query
    head 1 to the one before it (>= 99% of their weight, at every position up to 2k).

    Copying a span from the context (induction) needs to know which token came before each position; from a
    random start a small model has to discover such heads first and stays on a long plateau (measured: no
    progress on a pure copy task in 600 steps). Here the query and key weights are zero and their biases
    hold one fixed vector in the fastest RoPE pairs, rotated so the score peaks one (two) positions back.
    Everything stays trainable; this is only where training starts."""
    s = model.shape
    d, rep = s.head_dim, s.heads // s.kv_heads
    cos, sin = yarn_cos_sin(s, 2)
    conc = cos[0, 0]  # YaRN's gain: the cosine at position 0 is exactly it

    def rot(v: torch.Tensor, steps: int) -> torch.Tensor:  # RoPE by +-1 position, without YaRN's gain
        return _rope(v.view(1, 1, 1, d), cos[1:2], sin[1:2] * steps).view(d) / conc

    # score(i, j) = <R(i) q, R(j) k> = <q, R(j - i) k>: with k = R(+1) base it peaks where R(j - i + 1) q = base
    base = torch.zeros(d)
    base[:pairs] = amp  # first half of the fastest rotary pairs
    attn = model.model.layers[0].self_attn
    with torch.no_grad():
        attn.k_proj.weight[:d].zero_()
        attn.k_proj.bias[:d] = rot(base, 1)
        for h, q in enumerate((base, rot(base, -1))[:rep]):  # head 0: one back; head 1: two back
            attn.q_proj.weight[h * d : (h + 1) * d].zero_()
            attn.q_proj.bias[h * d : (h + 1) * d] = q


def loss_fn(hidden: torch.Tensor, head: torch.Tensor, targets: torch.Tensor, n_unused: int) -> torch.Tensor:
    """Full-vocabulary cross-entropy where the ``n_unused`` zero rows are one column of logit log(n_unused)."""
    logits = hidden @ head.t()
    extra = torch.full((*logits.shape[:-1], 1), math.log(n_unused), dtype=logits.dtype)
    return torch.nn.functional.cross_entropy(torch.cat([logits, extra], dim=-1), targets)


def _batch(rows: list[tuple[list[int], list[bool]]], remap: dict[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (causal attention never looks at the padding) and the mask of trained targets."""
    n = max(len(toks) for toks, _ in rows)
    ids = torch.zeros(len(rows), n, dtype=torch.long)
    tgt_mask = torch.zeros(len(rows), n, dtype=torch.bool)
    for r, (toks, mask) in enumerate(rows):
        ids[r, : len(toks)] = torch.tensor([remap[t] for t in toks])
        tgt_mask[r, : len(toks) - 1] = torch.tensor(mask[1:])
    return ids, tgt_mask


def _epoch_order(data: list[tuple[list[int], list[bool]]], batch: int, rng: random.Random) -> list[int]:
    """A shuffled epoch whose consecutive ``batch``-sized groups have similar lengths (less padding)."""
    perm = rng.sample(range(len(data)), len(data))
    groups = []
    for s in range(0, len(perm), batch * 32):
        chunk = sorted(perm[s : s + batch * 32], key=lambda i: len(data[i][0]))
        groups += [chunk[j : j + batch] for j in range(0, len(chunk), batch) if len(chunk[j : j + batch]) == batch]
    rng.shuffle(groups)
    return [i for g in groups for i in g]


def cached_data(cfg: DemoConfig, cache: Path | None, log: bool = False
                ) -> tuple[list[tuple[list[int], list[bool]]], list[int]]:
    """:func:`build_data`, stored in ``cache`` (a JSON file keyed by what the data depends on) when given."""
    key = data_key(cfg)
    if cache is not None and cache.exists():
        blob = json.loads(cache.read_text())
        if blob["key"] == key:
            return [(t, [bool(x) for x in m]) for t, m in blob["data"]], blob["used"]
    data, used = build_data(cfg, log)
    if cache is not None:
        cache.write_text(json.dumps({"key": key, "used": used, "data": [(t, [int(x) for x in m]) for t, m in data]}))
    return data, used


def data_key(cfg: DemoConfig) -> dict[str, Any]:
    """What the generated transcripts depend on (bump ``version`` when the generator changes)."""
    key: dict[str, Any] = {"n_tasks": cfg.n_tasks, "seed": cfg.seed, "version": 7, "wording": cfg.wording}
    if cfg.wording != "fixed":
        key["wording_mix"] = cfg.wording_mix
    if cfg.python_extra:
        key["python_extra"] = cfg.python_extra
    return key


def load_init(model: TinyGptOss, folder: Path, used: list[int]) -> None:
    """Start from a checkpoint this script wrote (a second training stage)."""
    from safetensors.torch import load_file

    sd: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        sd.update(load_file(str(f)))
    state = {}
    for k, v in sd.items():
        if k.endswith("_blocks"):
            base = k[: -len("_blocks")]
            state[base] = mxfp4.dequantize(v, sd[base + "_scales"]).transpose(1, 2).contiguous()
        elif k in ("model.embed_tokens.weight", "lm_head.weight"):
            state[k] = v.float()[torch.tensor(used)]
        elif not k.endswith("_scales"):
            state[k] = v.float()
    model.load_state_dict(state, strict=True)


def copy_row(rng: random.Random, plain: list[int], sep: int, n: int, listed: bool = False
             ) -> tuple[list[int], list[bool]]:
    """A synthetic induction row over the model's vocabulary: noise, ``sep`` span, noise, ``sep`` span again;
    the loss is on the repeated span. It makes the copy circuit (induction heads) form early and covers
    tokens that the task transcripts only show as input (names and numbers held out from training answers).
    ``listed``: the span is items with one separator token between them (``a , b , c``), so after a separator
    only the item before it tells which item comes next (as in ``[397,435,97]`` or a JSON record)."""
    if listed:
        comma = rng.choice(plain)
        items = rng.choices(plain, k=rng.randint(3, 12))
        span = [t for item in items for t in (item, comma)][:-1]
    else:
        span = rng.choices(plain, k=rng.randint(3, 24))
    a, b = rng.choices(plain, k=rng.randint(0, 60)), rng.choices(plain, k=rng.randint(0, 60))
    toks = [*a, sep, *span, *b, sep, *span][:n]
    start = len(a) + 2 + len(span) + len(b)
    return toks, [i >= start for i in range(len(toks))]


def heldout_data(n: int) -> list[tuple[list[int], list[bool]]]:
    """Gold transcripts of ``n`` held-out tasks (the evaluation split), for the teacher-forced progress figure."""
    from ossagent.model.tokenizer import o200k_harmony

    enc = o200k_harmony()
    return [gold_sequence(task, enc)[:2] for task in generate(n, 1, "eval")]


@torch.no_grad()
def heldout_accuracy(model: TinyGptOss, data: list[tuple[list[int], list[bool]]], remap: dict[int, int]
                     ) -> tuple[float, float]:
    """Teacher-forced accuracy over the tokens the model writes, and the share of transcripts with none wrong."""
    model.eval()
    right = total = perfect = 0
    for toks, mask in data:
        ids = torch.tensor([[remap.get(t, 0) for t in toks]])  # an id outside the vocabulary counts as an error
        pred = (model(ids)[0, :-1] @ model.lm_head.weight.t()).argmax(-1)
        m = torch.tensor(mask[1:])
        ok = (pred == ids[0, 1:])[m]
        right, total, perfect = right + int(ok.sum()), total + int(m.sum()), perfect + int(bool(ok.all()))
    model.train()
    return right / max(total, 1), perfect / max(len(data), 1)


def _step(model: TinyGptOss, opt: torch.optim.Optimizer, rows: list[tuple[list[int], list[bool]]],
          remap: dict[int, int], n_used: int) -> float:
    """One optimiser step on ``rows``; returns the loss."""
    ids, tmask = _batch(rows, remap)
    hidden = model(ids)
    h = hidden[:, :-1][tmask[:, :-1]]
    tgt = ids[:, 1:][tmask[:, :-1]]
    loss = loss_fn(h, model.lm_head.weight, tgt, VOCAB - n_used)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    opt.step()
    return float(loss.item())


def train(cfg: DemoConfig, log: bool = True, cache: Path | None = None, init: Path | None = None,
          save_to: Path | None = None, save_every: int = 0, stop_at: int | None = None
          ) -> tuple[dict[str, torch.Tensor], dict[str, Any], list[float]]:
    """Run training; returns the HF-layout tensors, the config.json dict and the loss curve."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    t0 = time.time()
    data, used = cached_data(cfg, cache, log)
    extract = None
    if cfg.extract_rows:
        from ossagent.model.tokenizer import o200k_harmony

        enc = o200k_harmony()
        extract = extract_vocab(enc.encode_ordinary, enc.decode, [])
        used = sorted(set(used) | vocab_tokens(extract))  # the rows' own tokens join the trained vocabulary
        extract = replace(extract, fillers=filler_tokens(extract, enc.decode, [t for t in used if t < 199998]))
    remap = {t: i for i, t in enumerate(used)}
    if log:
        n_tok = sum(len(t) for t, _ in data)
        print(f"data: {len(data)} transcripts, {n_tok} tokens, {len(used)} distinct ids ({time.time() - t0:.0f}s)")
    plain = [t for t in used if t < 199998]  # copy rows use ordinary tokens only
    sep = 200008  # <|message|>
    held = heldout_data(30) if cfg.eval_every else []
    model = build_model(cfg, len(used))
    if init is not None:
        load_init(model, init, used)
    model.train()
    expert_names = [n for n, _ in model.named_parameters() if ".experts.gate_up_proj" in n or ".experts.down_proj" in n]
    expert_names = [n for n in expert_names if not n.endswith("_bias")]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.98))
    rng = random.Random(cfg.seed)
    order: list[int] = []
    qat_step = int(cfg.steps * (1 - cfg.qat_frac))
    losses: list[float] = []
    params = dict(model.named_parameters())
    copy_losses: list[float] = []
    for step in range(cfg.copy_warmup):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * min(1.0, (step + 1) / cfg.warmup)
        rows = [copy_row(rng, plain, sep, 160) for _ in range(cfg.copy_batch)]
        copy_losses.append(_step(model, opt, rows, remap, len(used)))
        done = len(copy_losses) >= 10 and sum(copy_losses[-10:]) / 10 < cfg.copy_until
        if log and (step % 50 == 0 or step == cfg.copy_warmup - 1 or done):
            print(f"copy {step:5d} loss {copy_losses[-1]:.4f} ({time.time() - t0:.0f}s)", flush=True)
        if done:
            break
    for step in range(cfg.steps):
        if step == qat_step:
            with torch.no_grad():
                for n in expert_names:
                    p = params[n]
                    p.copy_(mxfp4.fake_quantize(p.transpose(1, 2)).transpose(1, 2))
                    p.requires_grad_(False)
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / cfg.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        if len(order) < cfg.batch:
            order += _epoch_order(data, cfg.batch, rng)
        idx, order = order[: cfg.batch], order[cfg.batch :]
        rows = [data[i] for i in idx] + [copy_row(rng, plain, sep, 160, listed=j < cfg.listed_copy_rows)
                                         for j in range(cfg.copy_rows)]
        if extract is not None:
            rows += [extract_row(rng, extract, sep, 160) for _ in range(cfg.extract_rows)]
        loss = _step(model, opt, rows, remap, len(used))
        losses.append(loss)
        if log and (step % 50 == 0 or step == cfg.steps - 1):
            print(f"step {step:5d} loss {loss:.4f} lr {lr:.2e} ({time.time() - t0:.0f}s)", flush=True)
        if held and (step % cfg.eval_every == cfg.eval_every - 1 or step == cfg.steps - 1):
            acc, perfect = heldout_accuracy(model, held, remap)
            print(f"step {step:5d} held-out teacher-forced: tokens {acc:.1%}, transcripts all right {perfect:.0%}",
                  flush=True)
        if save_to is not None and save_every and step % save_every == save_every - 1:
            save(export(model, used, cfg), hf_config(cfg), save_to, {**training_meta(cfg),
                                                                       "partial_step": str(step + 1)})
        if stop_at is not None and step + 1 >= stop_at:
            break
    tensors = export(model, used, cfg)
    return tensors, hf_config(cfg), losses


def export(model: torch.nn.Module, used: list[int], cfg: DemoConfig) -> dict[str, torch.Tensor]:
    """HF-layout tensors: bf16 everywhere, MXFP4 experts, full 201,088-row (mostly zero) vocabulary."""
    out: dict[str, torch.Tensor] = {}
    ids = torch.tensor(used)
    for name, p in model.state_dict().items():
        t = p.detach().float()
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            full = torch.zeros(VOCAB, cfg.hidden)
            full[ids] = t
            out[name] = full.to(torch.bfloat16).contiguous()
        elif name.endswith(".experts.gate_up_proj") or name.endswith(".experts.down_proj"):
            blocks, scales = mxfp4.quantize(t.transpose(1, 2))  # [E, out, in]
            out[name + "_blocks"], out[name + "_scales"] = blocks, scales
        else:
            out[name] = t.to(torch.bfloat16).contiguous()
    return out


def training_meta(cfg: DemoConfig) -> dict[str, str]:
    """``demo_training.json``: the recipe the checkpoint was trained with."""
    return {"demo_config": json.dumps(asdict(cfg), sort_keys=True)}


def save(tensors: dict[str, torch.Tensor], config: dict[str, Any], out: Path, meta: dict[str, str]) -> None:
    """Three shards (embedding | blocks | unembedding, each under 30 MB) with the HF index file."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    groups = [
        {k: v for k, v in tensors.items() if k == "model.embed_tokens.weight"},
        {k: v for k, v in tensors.items() if k not in ("model.embed_tokens.weight", "lm_head.weight")},
        {k: v for k, v in tensors.items() if k == "lm_head.weight"},
    ]
    names = [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    weight_map = {}
    for name, group in zip(names, groups, strict=True):
        # one metadata key only: safetensors writes its metadata map in hash order, which varies per process
        save_file(dict(sorted(group.items())), str(out / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in group})
    total = sum((out / n).stat().st_size for n in names)
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if meta:
        (out / "demo_training.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="full")
    ap.add_argument("--out", type=Path, default=Path("model/demo_weights"))
    ap.add_argument("--steps", type=int, help="override the preset's step count")
    ap.add_argument("--data-cache", type=Path, help="JSON file keeping the generated transcripts between runs")
    ap.add_argument("--data-only", action="store_true", help="generate (and cache) the data, do not train")
    ap.add_argument("--save-every", type=int, default=0, help="also save the checkpoint every N steps")
    ap.add_argument("--stop-at", type=int, help="stop after this many steps (same schedule; to check a prefix)")
    ap.add_argument("--init", type=Path, help="start from this checkpoint (a second stage)")
    ap.add_argument("--wording", choices=WORDINGS, help="fixed (the generator's questions) or varied")
    ap.add_argument("--wording-mix", type=float, help="with --wording varied: the share of tasks asked another way")
    ap.add_argument("--lr", type=float, help="override the preset's peak learning rate")
    ap.add_argument("--threads", type=int, help="override the preset's thread (and data worker) count")
    ap.add_argument("--python-extra", type=int, help="this many more python tasks in the data")
    ap.add_argument("--extract-rows", type=int, help="number-extraction rows in every batch (scripts/demo/extract.py)")
    ap.add_argument("--two-back", action="store_true", help="also start a two-back induction matcher")
    args = ap.parse_args(argv)
    cfg = PRESETS[args.preset]
    overrides = {"steps": args.steps, "wording": args.wording, "wording_mix": args.wording_mix, "lr": args.lr,
                 "threads": args.threads, "python_extra": args.python_extra, "extract_rows": args.extract_rows,
                 "induction_two_back": args.two_back or None}
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if not 0.0 <= cfg.wording_mix <= 1.0:
        ap.error(f"--wording-mix {cfg.wording_mix} is not a share between 0 and 1")
    if cfg.threads < 1:
        ap.error("--threads must be at least 1")
    if cfg.python_extra < 0 or cfg.extract_rows < 0:
        ap.error("--python-extra and --extract-rows count rows: they cannot be negative")
    if args.data_only:
        data, used = cached_data(cfg, args.data_cache, log=True)
        print(f"{len(data)} transcripts, {sum(len(t) for t, _ in data)} tokens, {len(used)} distinct ids")
        return 0
    tensors, config, losses = train(cfg, cache=args.data_cache, init=args.init, save_to=args.out,
                                    save_every=args.save_every, stop_at=args.stop_at)
    save(tensors, config, args.out, training_meta(cfg))
    print(f"saved {args.out} (final loss {losses[-1]:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
