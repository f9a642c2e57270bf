"""Worked example of ``ossagent finetune``: teach the demo model a task family it does not know.

    nice .venv/bin/python -m scripts.demo.finetune_example --out /tmp/ft-example [--base-results /tmp/ft-base]
        [--runs /tmp/ft-runs] [--log mixes.jsonl] [--train 150 --replay 900 --epochs 2 --rank 16 --targets q,k,v,out,unembedding]
        [--eval 100] [--seed 0]

The new family, ``convert``: "Convert 37 degrees Celsius to Fahrenheit." and "How many seconds are in 7 hours?",
answered by a python program with the conversion's constants (``37 * 9 / 5 + 32``, ``7 * 3600``), which no
question shows. The demo model never saw it (and most of its words are outside the demo model's trained
vocabulary: only "degrees", "seconds" and the numbers tell the two kinds apart).

1. Data: gold runs of ``--train`` convert tasks and ``--replay`` tasks of the original families (replay against
   forgetting), interleaved, through the real agent loop and tools (:func:`scripts.demo.realgen.gold_sequence`);
   each run's transcript is saved with ``Transcript.save`` (in ``--runs``, shared by experiments) and turned into
   an example by :mod:`ossagent.agent.finetune_data`, which must give exactly the token sequence and mask the loop
   itself produced (checked for every run).
2. Training: a LoRA adapter (:func:`ossagent.model.finetune.finetune`), fp32 on CPU.
3. Evaluation through ``ossagent eval``'s runner (the real loop, the local engine, constrained decoding, the demo
   suite's checks): held-out convert tasks and the first held-out tasks of the demo suite, with the base model
   (into ``--base-results``: run once, reused by every experiment) and with the adapter (``--adapter``, merged as
   the weights load). ``--log`` appends the mix and both figures as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

from scripts.demo.tasks import EFFORTS, Step, Task, _py_value, _think, generate

KINDS = {
    "temperature": ("Convert {n} degrees Celsius to Fahrenheit.", "{n} * 9 / 5 + 32"),
    "seconds": ("How many seconds are in {n} hours?", "{n} * 3600"),
}


def convert_task(rng: random.Random, effort: str) -> Task:
    kind = rng.choice(sorted(KINDS))
    n = rng.randint(2, 199)
    question, formula = KINDS[kind]
    expr = formula.format(n=n)
    code = f'print("The answer is", {expr})'
    plan = _think(rng, effort, "Use python.", "I will convert it with python.",
                  "The conversion needs a fixed factor, so I will write a short python program that prints the "
                  "result, then read the output and report it.")
    steps = [Step("analysis", plan), Step("analysis", code, recipient="python")]
    if effort == "high":
        steps.append(Step("analysis", "The program printed the result, so I can report it."))
    steps.append(Step("final", lambda obs: f"{obs[-1].strip()}."))
    date = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    return Task("convert", effort, question.format(n=n), builtin_tools=("python",), steps=steps,
                expected=(_py_value(code),), date=date)


def convert_tasks(n: int, seed: int, exclude: frozenset[str] = frozenset()) -> list[Task]:
    """``n`` convert tasks from ``seed``, none asking a question in ``exclude``."""
    rng = random.Random(f"convert:{seed}")
    out: list[Task] = []
    while len(out) < n:
        task = convert_task(rng, EFFORTS[len(out) % len(EFFORTS)])
        if task.user not in exclude:
            out.append(task)
    return out


def prompt_config(task: Task) -> Any:
    """The PromptConfig the demo agent uses for ``task`` (:func:`scripts.demo.realgen.make_agent`), from the
    transcript header's names plus the descriptions: the header records neither the date nor the texts."""
    from ossagent.agent.finetune_data import builtin_descriptions, prompt_config_from_settings
    from ossagent.agent.output import response_format
    from ossagent.tools.base import FunctionDescription

    fmt = response_format(task.response_format[1]) if task.response_format else None
    formats = {fmt.name: (fmt.schema, fmt.description or None)} if fmt else {}
    settings = {"reasoning": task.effort, "instructions": task.instructions, "builtin_tools": list(task.builtin_tools),
                "function_tools": [f.name for f in task.functions], "response_format": fmt.name if fmt else None}
    return prompt_config_from_settings(
        settings, tools=builtin_descriptions(task.builtin_tools), response_formats=formats, current_date=task.date,
        functions=[FunctionDescription(f.name, f.description, f.parameters) for f in task.functions])


def build_data(tasks: list[tuple[str, Task]], folder: Path) -> list[Any]:
    """Gold runs -> saved transcripts -> examples, each checked against the loop's own tokens and mask.

    ``tasks``: (file stem, task). A transcript already in ``folder`` under its stem is reused (it was checked
    when written; the tasks are reproducible from their seeds, so several mixes share one folder of runs)."""
    from ossagent.agent.finetune_data import transcript_examples
    from ossagent.agent.transcript import Transcript
    from ossagent.model.tokenizer import o200k_harmony
    from scripts.demo.realgen import gold_sequence

    enc = o200k_harmony()
    folder.mkdir(parents=True, exist_ok=True)
    examples = []
    for stem, task in tasks:
        path = folder / f"{stem}.jsonl"
        if path.is_file():
            (ex,) = transcript_examples(Transcript.load(path), prompt_config(task), enc, str(path))
            examples.append(ex)
            continue
        tokens, mask, result = gold_sequence(task, enc)
        result.transcript.save(path)
        (ex,) = transcript_examples(Transcript.load(path), prompt_config(task), enc, str(path))
        if ex.tokens != tokens or ex.mask != mask:
            raise AssertionError(f"{path}: the example differs from the sequence the agent loop produced")
        examples.append(ex)
    return examples


def training_tasks(n_new: int, n_replay: int, held_out: int) -> list[tuple[str, Task]]:
    """``n_new`` convert tasks (seed 0, none asking a question of the ``held_out`` evaluated ones: the questions
    are few, about 400) and ``n_replay`` tasks of the original families (training split, seed 7), interleaved (the
    trainer shuffles each epoch's order too).

    Which convert tasks come out depends on ``held_out``, so their file stems name it (``convert-h100-0000``): a
    folder of runs shared by experiments never hands a run built for fewer held-out tasks (whose question may be
    one of the held-out ones now) to a run that evaluates more."""
    exclude = frozenset(t.user for t in convert_tasks(held_out, 1))
    new = [(f"convert-h{held_out}-{i:04d}", t) for i, t in enumerate(convert_tasks(n_new, 0, exclude))]
    old = [(f"replay-{i:04d}-{t.family}", t) for i, t in enumerate(generate(n_replay, 7, "train"))]
    out: list[tuple[str, Task]] = []
    for i in range(max(len(new), len(old))):
        out += new[i : i + 1] + old[i : i + 1]
    return out


def eval_suite(n: int) -> Any:
    """The held-out tasks as an ``ossagent eval`` suite: ``n`` convert tasks (seed 1) in group ``convert`` and the
    first ``n`` tasks of the demo suite (grouped by family)."""
    from ossagent.agent.eval.suites import Suite
    from ossagent.agent.eval.task import parse_task
    from scripts.demo.evalsuite import suite

    pairs = [(f"convert-{i:03d}", t) for i, t in enumerate(convert_tasks(n, 1))]
    pairs += [(f"demo-{i:03d}", t) for i, t in enumerate(generate(n, 1, "eval"))]
    data = suite("finetune-example", pairs)
    return Suite("finetune-example", tuple(parse_task(r, "finetune-example") for r in data["tasks"]),
                 data["defaults"])


def evaluate(base: Path, adapter: Path | None, n: int, out: Path) -> dict[str, Any]:
    """Run the held-out suite through ``ossagent eval``'s runner into ``out`` (resumed when it holds results of
    the same model: a finished base run costs nothing); per group (new, original), tasks solved and failures."""
    from ossagent.agent.backends.local import LocalBackend
    from ossagent.agent.eval.runner import RunConfig, run_suite

    backend = LocalBackend.from_pretrained(base, device="cpu", adapter=adapter)
    desc = f"local:{base.resolve()}" + (f"+{adapter.resolve()}" if adapter else "")
    results = run_suite(eval_suite(n), lambda _trial: backend, out, RunConfig(backend=desc))
    groups: dict[str, Any] = {}
    for r in results:
        g = groups.setdefault(NEW if r["group"] == "convert" else OLD, {"ok": 0, "n": 0, "failures": []})
        g["n"] += 1
        g["ok"] += bool(r["passed"])
        if not r["passed"]:
            g["failures"].append(f"[{r['group']}/{r['effort']}] {r['task']}: {r['reason']}")
    return groups


NEW, OLD = "convert (new)", "original families"


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="adapter/ and after/ (eval results) go here")
    ap.add_argument("--base-results", type=Path,
                    help="eval results folder of the base model, reused across experiments (default OUT/before)")
    ap.add_argument("--runs", type=Path, help="folder of gold transcripts, shared by experiments (default OUT/runs)")
    ap.add_argument("--log", type=Path, help="append one JSON line per experiment: the mix and both figures")
    ap.add_argument("--train", type=int, default=150)
    ap.add_argument("--replay", type=int, default=900, help="gold runs of the original families mixed in")
    ap.add_argument("--eval", type=int, default=100, help="held-out convert tasks; as many of the original families")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, help="LoRA alpha (default 2 x rank)")
    ap.add_argument("--targets", default="q,k,v,out,unembedding")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="training seed (LoRA init, example order)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import torch

    from ossagent.model.demo import demo_model_dir
    from ossagent.model.finetune import TrainConfig, finetune
    from ossagent.model.loader import load_model
    from ossagent.model.lora import LoraConfig

    args = _args(argv)
    torch.set_num_threads(args.threads)
    base = demo_model_dir()
    assert base is not None, "the demo model is not in this checkout"
    t0 = time.time()
    data = build_data(training_tasks(args.train, args.replay, args.eval), args.runs or args.out / "runs")
    print(f"data: {len(data)} examples, {sum(len(e.tokens) for e in data)} tokens, "
          f"{sum(e.trained for e in data)} trained ({time.time() - t0:.0f} s)", flush=True)
    before = evaluate(base, None, args.eval, args.base_results or args.out / "before")
    model = load_model(base, dtype=torch.float32)
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch=4, checkpointing=False,  # tiny: memory is no issue
                      seed=args.seed)
    lora = LoraConfig(rank=args.rank, alpha=args.alpha or 2.0 * args.rank, targets=tuple(args.targets.split(",")))
    result = finetune(model, data, args.out / "adapter", cfg=cfg, lora=lora,
                      progress=lambda p: print(f"step {p.step}/{p.total} loss {p.loss:.4f} ({p.seconds:.0f} s)",
                                               flush=True) if p.step % 10 == 0 else None)
    print(f"trained {result.steps} steps in {result.seconds:.0f} s, loss {result.losses[0]:.3f} -> "
          f"{result.losses[-1]:.3f}, peak RSS {result.peak_memory / 2**20:.0f} MiB", flush=True)
    after = evaluate(base, args.out / "adapter", args.eval, args.out / "after")
    mix = {"train": args.train, "replay": args.replay, "epochs": args.epochs, "lr": args.lr, "rank": args.rank,
           "alpha": lora.alpha, "targets": args.targets, "seed": args.seed}
    figures = {g: [before[g]["ok"] / before[g]["n"], after[g]["ok"] / after[g]["n"]] for g in (NEW, OLD)}
    report = {"mix": mix, "figures": figures, "before": before, "after": after, "train_seconds": result.seconds,
              "losses": result.losses}
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.log:
        with args.log.open("a") as fh:
            fh.write(json.dumps({"out": str(args.out), "mix": mix, "figures": figures,
                                 "train_seconds": round(result.seconds)}) + "\n")
    print("| tasks (held out) | demo model | + adapter |\n|---|---|---|")
    for g in (NEW, OLD):
        print(f"| {g} ({before[g]['n']}) | {figures[g][0]:.0%} | {figures[g][1]:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
