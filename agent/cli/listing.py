"""``ossagent list``: the gpt-oss checkpoints on this machine, and which one ``run`` would use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ossagent.agent.backends.discovery import is_checkpoint, model_candidates
from ossagent.agent.settings import Settings


@dataclass(frozen=True)
class LocalModel:
    name: str
    path: Path
    layout: str  # "hf" (config.json + safetensors) or "original" (original/config.json)
    size_bytes: int
    default: bool = False  # the one run/chat/serve use without --model
    demo: bool = False


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) + sum(
        p.resolve().stat().st_size for p in folder.rglob("*") if p.is_symlink() and p.resolve().is_file())


def _name(folder: Path) -> str:
    for part in reversed(folder.parts):  # a Hugging Face snapshot: models--openai--gpt-oss-20b/snapshots/HASH
        if part.startswith("models--"):
            return part[len("models--"):].replace("--", "/")
    return folder.name


def find_local_models(settings: Settings) -> list[LocalModel]:
    """Every checkpoint where ossagent looks (the configured one, the download folder, the Hugging Face cache),
    then the built-in demo model; the first real one is the default."""
    folders: list[Path] = list(model_candidates(settings))
    models_dir = settings.home / "models"
    if models_dir.is_dir():
        folders += sorted(p for p in models_dir.iterdir() if p.is_dir())
    hf = Path(settings.hf_home) if settings.hf_home else Path.home() / ".cache" / "huggingface"
    hub = hf / "hub"
    if hub.is_dir():
        folders += sorted(s for repo in hub.glob("models--*gpt-oss*") for s in (repo / "snapshots").glob("*"))
    out: list[LocalModel] = []
    seen: set[Path] = set()
    for folder in folders:
        key = folder.resolve()
        if key in seen or not is_checkpoint(folder):
            continue
        seen.add(key)
        layout = "hf" if (folder / "config.json").is_file() else "original"
        out.append(LocalModel(_name(folder), folder, layout, _size(folder), default=not out))
    from ossagent.model.demo import demo_model_dir

    demo = demo_model_dir()
    if demo is not None:
        out.append(LocalModel("ossagent-demo", demo, "hf", _size(demo), default=not out and settings.demo,
                              demo=True))
    return out


def format_models(models: list[LocalModel]) -> str:
    if not models:
        return "no gpt-oss checkpoint found (ossagent download openai/gpt-oss-20b, or set OSSAGENT_MODEL)"
    rows = [(("* " if m.default else "  ") + m.name + (" (built-in demo)" if m.demo else ""), m.layout,
             f"{m.size_bytes / 1e9:.1f} GB" if m.size_bytes >= 1e8 else f"{m.size_bytes / 1e6:.1f} MB", str(m.path))
            for m in models]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in rows]
    return "\n".join(lines) + "\n(* is the one run, chat and serve use without --model)"
