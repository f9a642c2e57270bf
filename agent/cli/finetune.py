"""``ossagent finetune``: LoRA-train a local gpt-oss on saved agent transcripts, or merge an adapter.

    ossagent finetune --model DIR --data runs/ --out my-adapter [--eval-results results/] [--rank 8 ...]
    ossagent finetune --model DIR --merge my-adapter --out merged-model/

The prompt of each transcript is rebuilt as the agent loop built it (:mod:`ossagent.agent.finetune_data`); the
transcript header names the tools, functions and answer format, and their texts come from ``--tools``,
``--functions`` and ``--response-format``. Attach with :func:`add_finetune_arguments` and :func:`finetune_main`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ossagent.agent.finetune_data import (
    DataError,
    Dataset,
    build_dataset,
    builtin_descriptions,
    prompt_config_from_settings,
    show_example,
)
from ossagent.agent.settings import Settings
from ossagent.agent.transcript import Transcript
from ossagent.tools.base import FunctionDescription, UserError


def add_finetune_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="base checkpoint folder (HF or original layout), or 'demo'")
    p.add_argument("--out", required=True, help="adapter folder to write (with --merge: the merged checkpoint)")
    p.add_argument("--merge", metavar="ADAPTER", help="do not train: merge this adapter into --model, write to --out")
    d = p.add_argument_group("data")
    d.add_argument("--data", action="append", default=[], help="transcript file or folder of *.jsonl (repeatable)")
    d.add_argument("--eval-results", help="an eval results folder: use the transcripts that scored --min-score")
    d.add_argument("--min-score", type=float, default=1.0)
    d.add_argument("--held-out", type=float, default=0.1, help="share of transcripts held out (default 0.1)")
    d.add_argument("--max-tokens", type=int, default=8192, help="leave out longer examples (default 8192)")
    d.add_argument("--tools", default="", help="built-in tools the runs had: python,files,browser")
    d.add_argument("--functions", help="JSON file: a list of {name, description, parameters} the runs had")
    d.add_argument("--response-format", help="JSON file: {name, schema, description} of the runs' answer format")
    d.add_argument("--current-date", help="the date the runs' system message showed (YYYY-MM-DD)")
    d.add_argument("--model-identity", help="the model identity line the runs' system message showed")
    d.add_argument("--dry-run", action="store_true", help="print the data summary and the first example; no training")
    t = p.add_argument_group("training")
    t.add_argument("--rank", type=int, default=8)
    t.add_argument("--alpha", type=float, default=16.0)
    t.add_argument("--targets", default="q,k,v,out", help="of q,k,v,out,router,unembedding (default q,k,v,out)")
    t.add_argument("--dropout", type=float, default=0.0)
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--batch", type=int, default=4, help="examples per optimizer step")
    t.add_argument("--warmup", type=int, default=10)
    t.add_argument("--max-steps", type=int)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", help="cpu, cuda, cuda:1 (default: OSSAGENT_DEVICE, then cuda if present)")
    t.add_argument("--dtype", choices=("auto", "bf16", "fp32"), default="auto", help="auto: bf16 on GPU, fp32 on CPU")
    t.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    t.add_argument("--no-checkpointing", action="store_true", help="keep activations (faster, more memory)")
    t.add_argument("--save-every", type=int, default=50, help="steps between resumable checkpoints")
    t.add_argument("--eval-every", type=int, default=0, help="steps between held-out evaluations")
    t.add_argument("--resume", action="store_true", help="continue from --out/checkpoint")
    t.add_argument("--name", help="adapter name (default: the --out folder's name)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ossagent finetune", description=__doc__.split("\n")[0])
    add_finetune_arguments(p)
    return p


def _json_file(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{what} {path}: {exc}") from None


def _model_dir(value: str) -> Path:
    if value == "demo":
        from ossagent.model.demo import demo_model_dir

        folder = demo_model_dir()
        if folder is None:
            raise UserError("this installation does not carry the demo model")
        return folder
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise UserError(f"model folder {folder} does not exist")
    return folder


def prompt_source(args: argparse.Namespace) -> Any:
    """Transcript -> the PromptConfig its runs had, from the header and the descriptions given."""
    tools = builtin_descriptions([t for t in args.tools.split(",") if t])
    functions = []
    if args.functions:
        raw = _json_file(args.functions, "--functions")
        if not isinstance(raw, list) or not all(isinstance(f, dict) and "name" in f for f in raw):
            raise UserError("--functions: expected a JSON list of {name, description, parameters}")
        functions = [FunctionDescription(f["name"], f.get("description", ""), f.get("parameters")) for f in raw]
    formats = {}
    if args.response_format:
        rf = _json_file(args.response_format, "--response-format")
        if not isinstance(rf, dict) or "name" not in rf or "schema" not in rf:
            raise UserError("--response-format: expected a JSON object {name, schema, description}")
        formats[rf["name"]] = (rf["schema"], rf.get("description"))

    def config(t: Transcript) -> Any:
        return prompt_config_from_settings(t.settings, tools=tools, functions=functions, response_formats=formats,
                                           current_date=args.current_date, model_identity=args.model_identity)

    return config


def _device_dtype(args: argparse.Namespace, settings: Settings) -> tuple[str, Any]:
    import torch

    device = args.device or settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.dtype == "auto":
        dtype = torch.float32 if device == "cpu" else torch.bfloat16
    else:
        dtype = torch.float32 if args.dtype == "fp32" else torch.bfloat16
    return device, dtype


def _merge(args: argparse.Namespace) -> int:
    from ossagent.model.lora import AdapterError, merge_checkpoint

    try:
        out = merge_checkpoint(_model_dir(args.model), args.merge, args.out)
    except AdapterError as exc:
        raise UserError(str(exc)) from None
    print(f"merged {args.merge} into {args.model}: {out}")
    return 0


def _data(args: argparse.Namespace, settings: Settings, folder: Path) -> tuple[Dataset, Any]:
    from ossagent.model.tokenizer import load_tokenizer

    if not args.data and not args.eval_results:
        raise UserError("give --data (transcripts) and/or --eval-results")
    enc = load_tokenizer(settings.tokenizer, folder, settings.tiktoken_cache_dir).encoding
    ds = build_dataset(args.data, prompt_source(args), encoding=enc, eval_results=args.eval_results,
                       min_score=args.min_score, held_out=args.held_out, seed=args.seed, max_tokens=args.max_tokens)
    return ds, enc


def finetune_main(args: argparse.Namespace, settings: Settings) -> int:
    """The ``finetune`` command; UserError for bad input (the CLI prints it and exits 2)."""
    if args.merge:
        return _merge(args)
    folder = _model_dir(args.model)
    try:
        ds, enc = _data(args, settings, folder)
    except DataError as exc:
        raise UserError(str(exc)) from None
    print(ds.summary.table())
    if not args.current_date:
        print("note: no --current-date; transcript headers do not record it, so prompts have no date line")
    if args.dry_run:
        print(show_example(ds.train[0], enc), end="")
        return 0
    return _train(args, settings, folder, ds)


def _train(args: argparse.Namespace, settings: Settings, folder: Path, ds: Dataset) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from ossagent.model.finetune import Progress as Step
    from ossagent.model.finetune import TrainConfig, evaluate, finetune
    from ossagent.model.loader import load_model
    from ossagent.model.lora import AdapterError, LoraConfig

    try:
        lora = LoraConfig(rank=args.rank, alpha=args.alpha, dropout=args.dropout,
                          targets=tuple(t for t in args.targets.split(",") if t))
        cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch=args.batch, warmup=args.warmup, seed=args.seed,
                          checkpointing=not args.no_checkpointing, save_every=args.save_every,
                          eval_every=args.eval_every, max_steps=args.max_steps)
    except (AdapterError, ValueError) as exc:
        raise UserError(str(exc)) from None
    device, dtype = _device_dtype(args, settings)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model = load_model(folder, device=device, dtype=dtype)
    out = Path(args.out)
    meta = {"base_model": str(folder), "data": asdict(ds.summary), "lora": asdict(lora)}
    before = evaluate(model, ds.held_out, cfg) if ds.held_out else None
    with Progress(TextColumn("finetune"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                  TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn()) as bar:
        task = bar.add_task("train", total=None, loss="-")

        def tick(p: Step) -> None:
            bar.update(task, completed=p.step, total=p.total, loss=f"{p.loss:.4f}")

        result = finetune(model, ds.train, out, held=ds.held_out, lora=lora, cfg=cfg, resume=args.resume,
                          name=args.name or out.name.replace(".", "-") or "adapter", progress=tick, meta=meta)
    first = result.losses[0] if result.losses else float("nan")
    print(f"steps {result.steps} (resumed at {result.resumed_from})" if result.resumed_from else
          f"steps {result.steps}", f"loss {first:.4f} -> {result.losses[-1]:.4f}" if result.losses else "")
    if result.held and before is not None:
        _, loss, acc = result.held[-1]
        print(f"held-out ({len(ds.held_out)} examples): loss {before[0]:.4f} -> {loss:.4f}, "
              f"token accuracy {before[1]:.1%} -> {acc:.1%}")
    print(f"adapter written to {out} ({result.seconds:.0f} s, peak memory {result.peak_memory / 2**20:.0f} MiB)")
    return 0
