"""The ``ossagent`` command line: the entry point (:mod:`~ossagent.agent.cli.main`), the chat REPL, how
events are shown, ``doctor``, ``download``, and the built-in tools named with ``--tools``."""

from ossagent.agent.cli.main import main

__all__ = ["main"]
