"""The evaluation report: rates per family, effort and pair, and shards merged into one report."""

from __future__ import annotations

from typing import Any

from scripts.demo.evaluate import merge, summarize


def _raw(results: list[tuple[str, str, bool]], tokens: int, seconds: float) -> dict[str, Any]:
    return {"results": results, "run_tokens": tokens, "run_seconds": seconds, "prefill_tokens_per_s": 100.0,
            "decode_tokens_per_s": 10.0, "temperature": 0.0, "current_date": "2026-11-30", "failures": []}


def test_rates_and_merged_shards() -> None:
    a = summarize(_raw([("python", "low", True), ("files", "low", False)], 100, 2.0))
    b = summarize(_raw([("python", "high", True), ("python", "low", False)], 300, 2.0))
    assert a["overall"] == 0.5 and a["family"]["python"] == 1.0 and a["effort"]["low"] == 0.5
    m = merge([a, b])
    assert m["n"] == 4 and m["overall"] == 0.5
    assert m["pair"] == {"python/low": 0.5, "files/low": 0.0, "python/high": 1.0}
    assert m["family"]["python"] == 2 / 3 and m["effort"]["high"] == 1.0
    assert m["run_tokens_per_s"] == 100.0  # 400 tokens in 4 s
