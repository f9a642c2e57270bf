"""Run the harmony differential tests with many more examples than the suite does (minutes, not CI).

    .venv/bin/python scripts/harmony_soak.py [N]     # N render conversations (default 8000), N/2 per parse test

It drives the hypothesis tests of tests/agent/test_harmony_differential.py (their ``inner_test``) under a
larger ``max_examples``, against openai-harmony loaded offline, and prints one line per test.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ossagent.agent.harmony import HarmonyRenderer, Role
from ossagent.model.tokenizer import o200k_harmony, write_o200k_base

ROOT = Path(__file__).resolve().parent.parent


def reference() -> Any:
    folder = tempfile.mkdtemp(prefix="tiktoken-")
    write_o200k_base(folder)
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = folder  # read by openai-harmony's loader
    import openai_harmony as oh

    return oh.load_harmony_encoding(oh.HarmonyEncodingName.HARMONY_GPT_OSS)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    path = ROOT / "tests" / "agent" / "test_harmony_differential.py"
    spec = importlib.util.spec_from_file_location("harmony_differential", path)
    assert spec is not None and spec.loader is not None
    d = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(d)
    enc = o200k_harmony()
    ours, ref = HarmonyRenderer(enc), reference()
    cfg = settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)
    render = d.test_render_matches_reference.hypothesis.inner_test
    parse_ref = d.test_parse_reference_renders_of_assistant_turns.hypothesis.inner_test
    parse_all = d.test_parse_whole_rendered_conversations.hypothesis.inner_test

    @settings(cfg, max_examples=n)
    @given(conv=d.conversation(), next_role=st.sampled_from(list(Role)), drop=st.sampled_from([None, True, False]))
    def soak_render(conv: Any, next_role: Role, drop: bool | None) -> None:
        render(ours, ref, conv, next_role, drop)

    @settings(cfg, max_examples=n // 2)
    @given(msgs=d.assistant_completion())
    def soak_parse_reference(msgs: Any) -> None:
        parse_ref(ours, ref, enc, msgs)

    @settings(cfg, max_examples=n // 2)
    @given(conv=d.conversation())
    def soak_parse_stream(conv: Any) -> None:
        parse_all(ours, enc, conv)

    for test in (soak_render, soak_parse_reference, soak_parse_stream):
        start = time.perf_counter()
        test()
        print(f"{test.__name__}: ok ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
