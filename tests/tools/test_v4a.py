"""V4A parsing and application, differentially against difflib: any edit, written as a V4A patch, applies."""

from __future__ import annotations

import difflib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ossagent.tools.v4a import PatchError, apply_hunks, parse_patch, plan_patch


def v4a_from_difflib(path: str, old: list[str], new: list[str]) -> str:
    out = ["*** Begin Patch", f"*** Update File: {path}"]
    for group in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_grouped_opcodes(2):
        out.append("@@")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out += [" " + x for x in old[i1:i2]]
            else:
                out += ["-" + x for x in old[i1:i2]] + ["+" + x for x in new[j1:j2]]
    out.append("*** End Patch")
    return "\n".join(out)


unique_lines = st.lists(st.integers(0, 10_000), unique=True, max_size=30).map(lambda xs: [f"l{x} = {x}" for x in xs])


@settings(max_examples=150, deadline=None)
@given(old=unique_lines, new=unique_lines)
def test_difflib_patches_apply(old: list[str], new: list[str]) -> None:
    if old == new:
        return
    text = "".join(x + "\n" for x in old)
    actions = parse_patch(v4a_from_difflib("f.py", old, new))
    result = plan_patch(actions, lambda p: text if p == "f.py" else None)
    assert result == {"f.py": "".join(x + "\n" for x in new)}


def test_header_seeks_and_eof_anchors() -> None:
    text = "def a():\n    return 0\n\ndef b():\n    return 0\n"
    patch = "*** Begin Patch\n*** Update File: x\n@@ def b():\n-    return 0\n+    return 1\n*** End Patch"
    (action,) = parse_patch(patch)
    assert apply_hunks(text, action.hunks, "x") == "def a():\n    return 0\n\ndef b():\n    return 1\n"
    patch = "*** Begin Patch\n*** Update File: x\n     return 0\n+# end\n*** End of File\n*** End Patch"
    (action,) = parse_patch(patch)
    assert apply_hunks(text, action.hunks, "x").endswith("    return 0\n# end\n")


def test_no_trailing_newline_is_kept() -> None:
    (action,) = parse_patch("*** Begin Patch\n*** Update File: x\n-a\n+b\n*** End Patch")
    assert apply_hunks("a", action.hunks, "x") == "b"


@pytest.mark.parametrize(("patch", "message"), [
    ("*** Update File: x\n*** End Patch", "must start with"),
    ("*** Begin Patch\n*** Update File: x", "must end with"),
    ("*** Begin Patch\n*** Update File: x\n*** Update File: x\n*** End Patch", "more than one action"),
    ("*** Begin Patch\n*** Add File: x\nno plus\n*** End Patch", "must start with '+'"),
    ("*** Begin Patch\n*** Delete File: x\n-a\n*** End Patch", "takes no lines"),
    ("*** Begin Patch\n*** Frobnicate: x\n*** End Patch", "expected '*** Add File:'"),
    ("*** Begin Patch\n*** Update File: x\n*** Bogus\n*** End Patch", "unknown directive"),
])
def test_malformed_patches_are_explained(patch: str, message: str) -> None:
    with pytest.raises(PatchError, match=message.replace("*", r"\*").replace("+", r"\+")):
        parse_patch(patch)


def test_crlf_patches_are_accepted() -> None:
    (action,) = parse_patch("*** Begin Patch\r\n*** Add File: x\r\n+hi\r\n*** End Patch\r\n")
    assert action.content == ["hi"]
