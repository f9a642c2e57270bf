"""Make the repository root importable: the eval tests share tests/agent/eval/scripts.py and read scripts/demo."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
