"""The special-token ids: spelled out once (agent/harmony/tokens.py), and right for the tokenizer."""

from __future__ import annotations

import re
from pathlib import Path

from ossagent.agent.harmony import tokens
from ossagent.model.tokenizer import o200k_harmony

AGENT = Path(__file__).resolve().parents[2] / "agent"


def test_ids_match_the_tokenizer() -> None:
    enc = o200k_harmony()
    for token_id, name in tokens.NAMES.items():
        assert enc.encode_single_token(name) == token_id, name
    assert {tokens.RETURN, tokens.CALL} == set(tokens.STOPS)
    assert tokens.NAMES[tokens.START] == "<|start|>" and tokens.NAMES[tokens.CALL] == "<|call|>"


def test_no_other_agent_module_spells_out_a_special_id() -> None:
    special = re.compile(r"\b(199_?99[89]|20\d_?\d{3})\b")  # 199998..201088 written as a literal
    bad = [f"{py.relative_to(AGENT.parent)}:{i}" for py in AGENT.rglob("*.py") if py.name != "tokens.py"
           for i, line in enumerate(py.read_text(encoding="utf-8").splitlines(), 1)
           if (m := special.search(line)) and 199_998 <= int(m.group().replace("_", "")) <= 201_088]
    assert not bad, f"import the id from ossagent.agent.harmony.tokens instead: {bad}"
