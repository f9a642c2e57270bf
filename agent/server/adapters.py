"""Model names the server answers to: the served model (and its aliases) and each LoRA adapter it serves by name.

``ossagent serve --adapter NAME=DIR`` loads adapters unmerged on the local backend
(:meth:`~ossagent.agent.backends.local.LocalBackend.for_adapter`); a request whose ``model`` is ``NAME`` decodes
with that adapter, ``/v1/models`` lists each under its name. The served model's own id and aliases win over an
adapter of the same name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ossagent.agent.backends.base import Backend
from ossagent.agent.server.errors import not_found


def adapter_names(backend: Backend) -> list[str]:
    """The adapters ``backend`` serves by name (none for backends without adapters)."""
    return list(getattr(backend, "adapter_names", ()))


def backend_for(backend: Backend, model: str, model_id: str, aliases: Sequence[str]) -> Backend:
    """The backend a request for ``model`` runs on; 404 (``model_not_found``) for a name this server lacks."""
    if model == model_id or model in aliases:
        return backend
    names = adapter_names(backend)
    if model in names:
        return backend.for_adapter(model)  # type: ignore[attr-defined, no-any-return]
    served = ", ".join(f"'{n}'" for n in [model_id, *names])
    raise not_found(f"The model '{model}' does not exist; this server serves {served}.")


def response_model(backend: Backend, model: str, model_id: str) -> str:
    """The ``model`` a response names: the adapter's name for a request by adapter name, else the served id."""
    return model if model != model_id and model in adapter_names(backend) else model_id


def model_cards(backend: Backend, model_id: str, created: int) -> list[dict[str, Any]]:
    """``/v1/models`` entries: the served model, then each adapter (``parent``: the model it adapts)."""
    cards: list[dict[str, Any]] = [{"id": model_id, "object": "model", "created": created, "owned_by": "ossagent"}]
    cards += [{"id": n, "object": "model", "created": created, "owned_by": "ossagent", "parent": model_id}
              for n in adapter_names(backend) if n != model_id]
    return cards
