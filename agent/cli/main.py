"""The ``ossagent`` command line: run, chat, serve, download, doctor."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ossagent.agent.backends.base import Backend, HarnessError
from ossagent.agent.choices import EFFORTS
from ossagent.agent.eval.cli import add_parser as add_eval_parser
from ossagent.agent.eval.cli import main as eval_main
from ossagent.agent.settings import Settings
from ossagent.tools.base import UserError

if TYPE_CHECKING:
    from ossagent.agent.loop import Agent

DEMO_MAX_TOKENS = 2000  # completion tokens per run on the built-in demo model unless --max-tokens says otherwise


def _cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from ossagent.agent.cli.doctor import format_report, run_checks

    checks = run_checks(settings)
    print(format_report(checks))
    essential = {"tokenizer", "torch"}
    return 0 if all(c.ok for c in checks if c.name in essential) else 1


@contextmanager
def _status(console: Any, quiet: bool) -> Iterator[Callable[[str], None]]:
    """Progress for model loading: a spinner with the current step (stderr)."""
    if quiet:
        yield lambda _msg: None
        return
    with console.status("starting", spinner="dots") as status:
        yield lambda msg: status.update(msg)


def _backend(args: argparse.Namespace, settings: Settings, console: Any) -> tuple[Backend, bool]:
    """The backend, and whether it is the built-in demo model (said once, on ``console``)."""
    from ossagent.agent.backends.discovery import demo_fallback
    from ossagent.agent.backends.factory import build_backend

    demo = demo_fallback(settings, model=args.model, remote=args.remote, scripted=args.scripted) is not None
    if demo:
        from ossagent.model.demo import DEMO_NOTICE

        console.print(f"[dim]{DEMO_NOTICE}[/dim]", highlight=False)
    with _status(console, getattr(args, "quiet", False)) as progress:
        backend = build_backend(settings, model=args.model, remote=args.remote, remote_model=args.remote_model,
                                api_key=args.api_key, scripted=args.scripted, progress=progress,
                                context=args.context)
    return backend, demo


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number of tokens, not {value!r}")
    return n


def _schema(value: str | None) -> Any:
    if not value:
        return None
    path = Path(value)
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else value
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--schema must be a JSON Schema (a file or inline JSON): {exc}") from exc


def _agent(args: argparse.Namespace, settings: Settings, backend: Backend, demo: bool) -> Agent:
    from ossagent.agent.cli.tools import build_tools
    from ossagent.agent.limits import Limits
    from ossagent.agent.loop import Agent

    tools = build_tools([t for t in (args.tools or "").split(",") if t], Path(args.workspace), settings,
                        search=args.search, allow_private=args.allow_private)
    # the demo model's own runs are a few hundred tokens: a run that goes past 2,000 has lost its way
    max_tokens = args.max_tokens if args.max_tokens is not None else (DEMO_MAX_TOKENS if demo else None)
    limits = Limits(max_turns=args.max_turns, max_tokens=max_tokens, max_time=args.timeout, context=args.context,
                    compaction=not args.no_compaction)
    temperature = args.temperature if args.temperature is not None else (0.0 if demo else 1.0)
    return Agent(backend, tools=tools, instructions=args.instructions, reasoning=args.reasoning,
                 response_format=_schema(getattr(args, "schema", None)), limits=limits, seed=args.seed,
                 temperature=temperature, current_date=datetime.date.today().isoformat())


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console

    from ossagent.agent.cli.render import EventPrinter
    from ossagent.agent.transcript import Transcript

    err = Console(stderr=True, highlight=False)
    agent = _agent(args, settings, *_backend(args, settings, err))
    transcript = Transcript.load(args.resume) if args.resume else None
    stream = agent.stream(args.task, transcript=transcript)
    printer = EventPrinter(err, show_reasoning=args.verbose, show_final=False)
    try:
        for ev in stream:
            if not args.quiet:
                printer.on(ev)
        result = stream.result()
    finally:
        agent.close()
        if args.transcript:
            stream.transcript.save(args.transcript)
    if args.output == "json":
        out = result.output.model_dump(mode="json") if hasattr(result.output, "model_dump") else result.output
        print(json.dumps({
            "text": result.text, "output": out, "stop_reason": result.stop_reason,
            "usage": {k: v for k, v in result.usage.to_dict().items() if k != "type"},
            "citations": result.citations, "tool_calls": [c.to_dict() for c in result.tool_calls],
            "errors": [e.to_dict() for e in result.errors],
        }, ensure_ascii=False, indent=2))
    else:
        print(result.text)
    return 0 if result.stop_reason in ("final", "tool_calls") else 3


def _cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console

    from ossagent.agent.cli.chat import chat

    console = Console(highlight=False)
    agent = _agent(args, settings, *_backend(args, settings, console))
    try:
        return chat(agent, console, show_reasoning=args.verbose, save=args.transcript)
    finally:
        agent.close()


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console

    from ossagent.agent.cli.tools import build_tools
    from ossagent.agent.server import ServerConfig, create_app
    from ossagent.agent.server.serve import serve_forever

    console = Console(stderr=True, highlight=False)
    backend, _ = _backend(args, settings, console)
    names = [t for t in (args.tools or "").split(",") if t]
    build_tools(names, Path(args.workspace), settings, search=args.search)  # fail now, not at the first request

    def tools() -> list[Any]:
        return build_tools(names, Path(args.workspace), settings, search=args.search,
                           allow_private=args.allow_private)

    slots = args.slots or (1 if backend.takes_hooks else 8)
    config = ServerConfig(backend=backend, model_id=args.model_id, tools_factory=tools if names else None,
                          context=args.context,
                          slots=slots, api_key=args.server_api_key, max_turns=args.max_turns,
                          default_reasoning=args.reasoning)
    console.print(f"serving {args.model_id} on http://{args.host}:{args.port}/v1 ({slots} slot(s))")
    serve_forever(create_app(config), args.host, args.port)
    return 0


def _cmd_download(args: argparse.Namespace, settings: Settings) -> int:
    from ossagent.agent.cli.download import download

    target = Path(args.dir) if args.dir else settings.home / "models" / args.model_id.split("/")[-1]
    path = download(args.model_id, target, include=args.include, offline=args.offline)
    print(f"downloaded {args.model_id} to {path}\nrun it with: ossagent run --model {path} \"your task\"")
    return 0


def _backend_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", help="checkpoint folder (default: OSSAGENT_MODEL, then the download folder)")
    g.add_argument("--remote", help="an OpenAI-compatible server's base URL (e.g. http://localhost:8000/v1)")
    g.add_argument("--remote-model", help="model name on the remote server (default gpt-oss-20b)")
    g.add_argument("--api-key", help="API key for --remote")
    g.add_argument("--scripted", help="a JSON file of scripted model replies (tests and demos)")
    g.add_argument("--context", type=_positive, metavar="N",
                   help="context window in tokens: the local KV cache's length (default the model's 131,072; it "
                        "grows as used, 24 KiB a token for 20b), or a remote model's window. Longer runs compact")


def _agent_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reasoning", choices=EFFORTS, default="medium")
    p.add_argument("--tools", default="", help="comma-separated built-in tools: python,files,browser")
    p.add_argument("--workspace", default=".", help="folder the python and files tools work in (/mnt/data)")
    p.add_argument("--search", help="browser search: a SearXNG URL or a folder of documents to search offline")
    p.add_argument("--allow-private", action="store_true", help="let the browser open private/loopback addresses")
    p.add_argument("--instructions", help="developer instructions")
    p.add_argument("--max-turns", type=int, default=20)
    p.add_argument("--max-tokens", type=int, help="completion tokens for the whole run")
    p.add_argument("--timeout", type=float, help="wall-clock seconds for the whole run")
    p.add_argument("--no-compaction", action="store_true",
                   help="stop (stop reason 'context') instead of compacting when the conversation outgrows --context")
    p.add_argument("--seed", type=int)
    p.add_argument("--temperature", type=float, help="sampling temperature (default 1.0; 0, greedy, for the demo model)")
    p.add_argument("--transcript", help="save the transcript (JSONL) here")
    p.add_argument("-v", "--verbose", action="store_true", help="show the reasoning")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the answer")


def _cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    return eval_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ossagent", description="gpt-oss as a local tool-using agent")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="report what this machine offers (tokenizer, torch, sandbox, browser, model)")
    run = sub.add_parser("run", help="run one agent task")
    run.add_argument("task")
    _backend_args(run)
    _agent_args(run)
    run.add_argument("--schema", help="JSON Schema (file or inline) the answer must follow")
    run.add_argument("--output", choices=("text", "json"), default="text")
    run.add_argument("--resume", help="continue the conversation of a saved transcript")
    chat = sub.add_parser("chat", help="interactive chat (streaming; /help inside)")
    _backend_args(chat)
    _agent_args(chat)
    serve = sub.add_parser("serve", help="OpenAI-compatible HTTP server")
    _backend_args(serve)
    _agent_args(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--model-id", default="gpt-oss-20b", help="the name clients use in 'model'")
    serve.add_argument("--slots", type=int, help="concurrent generations (default 1 for a local model)")
    serve.add_argument("--server-api-key", help="require this bearer token from clients")
    add_eval_parser(sub)
    dl = sub.add_parser("download", help="download a checkpoint from Hugging Face")
    dl.add_argument("model_id")
    dl.add_argument("--dir", help="target folder (default ~/.cache/ossagent/models/NAME)")
    dl.add_argument("--include", action="append", help="only files matching this pattern (repeatable)")
    dl.add_argument("--offline", action="store_true", help="only check the local cache")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    commands = {"doctor": _cmd_doctor, "run": _cmd_run, "chat": _cmd_chat, "serve": _cmd_serve,
                "download": _cmd_download, "eval": _cmd_eval}
    try:
        return commands[args.command](args, settings)
    except UserError as exc:
        print(f"ossagent {args.command}: {exc}", file=sys.stderr)
        return 2
    except HarnessError as exc:  # ScriptError: a --scripted model's script did not fit the conversation
        print(f"ossagent {args.command}: the scripted model went off script: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

