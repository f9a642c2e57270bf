"""Backends: what the agent loop generates with, behind one protocol (:mod:`~ossagent.agent.backends.base`).

``local`` (the engine in this process), ``remote`` (an OpenAI-compatible server over HTTP), ``scripted``
(replays a script: tests, examples, demos); ``factory`` builds one from settings, ``discovery`` finds a
checkpoint on this machine. The heavy ones load lazily (torch only when a local backend is built).
"""

from ossagent.agent.backends.base import Backend, GenerationParams, HarnessError, Prompt

__all__ = ["Backend", "GenerationParams", "HarnessError", "Prompt"]
