"""Where a gpt-oss checkpoint may be on this machine: the one place that looks (the factory, ``ossagent
doctor`` and the demo fallback ask here)."""

from __future__ import annotations

from pathlib import Path

from ossagent.agent.settings import Settings


def model_candidates(settings: Settings) -> list[Path]:
    """Folders where a gpt-oss checkpoint may live, in the order they are tried."""
    out: list[Path] = []
    if settings.model:
        out.append(Path(settings.model))
    out.append(settings.home / "models" / "gpt-oss-20b")
    hf = Path(settings.hf_home) if settings.hf_home else Path.home() / ".cache" / "huggingface"
    snaps = hf / "hub" / "models--openai--gpt-oss-20b" / "snapshots"
    out.extend(sorted(snaps.glob("*")) if snaps.is_dir() else [snaps])
    return out


def is_checkpoint(folder: Path) -> bool:
    return (folder / "config.json").is_file() or (folder / "original" / "config.json").is_file()


def find_model(settings: Settings) -> Path | None:
    """The first candidate folder that holds a checkpoint."""
    return next((p for p in model_candidates(settings) if is_checkpoint(p)), None)


def demo_fallback(settings: Settings, *, model: str | None = None, remote: str | None = None,
                  scripted: str | None = None) -> Path | None:
    """The built-in demo checkpoint when nothing else is configured (no script, server, model folder or
    downloaded checkpoint), the fallback is on (``OSSAGENT_DEMO``) and this installation carries it; else None."""
    if not settings.demo or scripted or remote or model or find_model(settings) is not None:
        return None
    from ossagent.model.demo import demo_model_dir

    return demo_model_dir()
