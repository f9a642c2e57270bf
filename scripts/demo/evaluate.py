"""Evaluate the demo model on held-out generated tasks (unseen seed, answer names from held-out pools).

    .venv/bin/python -m scripts.demo.evaluate --model model/demo_weights --n 100

Prints success per family and per reasoning effort, and decode tokens/s on CPU. Each task runs as an agent
would: the model writes messages until ``<|call|>`` or ``<|return|>``; a call goes to the toolbox and its
result is appended as a tool message; the final answer is checked against the task's expected values.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.demo.simtools import Msg, SimToolbox, Toolbox
from scripts.demo.tasks import EFFORTS, FAMILIES, Task, generate

RETURN, CALL, START, END = 200002, 200012, 200006, 200007
CITATION = re.compile(r"【\d+†L\d+(-L\d+)?】")


@dataclass
class Outcome:
    ok: bool
    final: str | None
    calls: list[tuple[str, str]] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    reason: str = ""


def check(task: Task, final: str | None, calls: list[tuple[str, str]]) -> tuple[bool, str]:
    """Whether a run solved ``task``; the reason when it did not."""
    if final is None:
        return False, "no final answer"
    if task.expected_json is not None:
        try:
            got = json.loads(final)
        except json.JSONDecodeError:
            return False, "final answer is not JSON"
        return (got == task.expected_json, "" if got == task.expected_json else f"JSON differs: {final}")
    if task.expected_call is not None:
        name, args = task.expected_call
        made = [(r, c) for r, c in calls if r == f"functions.{name}"]
        if not made or _loads(made[0][1]) != args:
            return False, f"expected call functions.{name}({args}), got {calls}"
    missing = [e for e in task.expected if e.lower() not in final.lower()]
    if missing:
        return False, f"missing {missing} in {final!r}"
    if task.family == "browser" and not CITATION.search(final):
        return False, f"no citation in {final!r}"
    return True, ""


def _loads(s: str) -> Any:
    try:
        return json.loads(s)
    except json.JSONDecodeError:
        return None


def run_task(task: Task, generate_fn: Callable[[list[int], int], list[int]], toolbox: Toolbox,
             max_turns: int = 8, max_tokens: int = 400) -> Outcome:
    """A minimal harmony agent loop over token ids (the product's loop lives in ossagent.agent)."""
    import openai_harmony as oh

    from scripts.demo.render import harmony_encoding, render_prompt, to_harmony

    enc = harmony_encoding()
    tokens = render_prompt(task)
    calls: list[tuple[str, str]] = []
    n_gen, t0 = 0, time.perf_counter()
    for _ in range(max_turns):
        out = generate_fn(tokens, max_tokens)
        n_gen += len(out)
        try:
            msgs = enc.parse_messages_from_completion_tokens(out, oh.Role.ASSISTANT)
        except Exception as e:  # the model wrote something that is not harmony
            return Outcome(False, None, calls, n_gen, time.perf_counter() - t0, f"unparsable output: {e}")
        tokens = tokens + out
        if not msgs:
            break
        last = msgs[-1]
        text = "".join(c.text for c in last.content if hasattr(c, "text"))
        if out[-1] == CALL and last.recipient:
            calls.append((last.recipient, text))
            result = toolbox.call(last.recipient, text)
            tool = Msg("tool", result, channel=last.channel, recipient="assistant", author=last.recipient)
            tokens = tokens + list(enc.render(to_harmony(tool))) + [START, *enc.encode("assistant", allowed_special=set())]
            continue
        if last.channel == "final":
            ok, why = check(task, text, calls)
            return Outcome(ok, text, calls, n_gen, time.perf_counter() - t0, why)
        break
    return Outcome(False, None, calls, n_gen, time.perf_counter() - t0, "ran out of turns or stopped without answer")


def hf_generator(model_dir: Path) -> Callable[[list[int], int], list[int]]:
    """Greedy decoding with transformers' gpt-oss on the dequantised checkpoint (stand-in for the core's engine)."""
    import torch

    model = load_hf(model_dir)

    @torch.no_grad()
    def gen(prompt: list[int], max_tokens: int) -> list[int]:
        out: list[int] = []
        ids = torch.tensor([prompt])
        past = None
        for _ in range(max_tokens):
            res = model(input_ids=ids, past_key_values=past, use_cache=True)
            past = res.past_key_values
            nxt = int(res.logits[0, -1].argmax())
            out.append(nxt)
            if nxt in (RETURN, CALL):
                break
            ids = torch.tensor([[nxt]])
        return out

    return gen


def load_hf(model_dir: Path) -> Any:
    """transformers' GptOssForCausalLM from a demo checkpoint, experts dequantised from MXFP4."""
    import torch
    from safetensors.torch import load_file
    from transformers import GptOssConfig, GptOssForCausalLM

    from scripts.demo import mxfp4

    cfg = json.loads((model_dir / "config.json").read_text())
    rope = cfg.pop("rope_scaling")
    keep = {k: v for k, v in cfg.items() if k not in ("quantization_config", "torch_dtype", "experts_per_token",
                                                      "initial_context_length", "model_type", "architectures",
                                                      "rope_theta")}
    conf = GptOssConfig(**keep, rope_parameters={**rope, "rope_theta": cfg["rope_theta"]})
    conf._attn_implementation = "eager"
    model = GptOssForCausalLM(conf)
    sd = load_file(str(model_dir / "model.safetensors"))
    state: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.endswith("_blocks"):
            base = k[: -len("_blocks")]
            state[base] = mxfp4.dequantize(v, sd[base + "_scales"]).transpose(1, 2).contiguous()
        elif not k.endswith("_scales"):
            state[k] = v.float()
    model.load_state_dict(state, strict=True)
    return model.eval()


def evaluate(model_dir: Path, n: int, seed: int, toolbox_factory: Callable[[Task], Toolbox] = SimToolbox,
             verbose: bool = False) -> dict[str, Any]:
    gen = hf_generator(model_dir)
    by_family: dict[str, list[bool]] = defaultdict(list)
    by_effort: dict[str, list[bool]] = defaultdict(list)
    by_pair: dict[tuple[str, str], list[bool]] = defaultdict(list)
    toks, secs = 0, 0.0
    failures = []
    for task in generate(n, seed, "eval"):
        tb = toolbox_factory(task)
        try:
            o = run_task(task, gen, tb)
        finally:
            tb.close()
        by_family[task.family].append(o.ok)
        by_effort[task.effort].append(o.ok)
        by_pair[(task.family, task.effort)].append(o.ok)
        toks, secs = toks + o.tokens, secs + o.seconds
        if not o.ok:
            failures.append(f"[{task.family}/{task.effort}] {task.user!r}: {o.reason}")
            if verbose:
                print(failures[-1], flush=True)
    allv = [v for vs in by_family.values() for v in vs]
    return {"overall": sum(allv) / len(allv), "n": len(allv),
            "family": {f: sum(v) / len(v) for f, v in by_family.items()},
            "effort": {e: sum(v) / len(v) for e, v in by_effort.items()},
            "pair": {f"{f}/{e}": sum(v) / len(v) for (f, e), v in by_pair.items()},
            "tokens_per_s": toks / secs if secs else 0.0, "failures": failures}


def print_report(r: dict[str, Any]) -> None:
    print(f"overall: {r['overall']:.0%} of {r['n']} held-out tasks; decode {r['tokens_per_s']:.1f} tokens/s (CPU)")
    print(f"{'family':10s} " + " ".join(f"{e:>7s}" for e in EFFORTS) + "      all")
    for f in FAMILIES:
        cells = [r["pair"].get(f"{f}/{e}") for e in EFFORTS]
        print(f"{f:10s} " + " ".join(f"{c:7.0%}" if c is not None else "      -" for c in cells)
              + f"  {r['family'].get(f, 0):7.0%}")
    print(f"{'all':10s} " + " ".join(f"{r['effort'].get(e, 0):7.0%}" for e in EFFORTS))


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(description="evaluate the demo model on held-out tasks")
    ap.add_argument("--model", type=Path, default=Path("model/demo_weights"))
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    r = evaluate(args.model, args.n, args.seed, verbose=args.verbose)
    print_report(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
