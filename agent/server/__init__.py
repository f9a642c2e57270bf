"""The OpenAI-compatible server (``ossagent serve``)."""

from ossagent.agent.server.app import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]
