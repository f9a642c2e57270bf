"""``ossagent eval``: measure an agent on task suites, offline, over any backend.

* :mod:`~ossagent.agent.eval.task`: the declarative task format (workspace, tools, functions, simulated user
  turns, checks).
* :mod:`~ossagent.agent.eval.suites`: suites from local files (MMLU/GPQA multiple choice, AIME-style maths,
  declarative tool-use tasks) and the built-in ``demo`` suites.
* :mod:`~ossagent.agent.eval.scorers`: the tasks' own checks, user scorers, a JSON Schema-constrained judge.
* :mod:`~ossagent.agent.eval.runner`: resumable runs into a folder (per-trial JSONL and transcripts).
* :mod:`~ossagent.agent.eval.summary`: score by effort with a 95% interval, pass@k, cost per task, comparisons.
* :mod:`~ossagent.agent.eval.cli`: the ``eval`` subcommand (``add_parser`` and ``main``).

Nothing heavy is imported here.
"""
