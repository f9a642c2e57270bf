"""What ``--help`` says beyond the flags: examples per command, the environment variables, the config file."""

from __future__ import annotations

import argparse

from ossagent.agent.settings import ENV_VARS

EXAMPLES = {
    "run": """\
examples:
  ossagent run "What is 2**100?" --tools python
  echo "Summarise README.md" | ossagent run - --tools files --workspace .
  ossagent run --schema answer.json --output json "Capital of France?"
  ossagent run --remote http://localhost:8000/v1 "Hello"
""",
    "chat": """\
examples:
  ossagent chat --tools python,browser
  ossagent chat --model ~/models/gpt-oss-20b --reasoning high -v
  ossagent chat --session trip          # resume the session "trip"; each turn is saved
""",
    "serve": """\
examples:
  ossagent serve --port 8000 --tools python
  ossagent serve --port 0 --cors-origin http://localhost:3000
  curl http://127.0.0.1:8000/health; curl http://127.0.0.1:8000/metrics
  curl http://127.0.0.1:8000/v1/completions -H 'content-type: application/json' \
       -d '{"model": "gpt-oss-20b", "prompt": "Once upon a time", "max_tokens": 32}'
""",
}


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Flags with their defaults (when they have one worth saying); epilogs kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, "", argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def epilog(command: str | None = None) -> str:
    env = "\n".join(f"  {name:<20} {text}" for name, text in ENV_VARS.items())
    config = ("config file:\n  <ossagent home>/config.toml (OSSAGENT_HOME, default ~/.cache/ossagent): TOML whose keys "
              "are flag names,\n  top level for every command, [run]/[chat]/[serve] tables for one; flags typed "
              "here win.")
    return (EXAMPLES.get(command or "", "") + ("\n" if command in EXAMPLES else "")
            + f"environment variables:\n{env}\n\n{config}\n")
