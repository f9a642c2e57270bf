"""Write the random-weight gpt-oss-20b checkpoint (exact shapes, MXFP4 experts, bf16 rest) once.

    flock /tmp/ossagent-20b.lock .venv/bin/python benchmarks/checkpoint_20b.py [FOLDER]

FOLDER defaults to ``cache/gpt-oss-20b-random`` in the nearest ``cache`` folder above the checkout (worktrees
of one machine share it).

The folder appears atomically (written under a temporary name, then renamed), so a reader never sees half.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ossagent.model.checkpoint_writer import write_checkpoint
from ossagent.model.config import GptOssConfig


def cache_dir() -> Path:
    """The nearest ``cache`` folder above this checkout (else ``../cache`` beside it)."""
    checkout = Path(__file__).resolve().parent.parent
    return next((p / "cache" for p in checkout.parents if (p / "cache").is_dir()), checkout.parent / "cache")


DEFAULT = cache_dir() / "gpt-oss-20b-random"


def config(layers: int = 24) -> GptOssConfig:
    """gpt-oss-20b, optionally with fewer layers (same shapes per layer) for runs that must stay small."""
    return GptOssConfig(
        num_hidden_layers=layers, num_experts=32, experts_per_token=4, vocab_size=201088, hidden_size=2880,
        intermediate_size=2880, head_dim=64, num_attention_heads=64, num_key_value_heads=8, sliding_window=128,
    )


def ensure_checkpoint(path: Path = DEFAULT, layers: int = 24) -> Path:
    if (path / "config.json").is_file():
        return path
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    write_checkpoint(tmp, config(layers), layout="hf", experts="mxfp4", seed=0)
    tmp.rename(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT, help="where to write it (default: %(default)s)")
    parser.add_argument("--layers", type=int, default=24, help="fewer layers, same shapes per layer")
    args = parser.parse_args()
    print(ensure_checkpoint(args.folder, args.layers))


if __name__ == "__main__":
    main()
