"""The ``ossagent`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ossagent.agent.settings import Settings


def _cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from ossagent.agent.doctor import format_report, run_checks

    checks = run_checks(settings)
    print(format_report(checks))
    essential = {"tokenizer", "torch"}
    return 0 if all(c.ok for c in checks if c.name in essential) else 1


def _not_yet(name: str) -> int:
    print(f"ossagent {name}: not available in this version yet", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ossagent", description="gpt-oss as a local tool-using agent")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="report what this machine offers (tokenizer, torch, sandbox, browser, model)")
    run = sub.add_parser("run", help="run one agent task")
    run.add_argument("task")
    sub.add_parser("chat", help="interactive chat")
    sub.add_parser("serve", help="OpenAI-compatible HTTP server")
    dl = sub.add_parser("download", help="download a checkpoint")
    dl.add_argument("model_id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    if args.command == "doctor":
        return _cmd_doctor(args, settings)
    return _not_yet(args.command)


if __name__ == "__main__":
    sys.exit(main())
