"""``python -m ossagent.agent.eval SUITE ...``: the ``ossagent eval`` command, runnable on its own."""

from ossagent.agent.eval.cli import run

raise SystemExit(run())
