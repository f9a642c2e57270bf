"""Every environment variable ossagent reads is read here, once, into a :class:`Settings`.

Other modules take configuration as arguments; only entry points (the CLI, the server) call
:meth:`Settings.from_env`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_VARS = {
    "OSSAGENT_MODEL": "model folder (Hugging Face or original/ layout) used when none is given",
    "OSSAGENT_TOKENIZER": "path of o200k_base.tiktoken (or .gz) to use before any other place",
    "OSSAGENT_HOME": "ossagent's own data folder (default ~/.cache/ossagent)",
    "OSSAGENT_CHROMIUM": "Chromium executable for the browser tool (default: found on PATH)",
    "OSSAGENT_DEVICE": "torch device for the local engine: cpu, cuda, cuda:1 (default: cuda if present)",
    "TIKTOKEN_CACHE_DIR": "tiktoken's cache folder, searched for o200k_base",
    "HF_HOME": "Hugging Face cache, searched for downloaded models",
    "OSSAGENT_DEMO": "0 turns off the fallback to the built-in demo model when no model is configured",
}


@dataclass(frozen=True)
class Settings:
    model: str | None = None
    tokenizer: str | None = None
    home: Path = Path.home() / ".cache" / "ossagent"
    chromium: str | None = None
    device: str | None = None
    tiktoken_cache_dir: str | None = None
    hf_home: str | None = None
    demo: bool = True  # fall back to the built-in demo model when no model is configured

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        home = e.get("OSSAGENT_HOME")
        return cls(
            model=e.get("OSSAGENT_MODEL") or None,
            tokenizer=e.get("OSSAGENT_TOKENIZER") or None,
            home=Path(home) if home else Path.home() / ".cache" / "ossagent",
            chromium=e.get("OSSAGENT_CHROMIUM") or None,
            device=e.get("OSSAGENT_DEVICE") or None,
            tiktoken_cache_dir=e.get("TIKTOKEN_CACHE_DIR") or e.get("DATA_GYM_CACHE_DIR") or None,
            hf_home=e.get("HF_HOME") or None,
            demo=e.get("OSSAGENT_DEMO", "1").strip().lower() not in ("0", "false", "no", "off"),
        )
