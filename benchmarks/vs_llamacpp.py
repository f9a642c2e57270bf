"""ossagent against llama.cpp on the same random gpt-oss-20b weights: one table of ratios (ours / llama.cpp).

    flock /tmp/ossagent-20b.lock .venv/bin/python benchmarks/vs_llamacpp.py [--model DIR] [--reps 2]

What it does, all cached under ``benchmarks/.cache`` (the GGUF files beside the checkpoint):

1. downloads the ``llama-cpp-python`` sdist (``LLAMA_CPP_PYTHON``) with pip and builds the ``llama-bench`` of its
   ``vendor/llama.cpp`` with cmake (native CPU flags, Release);
2. converts the checkpoint (``benchmarks/checkpoint_20b.py``) to GGUF with llama.cpp's own converter, twice:
   MXFP4 experts with bf16 for the rest, and with Q8_0 for the rest (the format users download); the
   vocabulary is a stub of the right size (``llamacpp_convert.py``);
3. runs llama-bench and our engine (in a fresh process each time, never both at once) alternately, ``--reps``
   times, recording the 1-minute load average before and after each run, and prints one table.

Workloads (both programs, same token counts): decode of 32 tokens after 1k and 8k tokens of context, prefill of
512 and 2048 tokens into an empty cache, and 512 new tokens after a cached 2k prefix (llama-bench ``-d``);
``decode@0`` (32 tokens into an empty cache, llama-bench tg32) is a cheap extra for a busy machine.
Figures are medians over the repetitions. The machine is shared: compare the ratio column, which comes from
runs taken side by side, and read the load columns before trusting any single figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from checkpoint_20b import DEFAULT, ensure_checkpoint  # benchmarks/ is on sys.path when run as a script

LLAMA_CPP_PYTHON = "0.3.36"
HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
TG = 32  # decoded tokens per decode figure (llama-bench tg32)
#: test name -> (prompt tokens, generated tokens, depth): llama-bench's -p, -n, -d
TESTS = {
    "decode@0": (0, TG, 0),
    "decode@1k": (0, TG, 1024),
    "decode@8k": (0, TG, 8192),
    "prefill 512": (512, 0, 0),
    "prefill 2048": (2048, 0, 0),
    "512 after 2k": (512, 0, 2048),
}
GGUF_TYPE = {"bf16": "bf16", "int8": "q8_0"}  # our --weights -> llama.cpp's type for the non-expert weights


def llama_source(cache: Path) -> Path:
    """vendor/llama.cpp of the pinned llama-cpp-python sdist (downloaded and unpacked once)."""
    root = cache / f"llama_cpp_python-{LLAMA_CPP_PYTHON}"
    src = root / "vendor" / "llama.cpp"
    if (src / "CMakeLists.txt").is_file():
        return src
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
    if not sdist.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                        f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", str(cache)], check=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(cache, filter="data")
    return src


def llama_bench(cache: Path) -> Path:
    """The llama-bench binary, built once with native CPU flags."""
    build = cache / "llama-build"
    exe = build / "bin" / "llama-bench"
    if exe.is_file():
        return exe
    src = llama_source(cache)
    flags = ["-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF",
             "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
             "-DLLAMA_BUILD_SERVER=OFF"]
    print(f"building llama-bench in {build} (takes a while on 2 cores)", flush=True)
    subprocess.run(["nice", "cmake", "-S", str(src), "-B", str(build), *flags], check=True)
    jobs = str(os.cpu_count() or 2)
    subprocess.run(["nice", "cmake", "--build", str(build), "--target", "llama-bench", "-j", jobs], check=True)
    return exe


def gguf(model: Path, cache: Path, weights: str) -> Path:
    """The checkpoint as GGUF (MXFP4 experts, the rest in GGUF_TYPE[weights]), converted once beside it."""
    out = model.parent / f"{model.name}-{GGUF_TYPE[weights]}.gguf"
    if out.is_file():
        return out
    tmp = out.with_name(out.name + ".partial")
    print(f"converting {model} to {out}", flush=True)
    subprocess.run([sys.executable, str(HERE / "llamacpp_convert.py"), str(llama_source(cache)), str(model),
                    str(tmp), GGUF_TYPE[weights]], check=True)
    tmp.rename(out)
    return out


def run_llama(exe: Path, model: Path, tests: list[str], threads: int) -> dict[str, float]:
    """tok/s of each test, one llama-bench process per test (one repetition each)."""
    out = {}
    for name in tests:
        p, n, d = TESTS[name]
        cmd = [str(exe), "-m", str(model), "-t", str(threads), "-r", "1", "-o", "json",
               "-p", str(p), "-n", str(n), "-d", str(d)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows = json.loads(res.stdout)
        out[name] = float(rows[0]["avg_ts"])
    return out


def run_ours(model: Path, tests: list[str], threads: int, weights: str, attention: str = "plain") -> dict[str, float]:
    """tok/s of each test in a fresh process (``--worker``); also its peak RSS under "peak RSS GB"."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--model", str(model), "--threads",
           str(threads), "--weights", weights, "--tests", ",".join(tests), "--attention", attention]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"our worker failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def worker(model: Path, tests: list[str], threads: int, weights: str, attention: str = "plain") -> None:
    """Measure our engine; print one JSON line {test: tok/s, "peak RSS GB": ...}."""
    import torch
    from speed import peak_rss_gb, tokens

    from ossagent.model.engine import Engine, set_attention
    from ossagent.model.kernels.accelerate import accelerate
    from ossagent.model.loader import load_model

    m = load_model(model, device="cpu", weights=weights)
    accelerate(m, threads=threads or None)  # 0: our default, the thread count follows the load
    set_attention(m, attention)
    engine = Engine(m, max_len=8192 + 2 * TG, chunk_size=512)
    vocab = engine.model.config.vocab_size
    out: dict[str, float] = {}
    for name in tests:
        p, n, d = TESTS[name]
        engine.reset()
        context = tokens(d, 1, vocab)
        if context:
            engine.prefill(context)
        if n:  # decode n tokens greedily after the context (or after one token)
            logits = engine.prefill([*context, 1])
            t0 = time.perf_counter()
            for _ in range(n):
                logits = engine._feed([int(torch.argmax(logits))])
            out[name] = n / (time.perf_counter() - t0)
        else:  # p new prompt tokens after the context
            prompt = [*context, *tokens(p, 2, vocab)]
            t0 = time.perf_counter()
            engine.prefill(prompt)
            assert engine.cache_stats.computed_tokens == p
            out[name] = p / (time.perf_counter() - t0)
    out["peak RSS GB"] = peak_rss_gb()
    out["threads at end"] = torch.get_num_threads()
    print(json.dumps(out), flush=True)


def measure(args: argparse.Namespace, exe: Path, tests: list[str]) -> list[dict[str, object]]:
    """Alternate llama.cpp and ours (the order flips every repetition); one record per run."""
    records: list[dict[str, object]] = []
    for rep in range(args.reps):
        for weights in args.weights:
            sides = ["llama.cpp", "ours"] if rep % 2 == 0 else ["ours", "llama.cpp"]
            for side in sides:
                load0 = os.getloadavg()[0]
                t0 = time.time()
                if side == "ours":
                    got = run_ours(args.model, tests, args.ours_threads, weights, args.attention)
                else:
                    got = run_llama(exe, gguf(args.model, args.cache, weights), tests, args.threads)
                rec = {"rep": rep, "weights": weights, "side": side, "load_before": load0,
                       "load_after": os.getloadavg()[0], "seconds": time.time() - t0, **got}
                records.append(rec)
                print(json.dumps(rec), flush=True)
    return records


def table(records: list[dict[str, object]], tests: list[str], weights: list[str]) -> str:
    def med(side: str, w: str, key: str) -> float:
        vals = [float(r[key]) for r in records if r["side"] == side and r["weights"] == w and key in r]  # type: ignore[arg-type]
        return statistics.median(vals) if vals else float("nan")

    rest = {"bf16": "bf16 rest", "int8": "8-bit rest (llama.cpp Q8_0)"}
    lines = [f"| {'figure (tok/s)':<44} | {'ours':>7} | {'llama.cpp':>9} | {'ratio':>6} |",
             f"|{'-' * 46}|{'-' * 9}|{'-' * 11}|{'-' * 8}|"]
    for w in weights:
        for name in tests:
            ours, theirs = med("ours", w, name), med("llama.cpp", w, name)
            lines.append(f"| {name + ', ' + rest[w]:<44} | {ours:>7.2f} | {theirs:>9.2f} | {ours / theirs:>5.2f}x |")
        lines.append(f"| {'our peak RSS GB, ' + rest[w]:<44} | {med('ours', w, 'peak RSS GB'):>7.2f} | "
                     f"{'':>9} | {'':>6} |")
    loads = [float(r[k]) for r in records for k in ("load_before", "load_after")]  # type: ignore[arg-type]
    lines.append(f"\nload average (1 min) around the runs: min {min(loads):.2f}, median "
                 f"{statistics.median(loads):.2f}, max {max(loads):.2f} (2 cores)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEFAULT, help="the random gpt-oss-20b checkpoint folder")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp's -t")
    ap.add_argument("--ours-threads", type=int, default=0,
                    help="ours: 0 (default) picks the count from the load, as the engine does; N fixes it")
    ap.add_argument("--tests", default=",".join(t for t in TESTS if t != "decode@0"), help=f"comma-separated subset of: {', '.join(TESTS)}")
    ap.add_argument("--weights", default="bf16,int8", help="bf16, int8 or both (llama.cpp: bf16 / Q8_0)")
    ap.add_argument("--attention", choices=("plain", "fused"), default="plain",
                    help="our prefill attention path (ossagent.model.engine.set_attention)")
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    tests = [t.strip() for t in args.tests.split(",") if t.strip()]
    unknown = [t for t in tests if t not in TESTS]
    if unknown:
        ap.error(f"unknown tests {unknown}; choose from {list(TESTS)}")
    if args.worker:
        worker(args.model, tests, args.threads, args.weights, args.attention)
        return
    args.weights = [w.strip() for w in args.weights.split(",")]
    if any(w not in GGUF_TYPE for w in args.weights):
        ap.error("--weights takes bf16 and/or int8")
    ensure_checkpoint(args.model)
    exe = llama_bench(args.cache)
    for w in args.weights:
        gguf(args.model, args.cache, w)
    records = measure(args, exe, tests)
    ours_t = args.ours_threads or "load-following (up to all cores)"
    print(f"\ngpt-oss-20b random weights, MXFP4 experts, llama.cpp -t {args.threads}, ours {ours_t} threads, "
          f"llama-cpp-python "
          f"{LLAMA_CPP_PYTHON}'s llama.cpp; medians of {args.reps} alternating runs\n")
    print(table(records, tests, args.weights))


if __name__ == "__main__":
    main()
