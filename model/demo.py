"""The demo model: a tiny gpt-oss (same architecture, tokenizer and harmony format) trained by
``scripts/demo/train.py`` and shipped in ``demo_weights/``, so ossagent does real work on an offline machine
without the 13 GB gpt-oss weights. It handles only the task families it was trained on (see the README).
"""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent / "demo_weights"
DEMO_NOTICE = (
    "no model configured: using the built-in demo model (a tiny gpt-oss trained on a few task families; "
    "for real work set OSSAGENT_MODEL or run `ossagent download openai/gpt-oss-20b`)"
)


def demo_model_dir() -> Path | None:
    """The shipped demo checkpoint's folder, or None when this installation does not carry it."""
    complete = (DEMO_DIR / "config.json").is_file() and (DEMO_DIR / "model.safetensors.index.json").is_file()
    return DEMO_DIR if complete else None
