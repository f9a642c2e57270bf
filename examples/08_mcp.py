"""08 - An MCP server as tools: `ossagent run --mcp "units=python examples/mcp_units_server.py"`.

The server runs under the sandbox (no network, the workspace visible); its tools become the `units`
namespace; the arguments the model writes are grammar-constrained by the tool's input schema. MCP calls ask
for approval by default: on a terminal you are asked y/n/always; here `--approve all` says yes.

Run: python examples/08_mcp.py        (uses OSSAGENT_MODEL when set, else a scripted model)
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from ossagent.agent.backends.discovery import find_model
from ossagent.agent.cli.main import main as ossagent
from ossagent.agent.settings import Settings

SERVER = Path(__file__).with_name("mcp_units_server.py")
SCRIPT = [
    "<|channel|>analysis<|message|>Convert with the units tool.<|end|>"
    "<|start|>assistant<|channel|>commentary to=units.convert <|constrain|>json<|message|>"
    '{"value":42.195,"source":"km","target":"mi"}<|call|>',
    "<|channel|>final<|message|>A marathon (42.195 km) is about 26.2 miles.<|return|>",
]


def main(use_model: bool = True, workspace: Path | None = None) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        ws = workspace or Path(tmp)
        argv = ["run", "How many miles is a marathon?", "--mcp", f"units={sys.executable} {SERVER}",
                "--approve", "all", "--workspace", str(ws), "--transcript", str(ws / "run.jsonl")]
        if not (use_model and find_model(Settings.from_env())):
            script = ws / "script.json"
            script.write_text(json.dumps(SCRIPT))
            argv += ["--scripted", str(script)]
        return ossagent(argv)


if __name__ == "__main__":
    raise SystemExit(main())
