"""Memory figures the benchmark scripts share (imported as a sibling module: scripts run from this folder)."""

from __future__ import annotations

from pathlib import Path


def peak_rss_gb() -> float:
    """This process's peak resident set (VmHWM) in GB; touched file-backed mmap pages (the weights) count."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    return float("nan")
