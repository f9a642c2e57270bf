"""The OpenAI-compatible server (``ossagent serve``).

``ServerConfig`` and ``create_app`` load the web stack when first used, so the store (agent/server/store.py,
which named sessions share) imports without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ossagent.agent.server.app import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from ossagent.agent.server import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
