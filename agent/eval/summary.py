"""The summary of a run: score by effort with a 95% confidence interval, pass@k, tokens, seconds and tool calls
per task, score by group; and two runs side by side.

Confidence interval: with one sample per task and pass/fail scores, the Wilson score interval over the
trials; otherwise the normal interval of the mean over tasks (each task's mean over its samples), so samples
of one task are not counted as independent evidence.

pass@k is the unbiased estimator of Chen et al. (2021): for a task with ``n`` samples of which ``c`` passed,
``1 - C(n-c, k) / C(n, k)`` (the chance that k samples drawn without replacement include a pass), averaged
over tasks; it needs ``n >= k``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

Z95 = 1.959963984540054


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimate for one task: ``n`` samples, ``c`` of them correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    # 1 - C(n-c, k) / C(n, k) as a product, which stays exact in floating point for large n
    prob_all_fail = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_fail *= 1.0 - k / i
    return 1.0 - prob_all_fail


def wilson(passed: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = passed / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(values: Sequence[float], z: float = Z95) -> tuple[float, float]:
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    m = sum(values) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    half = z * sd / math.sqrt(n)
    return (max(0.0, m - half), min(1.0, m + half))


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def _cell(records: list[dict[str, Any]], ks: Sequence[int]) -> dict[str, Any]:
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_task[r["task"]].append(r)
    task_means = [_mean([float(r["score"]) for r in rs]) for rs in by_task.values()]
    binary = all(float(r["score"]) in (0.0, 1.0) for r in records)
    samples = {len(rs) for rs in by_task.values()}
    if binary and samples == {1}:
        ci = wilson(sum(bool(r["passed"]) for r in records), len(records))
    else:
        ci = mean_interval(task_means)
    n_min = min(samples) if samples else 0
    pass_k = {k: _mean([pass_at_k(len(rs), sum(bool(r["passed"]) for r in rs), k) for rs in by_task.values()])
              for k in ks if 1 <= k <= n_min}

    def per_task(field: str) -> float:
        return _mean([_mean([float(r.get(field) or 0) for r in rs]) for rs in by_task.values()])

    return {"tasks": len(by_task), "trials": len(records), "score": _mean(task_means), "ci": list(ci),
            "pass_at_k": {str(k): v for k, v in pass_k.items()},
            "completion_tokens": per_task("completion_tokens"), "prompt_tokens": per_task("prompt_tokens"),
            "seconds": per_task("seconds"), "tool_calls": per_task("tool_calls"),
            "tool_errors": per_task("tool_errors"), "crashed": sum(1 for r in records if r.get("error"))}


def effort_order(efforts: set[str]) -> list[str]:
    known = ["low", "medium", "high"]
    return [e for e in known if e in efforts] + sorted(efforts - set(known))


def _group_of(record: dict[str, Any], by: str | None) -> str:
    if by is None:
        return str(record.get("group") or "")
    value = (record.get("meta") or {}).get(by)
    return "" if value is None else str(value)


def summarize(records: list[dict[str, Any]], ks: Sequence[int] = (1,), group_by: str | None = None) -> dict[str, Any]:
    """Figures by effort, by group and effort, and overall, from a run's records; ``group_by`` names a field of
    the tasks' ``meta`` to group by instead of their ``group``."""
    efforts = effort_order({r["effort"] for r in records})
    groups = sorted({_group_of(r, group_by) for r in records})
    by_effort = {e: _cell([r for r in records if r["effort"] == e], ks) for e in efforts}
    by_group: dict[str, dict[str, float]] = {}
    for g in groups:
        rows = [r for r in records if _group_of(r, group_by) == g]
        cells = {e: _mean([float(r["score"]) for r in rows if r["effort"] == e]) for e in efforts}
        by_group[g] = {**{e: v for e, v in cells.items() if not math.isnan(v)},
                       "all": _mean([float(r["score"]) for r in rows])}
    return {"efforts": efforts, "by_effort": by_effort, "by_group": by_group, "grouped_by": group_by or "group",
            "all": _cell(records, ks) if records else {}, "trials": len(records)}


# ----------------------------------------------------------------------------------------------- tables


def _pct(v: float | None) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.0%}"


def _ci(ci: Sequence[float]) -> str:
    return "-" if any(math.isnan(x) for x in ci) else f"{ci[0] * 100:.0f}-{ci[1]:.0%}"


def _num(v: float, digits: int = 1) -> str:
    return "-" if math.isnan(v) else f"{v:,.{digits}f}"


def tables(summary: dict[str, Any], title: str = "") -> list[Any]:
    """The summary as rich tables: by effort, then by group when the suite has groups."""
    from rich.table import Table

    ks = sorted({k for c in summary["by_effort"].values() for k in c["pass_at_k"]}, key=int)
    t = Table(title=title or None, title_justify="left",
              caption="per task: completion tokens, seconds, tool calls; crashed: trials that raised",
              caption_justify="left")
    for col in ("effort", "tasks", "score", "95% CI", *(f"pass@{k}" for k in ks), "tokens", "s", "tools",
                "crashed"):
        t.add_column(col, justify="left" if col == "effort" else "right")
    rows = [*summary["by_effort"].items()] + ([("all", summary["all"])] if len(summary["by_effort"]) > 1 else [])
    for name, c in rows:
        t.add_row(name, str(c["tasks"]), _pct(c["score"]), _ci(c["ci"]), *(_pct(c["pass_at_k"].get(k)) for k in ks),
                  _num(c["completion_tokens"], 0), _num(c["seconds"]), _num(c["tool_calls"]), str(c["crashed"]))
    out = [t]
    groups = summary["by_group"]
    if len(groups) > 1 or (groups and next(iter(groups))):
        g = Table(title=f"score by {summary.get('grouped_by', 'group')}", title_justify="left")
        efforts = summary["efforts"]
        g.add_column(summary.get("grouped_by", "group"))
        for e in [*efforts, "all"]:
            g.add_column(e, justify="right")
        for name, cells in groups.items():
            g.add_row(name or "-", *(_pct(cells.get(e)) for e in [*efforts, "all"]))
        out.append(g)
    return out


def markdown(summary: dict[str, Any]) -> str:
    """The group-by-effort table in Markdown (for a README)."""
    efforts = summary["efforts"]
    lines = ["| group | " + " | ".join(efforts) + " | all |", "|---" * (len(efforts) + 2) + "|"]
    for name, cells in summary["by_group"].items():
        lines.append(f"| {name or '-'} | " + " | ".join(_pct(cells.get(e)) for e in [*efforts, "all"]) + " |")
    allc = summary["all"]
    lines.append("| all | " + " | ".join(_pct(summary["by_effort"][e]["score"]) for e in efforts)
                 + f" | **{_pct(allc['score'])}** |")
    return "\n".join(lines)


def compare(a: list[dict[str, Any]], b: list[dict[str, Any]], names: tuple[str, str] = ("A", "B")) -> Any:
    """Two runs side by side, by effort: scores, the change, tasks only one of them passed (paired by trial)."""
    from rich.table import Table

    sa, sb = summarize(a), summarize(b)
    pa, pb = {r["key"]: bool(r["passed"]) for r in a}, {r["key"]: bool(r["passed"]) for r in b}
    effort_of = {r["key"]: r["effort"] for r in a}
    t = Table(title=f"{names[0]} vs {names[1]}", title_justify="left")
    for col in ("effort", f"score {names[0]}", f"score {names[1]}", "change", f"only {names[0]} passed",
                f"only {names[1]} passed", "shared trials", f"tokens/task {names[0]}", f"tokens/task {names[1]}"):
        t.add_column(col, justify="left" if col == "effort" else "right")
    for e in effort_order(set(sa["efforts"]) | set(sb["efforts"])):
        ca, cb = sa["by_effort"].get(e), sb["by_effort"].get(e)
        shared = [k for k in pa if k in pb and effort_of[k] == e]
        va, vb = (ca or {}).get("score", math.nan), (cb or {}).get("score", math.nan)
        change = "-" if math.isnan(va) or math.isnan(vb) else f"{(vb - va) * 100:+.0f} pts"
        t.add_row(e, _pct(va), _pct(vb), change, str(sum(pa[k] and not pb[k] for k in shared)),
                  str(sum(pb[k] and not pa[k] for k in shared)), str(len(shared)),
                  _num((ca or {}).get("completion_tokens", math.nan), 0),
                  _num((cb or {}).get("completion_tokens", math.nan), 0))
    return t
