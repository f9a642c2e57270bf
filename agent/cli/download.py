"""``ossagent download``: fetch a checkpoint from Hugging Face with a progress bar, or say clearly why not."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ossagent.tools.base import UserError

# The original/ folder is the MXFP4 checkpoint the engine loads; the HF folder has the same weights.
DEFAULT_INCLUDE = ["original/*", "config.json", "generation_config.json", "tokenizer*", "*.md", "LICENSE"]


def download(model_id: str, target: Path, *, include: list[str] | None = None, offline: bool = False) -> Path:
    if "/" not in model_id:
        raise UserError(f"model id must look like owner/name (e.g. openai/gpt-oss-20b), not {model_id!r}")
    if importlib.util.find_spec("huggingface_hub") is None:
        raise UserError(
            "downloading needs huggingface-hub: pip install 'ossagent[download]' (or pip install huggingface-hub).\n"
            f"Or fetch https://huggingface.co/{model_id} by other means and pass its folder with --model."
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    target.mkdir(parents=True, exist_ok=True)
    try:
        path = snapshot_download(model_id, local_dir=str(target), allow_patterns=include or DEFAULT_INCLUDE,
                                 local_files_only=offline)
    except LocalEntryNotFoundError as exc:
        raise UserError(
            f"{model_id} is not in the local cache and this machine cannot reach huggingface.co"
            f"{' (--offline)' if offline else ''}.\nOn a machine with network access run "
            f"`ossagent download {model_id}`, copy the folder here and pass it with --model. ({exc})"
        ) from exc
    except (HfHubHTTPError, OSError) as exc:
        raise UserError(f"downloading {model_id} failed: {exc}") from exc
    return Path(path)
