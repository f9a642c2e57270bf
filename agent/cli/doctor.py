"""``ossagent doctor``: what this machine offers ossagent, and where each thing was looked for."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from dataclasses import dataclass

from ossagent.agent.backends.discovery import is_checkpoint, model_candidates
from ossagent.agent.settings import Settings
from ossagent.model.tokenizer import TokenizerNotFoundError, load_tokenizer


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def _version(cmd: list[str]) -> str | None:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (res.stdout or res.stderr).strip().splitlines()
    return text[0] if res.returncode == 0 and text else None


def check_tokenizer(settings: Settings) -> Check:
    try:
        tok = load_tokenizer(settings.tokenizer, settings.model, settings.tiktoken_cache_dir)
    except TokenizerNotFoundError as exc:
        return Check("tokenizer", False, str(exc))
    return Check("tokenizer", True, f"o200k_harmony from {tok.source.kind}: {tok.source.location}")


def check_torch(settings: Settings) -> Check:
    if importlib.util.find_spec("torch") is None:
        return Check("torch", False, "not installed (pip install torch)")
    import torch

    cuda = torch.cuda.is_available()
    dev = settings.device or ("cuda" if cuda else "cpu")
    extra = f", {torch.cuda.get_device_name(0)}" if cuda else f", {torch.get_num_threads()} CPU threads"
    return Check("torch", True, f"torch {torch.__version__}, device {dev}{extra}")


def check_bwrap() -> Check:
    path = shutil.which("bwrap")
    if path is None:
        return Check("sandbox", False, "bwrap not found (apt-get install bubblewrap); code tools will refuse to run")
    return Check("sandbox", True, f"{_version([path, '--version']) or 'bwrap'} at {path}")


def check_chromium(settings: Settings) -> Check:
    names = [settings.chromium] if settings.chromium else ["chromium", "chromium-browser", "google-chrome"]
    for name in names:
        path = shutil.which(name) if name else None
        if path:
            return Check("chromium", True, f"{_version([path, '--version']) or name} at {path}")
    return Check("chromium", False, f"none of {names} on PATH (apt-get install chromium); httpx-only browsing")


def check_model(settings: Settings) -> Check:
    looked = model_candidates(settings)
    for folder in looked:
        if is_checkpoint(folder):
            return Check("model", True, f"checkpoint at {folder}")
    where = ", ".join(str(p) for p in looked)
    from ossagent.model.demo import demo_model_dir

    demo = demo_model_dir() if settings.demo else None
    if demo is not None:
        return Check("model", True, f"no gpt-oss checkpoint (looked at: {where}); the built-in demo model will be "
                                    f"used ({demo}; it knows only a few task families)")
    return Check("model", False, "no checkpoint; looked at: " + where)


def check_kernels() -> Check:
    """The native CPU kernels: built, cached or failed (and why), the speed path, the torch build."""
    from ossagent.model.kernels import status

    st = status(build=True)
    return Check("kernels", st.native, "; ".join(st.lines()))


def run_checks(settings: Settings) -> list[Check]:
    return [
        check_tokenizer(settings),
        check_torch(settings),
        check_kernels(),
        check_bwrap(),
        check_chromium(settings),
        check_model(settings),
    ]


def format_report(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    return "\n".join(f"{'ok  ' if c.ok else 'no  '}{c.name:<{width}}  {c.detail}" for c in checks)
