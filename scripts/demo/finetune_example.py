"""Worked example of ``ossagent finetune``: teach the demo model a task family it does not know.

    nice .venv/bin/python -m scripts.demo.finetune_example --out /tmp/ft-example

The new family, ``convert``: "Convert 37 degrees Celsius to Fahrenheit." and "How many seconds are in 7 hours?",
answered by a python program with the conversion's constants (``37 * 9 / 5 + 32``, ``7 * 3600``), which no
question shows. The demo model never saw it (and most of its words are outside the demo model's trained
vocabulary: only "degrees", "seconds" and the numbers tell the two kinds apart).

1. Data: gold runs of ``--train`` convert tasks and ``--replay`` tasks of the original families, through the real
   agent loop and tools (:func:`scripts.demo.realgen.gold_sequence`); each run's transcript is saved with
   ``Transcript.save`` and turned into an example by :mod:`ossagent.agent.finetune_data`, which must give exactly
   the token sequence and mask the loop itself produced (checked for every run).
2. Training: a LoRA adapter (:func:`ossagent.model.finetune.finetune`), fp32 on CPU.
3. Merge into a new checkpoint (:func:`ossagent.model.lora.merge_checkpoint`), experts unchanged.
4. Evaluation before and after, through the real loop with the local engine and constrained decoding
   (:func:`scripts.demo.evaluate.run_task`): held-out convert tasks and held-out tasks of the original families.
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


def convert_tasks(n: int, seed: int) -> list[Task]:
    rng = random.Random(f"convert:{seed}")
    return [convert_task(rng, EFFORTS[i % len(EFFORTS)]) for i in range(n)]


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


def build_data(tasks: list[Task], folder: Path) -> list[Any]:
    """Gold runs -> saved transcripts -> examples, each checked against the loop's own tokens and mask."""
    from ossagent.agent.finetune_data import transcript_examples
    from ossagent.agent.transcript import Transcript
    from ossagent.model.tokenizer import o200k_harmony
    from scripts.demo.realgen import gold_sequence

    enc = o200k_harmony()
    folder.mkdir(parents=True, exist_ok=True)
    examples = []
    for i, task in enumerate(tasks):
        tokens, mask, result = gold_sequence(task, enc)
        path = result.transcript.save(folder / f"{i:04d}-{task.family}.jsonl")
        (ex,) = transcript_examples(Transcript.load(path), prompt_config(task), enc, str(path))
        if ex.tokens != tokens or ex.mask != mask:
            raise AssertionError(f"{path}: the example differs from the sequence the agent loop produced")
        examples.append(ex)
    return examples


def evaluate(model_dir: Path, groups: dict[str, list[Task]], threads: int) -> dict[str, Any]:
    """Per group: tasks solved, tasks, and each failure as ``[family/effort] question: reason``."""
    import torch

    from ossagent.agent.backends.local import LocalBackend
    from scripts.demo.evaluate import run_task

    torch.set_num_threads(threads)
    backend = LocalBackend.from_pretrained(model_dir, device="cpu")
    out: dict[str, Any] = {}
    for name, tasks in groups.items():
        outcomes = [(t, run_task(t, backend)) for t in tasks]
        out[name] = {"ok": sum(o.ok for _, o in outcomes), "n": len(tasks),
                     "failures": [f"[{t.family}/{t.effort}] {t.user!r}: {o.reason}" for t, o in outcomes if not o.ok]}
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    from ossagent.model.demo import demo_model_dir
    from ossagent.model.finetune import TrainConfig, finetune
    from ossagent.model.loader import load_model
    from ossagent.model.lora import LoraConfig, merge_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--train", type=int, default=150)
    ap.add_argument("--replay", type=int, default=150, help="gold runs of the original families mixed in")
    ap.add_argument("--eval", type=int, default=30, help="held-out convert tasks; as many of the original families")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--targets", default="q,k,v,out,unembedding")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = demo_model_dir()
    assert base is not None, "the demo model is not in this checkout"
    t0 = time.time()
    data = build_data(convert_tasks(args.train, 0) + list(generate(args.replay, 7, "train")), args.out / "runs")
    print(f"data: {len(data)} examples, {sum(len(e.tokens) for e in data)} tokens, "
          f"{sum(e.trained for e in data)} trained ({time.time() - t0:.0f} s)", flush=True)
    model = load_model(base, dtype=torch.float32)
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch=4, checkpointing=False)  # tiny: memory is no issue
    result = finetune(model, data, args.out / "adapter", cfg=cfg,
                      lora=LoraConfig(rank=args.rank, alpha=2.0 * args.rank, targets=tuple(args.targets.split(","))),
                      progress=lambda p: print(f"step {p.step}/{p.total} loss {p.loss:.4f} ({p.seconds:.0f} s)",
                                               flush=True) if p.step % 10 == 0 else None)
    print(f"trained {result.steps} steps in {result.seconds:.0f} s, loss {result.losses[0]:.3f} -> "
          f"{result.losses[-1]:.3f}, peak RSS {result.peak_memory / 2**20:.0f} MiB", flush=True)
    merged = merge_checkpoint(base, args.out / "adapter", args.out / "merged")
    groups = {"convert (new)": convert_tasks(args.eval, 1), "original families": list(generate(args.eval, 1, "eval"))}
    before = evaluate(base, groups, args.threads)
    after = evaluate(merged, groups, args.threads)
    report = {"before": before, "after": after, "train_seconds": result.seconds, "losses": result.losses}
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print("| tasks (held out) | demo model | + adapter |\n|---|---|---|")
    for name in groups:
        b, a, n = before[name]["ok"], after[name]["ok"], before[name]["n"]
        print(f"| {name} ({n}) | {b / n:.0%} | {a / n:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
