"""02 - A code-execution assistant: sandboxed Python (stateful, files in /mnt/data) plus the files tool.

Run: python examples/02_code_assistant.py   (needs bubblewrap; uses OSSAGENT_MODEL when set)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console

from ossagent.agent.backends.factory import example_backend
from ossagent.agent.cli.render import EventPrinter
from ossagent.agent.loop import Agent, RunResult
from ossagent.tools.files import FilesTool
from ossagent.tools.python import PythonTool

SCRIPT = [
    "<|channel|>analysis<|message|>Let me load the CSV and compute the mean.<|end|>"
    "<|start|>assistant to=python<|channel|>analysis<|message|>import csv\n"
    "rows = list(csv.DictReader(open('/mnt/data/sales.csv')))\n"
    "total = sum(float(r['amount']) for r in rows)\n"
    "print(len(rows), total, total / len(rows))<|call|>",
    "<|channel|>analysis<|message|>3 rows, mean 20.5. Save a summary.<|end|>"
    "<|start|>assistant to=python<|channel|>analysis<|message|>"
    "open('/mnt/data/summary.txt', 'w').write(f'mean={total / len(rows)}')\nprint(open('/mnt/data/summary.txt').read())"
    "<|call|>",
    "<|channel|>final<|message|>The mean sale is 20.5 over 3 rows; I saved it to summary.txt.<|return|>",
]


def main(use_model: bool = True, workspace: Path | None = None) -> RunResult:
    ws = workspace or Path(tempfile.mkdtemp(prefix="ossagent-ws-"))
    (ws / "sales.csv").write_text("day,amount\nmon,10\ntue,20.5\nwed,31\n")
    backend, _ = example_backend(SCRIPT, use_model=use_model)
    agent = Agent(backend, tools=[PythonTool(ws, timeout=30), FilesTool(ws)], reasoning="low")
    printer = EventPrinter(Console(highlight=False), show_reasoning=True)  # what `ossagent run -v` shows
    try:
        stream = agent.stream("What is the mean sale amount in sales.csv? Save it to summary.txt.")
        for event in stream:
            printer.on(event)
        result = stream.result()
    finally:
        agent.close()
    print("summary.txt:", (ws / "summary.txt").read_text() if (ws / "summary.txt").exists() else "(not written)")
    return result


if __name__ == "__main__":
    main()
