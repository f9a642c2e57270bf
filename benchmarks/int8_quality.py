"""Quality of the approximate configurations against bf16: 8-bit rest and int8 activations.

    .venv/bin/python benchmarks/int8_quality.py --model DIR [--tokens 128]
    .venv/bin/python benchmarks/int8_quality.py --tiny        # a tiny random checkpoint, written to a temp folder

One random prompt is decoded one token at a time (the decode path, where int8 activations are used) by each
configuration, and the logits after every position are compared with the reference's (bf16 weights, bf16
activations, native kernels): top-1 agreement, logit error relative to the reference logits' norm, largest
absolute logit error, and the lowest cosine similarity of a position's logits. Configurations:

* ``int8 activations``: bf16 weights; the MXFP4 experts quantise their activations to int8 per 32 values;
* ``8-bit weights``: attention projections and unembedding as int8 rows, bf16 activations;
* ``8-bit rest``: both (what ``--weights int8`` gives).

Random weights make flat logit distributions with many near ties, so top-1 agreement here is a pessimistic
figure for a trained model.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from speed import tokens  # benchmarks/ is on sys.path when run as a script

from ossagent.model.config import GptOssConfig
from ossagent.model.engine import Engine
from ossagent.model.kernels.accelerate import accelerate
from ossagent.model.loader import load_model

CONFIGS = {  # name: (weights, int8 activations)
    "bf16 (reference)": ("bf16", False),
    "int8 activations": ("bf16", True),
    "8-bit weights": ("int8", False),
    "8-bit rest": ("int8", True),
}

TINY = GptOssConfig(num_hidden_layers=2, num_experts=8, experts_per_token=2, vocab_size=512, hidden_size=64,
                    intermediate_size=96, head_dim=16, num_attention_heads=4, num_key_value_heads=2,
                    sliding_window=8)


def decode_logits(path: Path, weights: str, int8_acts: bool, prompt: list[int], threads: int) -> torch.Tensor:
    """Logits [len(prompt), V] after each token, fed one at a time."""
    model = load_model(path, device="cpu", weights=weights)
    if not accelerate(model, int8=weights == "int8", threads=threads, int8_activations=int8_acts):
        raise SystemExit("native kernels unavailable: nothing to compare")
    engine = Engine(model, max_len=len(prompt) + 8)
    return torch.stack([engine._feed([t]) for t in prompt])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--tiny", action="store_true", help="a tiny random checkpoint instead of --model")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if args.tiny:
            from ossagent.model.checkpoint_writer import write_checkpoint

            path = write_checkpoint(Path(tmp), TINY, seed=0)
        if path is None:
            raise SystemExit("give --model DIR or --tiny")
        vocab = load_model(path).config.vocab_size
        prompt = tokens(args.tokens, 5, vocab)
        got = {name: decode_logits(path, w, a, prompt, args.threads) for name, (w, a) in CONFIGS.items()}
    ref = got.pop("bf16 (reference)")
    print(f"\n{path.name if not args.tiny else 'tiny random model'}: {len(prompt)} positions, decoded one at a "
          "time, against bf16 weights and activations\n")
    print("| configuration | top-1 agreement | relative logit error | max abs error | min cosine |")
    print("|---|---|---|---|---|")
    for name, lg in got.items():
        agree = float((ref.argmax(-1) == lg.argmax(-1)).float().mean())
        rel = float((lg - ref).norm() / ref.norm())
        cos = float(torch.nn.functional.cosine_similarity(lg, ref, dim=-1).min())
        print(f"| {name} | {agree:.1%} | {rel:.4f} | {float((lg - ref).abs().max()):.4f} | {cos:.5f} |")
    print(f"\nreference logits: max |logit| {float(ref.abs().max()):.3f}, "
          f"mean top-1 margin {float((ref.topk(2).values[:, 0] - ref.topk(2).values[:, 1]).mean()):.4f}")


if __name__ == "__main__":
    main()
