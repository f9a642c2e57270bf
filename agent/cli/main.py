"""The ``ossagent`` command line: run, chat, serve, list, download, doctor, eval."""

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
from ossagent.agent.backends.local import DEFAULT_KV_MEMORY_GB, one_adapter
from ossagent.agent.choices import EFFORTS
from ossagent.agent.cli.finetune import add_finetune_arguments, finetune_main
from ossagent.agent.cli.helptext import Formatter, epilog
from ossagent.agent.eval.cli import add_parser as add_eval_parser
from ossagent.agent.eval.cli import main as eval_main
from ossagent.agent.settings import Settings
from ossagent.agent.version import package_version
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


def _backend(
    args: argparse.Namespace, settings: Settings, console: Any, slots: int | None = 1,
) -> tuple[Backend, bool]:
    """The backend, and whether it is the built-in demo model (said once, on ``console``). ``slots``: a local
    model's concurrent sequences (None: as many as its KV budget allows, up to 4)."""
    from ossagent.agent.backends.discovery import demo_fallback
    from ossagent.agent.backends.factory import build_backend

    demo = demo_fallback(settings, model=args.model, remote=args.remote, scripted=args.scripted) is not None
    if demo:
        from ossagent.model.demo import DEMO_NOTICE

        console.print(f"[dim]{DEMO_NOTICE}[/dim]", highlight=False)
    with _status(console, getattr(args, "quiet", False)) as progress:
        backend = build_backend(settings, model=args.model, remote=args.remote, remote_model=args.remote_model,
                                api_key=args.api_key, scripted=args.scripted, progress=progress,
                                weights=args.weights, slots=slots, kv_memory_gb=getattr(args, "kv_memory", None),
                                context=args.context, attention=args.attention,
                                adapter=args.adapter if args.command == "serve" else one_adapter(args.adapter))
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
    from ossagent.agent.cli.checks import schema_value

    return schema_value(value) if value else None


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
    from rich.console import Console

    from ossagent.agent.cli import approve

    return Agent(backend, tools=tools, instructions=args.instructions, reasoning=args.reasoning,
                 response_format=_schema(getattr(args, "schema", None)), limits=limits, seed=args.seed,
                 temperature=temperature, current_date=datetime.date.today().isoformat(),
                 mcp=approve.servers(args), workspace=args.workspace, approvals=approve.policy(args),
                 approver=approve.terminal_approver(Console(stderr=True, highlight=False)))


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
    if result.stop_reason == "approval":  # no terminal to ask on: say what waits and how to go on
        for call in result.tool_calls:
            print(f"waiting for approval: {call.recipient} {call.arguments}\n  resume with --resume TRANSCRIPT "
                  "and --approve all (run it) or --approve none (refuse it)", file=sys.stderr)
    return 0 if result.stop_reason in ("final", "tool_calls", "approval") else 3


def _cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console

    from ossagent.agent.cli.chat import chat

    console = Console(highlight=False)
    sessions, session = None, None
    if args.session is not None:  # a bad name is a user error before the model loads
        from ossagent.agent.sessions import Sessions, check_name, default_path

        sessions = Sessions(default_path(settings))
        session = sessions.open(check_name(args.session))
    agent = _agent(args, settings, *_backend(args, settings, console))
    try:
        return chat(agent, console, show_reasoning=args.verbose, save=args.transcript,
                    history=settings.home / "chat_history", session=session)
    finally:
        agent.close()
        if sessions is not None:
            sessions.close()


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from ossagent.agent.cli.serve import cmd_serve

    return cmd_serve(args, settings, _backend, DEMO_MAX_TOKENS)


def _cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from ossagent.agent.cli.listing import find_local_models, format_models

    print(format_models(find_local_models(settings)))
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
    g.add_argument("--adapter", metavar="[NAME=]DIR", action="append",
                   help="a LoRA adapter folder (ossagent finetune) merged into the local model's weights as they "
                   "load; serve: NAME=DIR (repeatable) serves each adapter unmerged as model NAME")
    g.add_argument("--weights", choices=("bf16", "int8"), default="bf16",
                   help="local model's attention/unembedding weights: bf16 as in the checkpoint (default), or int8 "
                   "quantised while loading (less memory, faster CPU decode; experts are MXFP4 either way)")
    g.add_argument("--attention", choices=("plain", "fused"), default="plain",
                   help="local model's attention for prompt chunks: plain (default) or fused, torch's fused CPU "
                   "kernel (3-7x faster attention on long prompts; rounds differently in bf16, so outputs can "
                   "differ from plain by a rounding step)")
    g.add_argument("--context", type=_positive, metavar="N",
                   help="context window in tokens: the local KV cache's length (default the model's 131,072; it "
                        "grows as used, 24 KiB a token for 20b), or a remote model's window. Longer runs compact")


def _agent_args(p: argparse.ArgumentParser, serve: bool = False) -> None:
    p.add_argument("--reasoning", choices=EFFORTS, default="medium", help="reasoning effort")
    p.add_argument("--tools", default="", help="comma-separated built-in tools: python,files,browser")
    p.add_argument("--workspace", default=".", help="folder the python and files tools work in (/mnt/data)")
    p.add_argument("--search", help="browser search: a SearXNG URL or a folder of documents to search offline")
    p.add_argument("--allow-private", action="store_true", help="let the browser open private/loopback addresses")
    p.add_argument("--instructions", help="developer instructions")
    p.add_argument("--max-turns", type=int, default=20, help="model calls per run")
    p.add_argument("--max-tokens", type=int, help="completion tokens for the whole run")
    p.add_argument("--timeout", type=float, help="wall-clock seconds for the whole run")
    p.add_argument("--no-compaction", action="store_true",
                   help="stop (stop reason 'context') instead of compacting when the conversation outgrows --context")
    p.add_argument("--seed", type=int, help="sampling seed (reproducible runs)")
    p.add_argument("--temperature", type=float, help="sampling temperature (default 1.0; 0, greedy, for the demo model)")
    if serve:  # a server's defaults for requests that give none; its output is a log
        p.add_argument("-v", "--verbose", action="store_true", help="debug log (uvicorn included)")
        p.add_argument("-q", "--quiet", action="store_true", help="log warnings only (no line per request)")
        return
    p.add_argument("--transcript", help="save the transcript (JSONL) here")
    p.add_argument("-v", "--verbose", action="store_true", help="show the reasoning")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the answer")
    from ossagent.agent.cli.approve import add_arguments

    add_arguments(p)


def _cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    return eval_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ossagent", description="gpt-oss as a local tool-using agent",
                                     epilog=epilog(), formatter_class=Formatter)
    parser.add_argument("--version", action="version", version=f"ossagent {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="report what this machine offers (tokenizer, torch, sandbox, browser, model)")
    sub.add_parser("list", help="list the gpt-oss checkpoints on this machine")
    run = sub.add_parser("run", help="run one agent task", epilog=epilog("run"), formatter_class=Formatter)
    run.add_argument("task", nargs="?", help="what to do; - reads it from standard input; leave it out to resume "
                     "a paused --resume transcript")
    _backend_args(run)
    _agent_args(run)
    run.add_argument("--schema", help="JSON Schema (file or inline) the answer must follow")
    run.add_argument("--output", choices=("text", "json"), default="text",
                     help="the answer as text, or one JSON object (answer, output, stop reason, usage, calls)")
    run.add_argument("--resume", help="continue the conversation of a saved transcript")
    chat = sub.add_parser("chat", help="interactive chat (streaming; /help inside)", epilog=epilog("chat"),
                          formatter_class=Formatter)
    _backend_args(chat)
    _agent_args(chat)
    chat.add_argument("--session", metavar="NAME", help="a named session: resume it and save each turn (kept in "
                      "<ossagent home>/responses.sqlite3; 1-64 letters, digits, '.', '_', '-')")
    serve = sub.add_parser("serve", help="OpenAI-compatible HTTP server", epilog=epilog("serve"),
                           formatter_class=Formatter)
    _backend_args(serve)
    _agent_args(serve, serve=True)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free port, printed)")
    serve.add_argument("--model-id", help="the name clients use in 'model' (default gpt-oss-20b; ossagent-demo "
                                          "for the demo model); openai/NAME and gpt-oss:SIZE are accepted too")
    serve.add_argument("--cors-origin", action="append", metavar="ORIGIN",
                       help="let browser pages from ORIGIN call the API (repeatable; * for any); off by default")
    serve.add_argument("--slots", type=int,
                       help="concurrent generations; a local model decodes them together (default 4 for a local "
                            "model when --kv-memory holds 4 conversations of 8k tokens, else fewer; 8 otherwise)")
    serve.add_argument("--kv-memory", type=float, metavar="GB",
                       help=f"a local model's KV cache budget for cached conversations (default "
                            f"{DEFAULT_KV_MEMORY_GB:g}; at gpt-oss-20b about 0.25 GB per 8k-token conversation)")
    serve.add_argument("--server-api-key", help="require this bearer token from clients")
    serve.add_argument("--allow-mcp", action="store_true",
                       help="connect to the MCP servers (streamable HTTP URLs) that Responses requests name")
    serve.add_argument("--allowed-host", action="append", metavar="NAME",
                       help="a Host name clients may use besides the bound address and localhost (repeatable; "
                            "'*': any; other names are refused against DNS rebinding)")
    add_eval_parser(sub)
    ft = sub.add_parser("finetune", help="LoRA fine-tuning on saved agent transcripts",
                        description="Fine-tune LoRA adapters on the turns of saved transcripts (ossagent finetune).")
    add_finetune_arguments(ft)
    dl = sub.add_parser("download", help="download a checkpoint from Hugging Face")
    dl.add_argument("model_id")
    dl.add_argument("--dir", help="target folder (default ~/.cache/ossagent/models/NAME)")
    dl.add_argument("--include", action="append", help="only files matching this pattern (repeatable)")
    dl.add_argument("--offline", action="store_true", help="only check the local cache")
    return parser


def _is_checkpoint_fault(exc: ValueError) -> bool:
    """A corrupt or absurd checkpoint: the user's configuration, shown in one line (the model is loaded by now)."""
    from ossagent.model.config import ConfigError
    from ossagent.model.safetensors_mmap import CheckpointError

    return isinstance(exc, (ConfigError, CheckpointError))


def main(argv: Sequence[str] | None = None) -> int:
    from ossagent.agent.cli import config
    from ossagent.agent.cli.checks import preflight

    parser = build_parser()
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    commands = {"doctor": _cmd_doctor, "run": _cmd_run, "chat": _cmd_chat, "serve": _cmd_serve,
                "download": _cmd_download, "eval": _cmd_eval, "list": _cmd_list,
                "finetune": finetune_main}
    try:
        path = settings.home / config.FILE_NAME
        config.apply(parser, args, config.load(path), path)
        preflight(args)  # common mistakes: one line and exit 2, before any model loads
        return commands[args.command](args, settings)
    except UserError as exc:
        print(f"ossagent {args.command}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        if not _is_checkpoint_fault(exc):
            raise
        print(f"ossagent {args.command}: the model's configuration or weights are not usable: {exc}", file=sys.stderr)
        return 2
    except HarnessError as exc:  # ScriptError: a --scripted model's script did not fit the conversation
        print(f"ossagent {args.command}: the scripted model went off script: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

