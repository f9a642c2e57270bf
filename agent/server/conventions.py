"""Conventions clients expect of an OpenAI-compatible server: the names a model answers to, a version
endpoint, and a clear 400 for what this server does not do (never a silent null).

Model names: the served id, plus for a gpt-oss id the spellings other tools use (``openai/gpt-oss-20b`` as on
Hugging Face, ``gpt-oss:20b`` as in Ollama). ``/v1/models`` lists the served id; requests and
``/v1/models/{id}`` accept every alias and answer with the served id.

Log probabilities: the agent backends hand over tokens, not their probabilities, so ``logprobs`` and
``top_logprobs`` are refused with a 400 naming the parameter.
"""

from __future__ import annotations

import platform
from typing import Any

from ossagent.agent.server.errors import bad_request
from ossagent.agent.version import package_version

DEMO_MODEL_ID = "ossagent-demo"


def model_aliases(model_id: str) -> tuple[str, ...]:
    """Other names clients use for ``model_id`` (empty for a name that is not gpt-oss-SIZE)."""
    if not model_id.startswith("gpt-oss-"):
        return ()
    size = model_id[len("gpt-oss-"):]
    return (f"openai/{model_id}", f"gpt-oss:{size}")


def refuse_unsupported(body: dict[str, Any]) -> None:
    """A 400 for ``logprobs`` / ``top_logprobs`` (chat) and ``include: [...logprobs]`` (responses)."""
    if body.get("logprobs"):
        raise bad_request("logprobs are not supported by this server (its backends do not return token "
                          "probabilities); leave logprobs unset or false", "logprobs", "unsupported_parameter")
    if body.get("top_logprobs"):
        raise bad_request("top_logprobs is not supported by this server (no token probabilities)", "top_logprobs",
                          "unsupported_parameter")
    include = body.get("include")
    if isinstance(include, list) and any(isinstance(i, str) and i.endswith("logprobs") for i in include):
        raise bad_request("logprobs are not supported by this server", "include", "unsupported_parameter")


def version_info(model_id: str, aliases: tuple[str, ...]) -> dict[str, Any]:
    return {"ossagent": package_version(), "python": platform.python_version(), "model": model_id,
            "aliases": list(aliases)}


def apply_defaults(req: Any, body: dict[str, Any], *, temperature: float | None, seed: int | None,
                   instructions: str | None) -> None:
    """The server's own defaults (``serve --temperature/--seed/--instructions``) where a request gives none;
    server instructions come first, the request's after them."""
    if temperature is not None and body.get("temperature") is None:
        req.temperature = temperature
    if seed is not None and body.get("seed") is None:
        req.seed = seed
    if instructions:
        req.instructions = instructions + ("\n\n" + req.instructions if req.instructions else "")
