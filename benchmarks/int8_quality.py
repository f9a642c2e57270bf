"""Quality of the 8-bit rest (attention projections + unembedding as int8 rows) against bf16.

    .venv/bin/python benchmarks/int8_quality.py --model DIR [--tokens 256]

Logits of every position of one random prompt, computed from scratch by the bf16 model and by the same
checkpoint loaded with ``weights="int8"``: top-1 agreement, logit error relative to the bf16 logits' norm,
largest absolute logit error, and the lowest cosine similarity of a position's logits.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from speed import tokens  # benchmarks/ is on sys.path when run as a script

from ossagent.model.kernels.accelerate import accelerate
from ossagent.model.loader import load_model


def logits(path: Path, weights: str, prompt: list[int], threads: int) -> torch.Tensor:
    model = load_model(path, device="cpu", weights=weights)
    accelerate(model, threads=threads)
    with torch.no_grad():
        return model(torch.tensor(prompt)).float()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    vocab = load_model(args.model).config.vocab_size
    prompt = tokens(args.tokens, 5, vocab)
    ref = logits(args.model, "bf16", prompt, args.threads)
    got = logits(args.model, "int8", prompt, args.threads)
    agree = float((ref.argmax(-1) == got.argmax(-1)).float().mean())
    rel = float((got - ref).norm() / ref.norm())
    cos = float(torch.nn.functional.cosine_similarity(got, ref, dim=-1).min())
    print("| model | positions | top-1 agreement | relative logit error | max abs error | min cosine |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.model.name} | {len(prompt)} | {agree:.1%} | {rel:.4f} | {float((got - ref).abs().max()):.4f} "
          f"| {cos:.5f} |")


if __name__ == "__main__":
    main()
