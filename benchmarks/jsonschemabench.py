"""JSONSchemaBench (MaskBench files) through ossagent's schema compiler and llguidance, with o200k_harmony.

    .venv/bin/python benchmarks/jsonschemabench.py --data ../shared/data/jsonschemabench [--limit N]

For every file ``{"schema", "tests": [{"valid", "data"}]}`` and every configuration:

1. compile the schema (a failure, or an UnsupportedSchemaError for ossagent, counts as not compiled);
2. serialise each test instance as compact JSON, tokenize it, append ``<|call|>``, and walk the tokens:
   at every step the mask is computed (timed) and the next token must be in it;
3. a valid instance must be accepted to the end; an invalid one must be rejected. For the ossagent rows
   the jsonschema check that follows decoding is part of the system: an instance the grammar accepts but
   the validator rejects counts as rejected.

A file passes when it compiled and all of its tests agreed. "false acc." counts invalid instances the
system accepted (the goal is 0); "grammar acc." counts invalid instances the grammar alone let through.
Configurations:

* ``llguidance strict``: the raw llguidance JSON compiler, strict, compact separators (reference).
* ``ossagent``: :func:`ossagent.agent.schema.compile_schema` as tools are declared (strict; oneOf decoded
  as anyOf and recorded), objects left open (the benchmark's valid instances may carry extra keys).
* ``ossagent lenient``: the same with ``lenient=True`` (unsupported keywords skipped while decoding,
  enforced by the validator afterwards).

Mask times are per step: llguidance's bitmask fill, and the same plus the unpacking into the bool tensor
the engine receives (``ConstrainedHook.mask``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llguidance as llg
import llguidance.numpy as llg_np
import numpy as np


@dataclass
class Row:
    name: str
    files: int = 0
    compiled: int = 0
    passed: int = 0
    tests: int = 0
    false_rejects: int = 0
    false_accepts: int = 0
    grammar_accepts_invalid: int = 0
    compile_ms: list[float] = field(default_factory=list)
    fill_us: list[float] = field(default_factory=list)
    mask_us: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    disagreements: list[str] = field(default_factory=list)
    per_split: dict[str, list[int]] = field(default_factory=dict)


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    return float(np.percentile(np.asarray(xs), q))


def _serialise(data: Any) -> str:
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
        return text
    except (UnicodeEncodeError, ValueError):
        return json.dumps(data, separators=(",", ":"), ensure_ascii=True)


def _walk(matcher: llg.LLMatcher, tokens: list[int], bits: Any, vocab: int, row: Row) -> bool:
    """True when every token is allowed by the mask at its step and the grammar ends accepting."""
    for tok in tokens:
        t0 = time.perf_counter()
        llg_np.fill_next_token_bitmask(matcher, bits)
        t1 = time.perf_counter()
        unpacked = np.unpackbits(bits.view(np.uint8), bitorder="little")[:vocab]
        t2 = time.perf_counter()
        row.fill_us.append((t1 - t0) * 1e6)
        row.mask_us.append((t2 - t0) * 1e6)
        if not unpacked[tok] or not matcher.consume_token(tok):
            return False
    return matcher.is_stopped() or matcher.is_accepting()


def _compile_raw(schema: Any, tok: llg.LLTokenizer) -> tuple[str | None, str]:
    body = json.dumps({"x-guidance": {"whitespace_flexible": False}, **schema}
                      if isinstance(schema, dict) else schema, ensure_ascii=False)
    grammar = llg.LLMatcher.grammar_from_lark(f"start: body <[200012]>\nbody: %json {body}")
    is_err, msgs = llg.LLMatcher.validate_grammar_with_warnings(grammar, tok)
    return (None, grammar) if not is_err else ((msgs[0] if msgs else "error").strip().splitlines()[0], "")


def _compile_ossagent(schema: Any, lenient: bool) -> tuple[str | None, str, Any]:
    from ossagent.agent.constrain import body_lark
    from ossagent.agent.schema import compile_schema
    from ossagent.tools.base import UserError

    try:
        compiled = compile_schema(schema, where="bench", lenient=lenient, close=False)
    except UserError as exc:
        return str(exc).split(": ", 1)[-1][:120], "", None
    return None, llg.LLMatcher.grammar_from_lark(body_lark(compiled.grammar_json, 200012)), compiled


def _error_kind(err: str | None) -> str:
    if not err:
        return "?"
    err = err.split("failed to compile JSON schema: ")[-1].split("cannot enforce this schema: ")[-1]
    err = err.split("would ignore part of this schema: ")[-1]
    return err.split(". Pass lenient")[0][:70]


def run_file(path: Path, rows: dict[str, Row], tok: llg.LLTokenizer, enc: Any, bits: Any, vocab: int) -> None:
    from ossagent.agent.schema import validation_errors

    doc = json.loads(path.read_text(encoding="utf-8"))
    schema, tests = doc["schema"], doc.get("tests", [])
    split = path.name.split("---")[0].split("_")[0]
    encoded = [(t["valid"], [*enc.encode(_serialise(t["data"]), disallowed_special=()), 200012], t["data"])
               for t in tests]
    for name, row in rows.items():
        row.files += 1
        t0 = time.perf_counter()
        compiled = None
        if name == "llguidance strict":
            err, grammar = _compile_raw(schema, tok)
        else:
            err, grammar, compiled = _compile_ossagent(schema, lenient=name.endswith("lenient"))
        matcher = None
        if err is None:
            matcher = llg.LLMatcher(tok, grammar, log_level=0)
            if matcher.is_error():
                err = matcher.get_error().splitlines()[0]
        row.compile_ms.append((time.perf_counter() - t0) * 1e3)
        split_counts = row.per_split.setdefault(split, [0, 0])
        split_counts[1] += 1
        if err is not None or matcher is None:
            row.errors[_error_kind(err)] += 1
            continue
        row.compiled += 1
        agree = True
        for valid, tokens, data in encoded:
            row.tests += 1
            accepted = _walk(matcher.deep_copy(), tokens, bits, vocab, row)
            if accepted and not valid:
                row.grammar_accepts_invalid += 1
            if accepted and compiled is not None and validation_errors(compiled, data):
                accepted = False
            if valid and not accepted:
                row.false_rejects += 1
                agree = False
                row.disagreements.append(f"{path.name}: valid instance rejected")
            elif accepted and not valid:
                row.false_accepts += 1
                agree = False
                row.disagreements.append(f"{path.name}: invalid instance accepted: {_serialise(data)[:80]}")
        if agree:
            row.passed += 1
            split_counts[0] += 1


def report(rows: dict[str, Row]) -> str:
    lines = [
        "| configuration | files | compiled | passing | tests | false rej. | false acc. | grammar acc. invalid "
        "| compile p50 / max ms | fill p50 / p99 µs | mask (bool) p50 / p99 µs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in rows.values():
        lines.append(
            f"| {r.name} | {r.files} | {r.compiled} ({100 * r.compiled / max(r.files, 1):.1f}%) "
            f"| {r.passed} ({100 * r.passed / max(r.files, 1):.1f}%) | {r.tests} | {r.false_rejects} "
            f"| {r.false_accepts} | {r.grammar_accepts_invalid} "
            f"| {statistics.median(r.compile_ms):.1f} / {max(r.compile_ms):.0f} "
            f"| {_pct(r.fill_us, 50):.0f} / {_pct(r.fill_us, 99):.0f} "
            f"| {_pct(r.mask_us, 50):.0f} / {_pct(r.mask_us, 99):.0f} |"
        )
    lines.append("")
    splits = sorted({s for r in rows.values() for s in r.per_split})
    lines.append("| split | " + " | ".join(rows) + " |")
    lines.append("|---|" + "---:|" * len(rows))
    for s in splits:
        cells = []
        for r in rows.values():
            ok, n = r.per_split.get(s, [0, 0])
            cells.append(f"{ok}/{n}")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines.append("")
    for r in rows.values():
        top = ", ".join(f"{k} ({v})" for k, v in r.errors.most_common(5))
        lines.append(f"- {r.name}: top compile errors: {top or 'none'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="folder of MaskBench-style *.json files")
    ap.add_argument("--limit", type=int, default=0, help="only the first N files (sorted by name)")
    ap.add_argument("--only", default="", help="only files whose name contains this")
    ap.add_argument("--verbose", action="store_true", help="list every disagreeing test")
    args = ap.parse_args(argv)
    from ossagent.agent.constrain import harmony_lltokenizer
    from ossagent.model.tokenizer import o200k_harmony

    files = sorted(p for p in args.data.glob("*.json") if args.only in p.name)
    if args.limit:
        files = files[: args.limit]
    if not files:
        print(f"no *.json files in {args.data}", file=sys.stderr)
        return 2
    enc = o200k_harmony()
    tok = harmony_lltokenizer(enc)
    vocab = enc.n_vocab
    bits = llg_np.allocate_token_bitmask(1, tok.vocab_size)
    rows = {n: Row(n) for n in ("llguidance strict", "ossagent", "ossagent lenient")}
    t0 = time.perf_counter()
    for i, path in enumerate(files):
        run_file(path, rows, tok, enc, bits, vocab)
        if (i + 1) % 100 == 0:
            print(f"  {i + 1}/{len(files)} files, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print(f"JSONSchemaBench: {len(files)} files from {args.data}, o200k_harmony, compact JSON, "
          f"{time.perf_counter() - t0:.0f} s\n")
    print(report(rows))
    if args.verbose:
        for r in rows.values():
            print(f"\n{r.name}:\n  " + "\n  ".join(r.disagreements))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
