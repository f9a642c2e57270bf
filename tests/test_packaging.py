"""The package layout: every sub-package installed, and dependencies pointing one way."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("agent", "model", "tools", "sandbox")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _packages_on_disk() -> set[str]:
    found = set()
    for part in PARTS:
        for init in (ROOT / part).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT).parts
            found.add(".".join(("ossagent", *rel)))
    return found


def test_every_subpackage_is_listed() -> None:
    cfg = _pyproject()["tool"]["setuptools"]
    listed = set(cfg["packages"])
    missing = _packages_on_disk() - listed
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    stale = listed - _packages_on_disk()
    assert not stale, f"listed but no folder with __init__.py: {sorted(stale)}"
    for part in PARTS:
        assert cfg["package-dir"][f"ossagent.{part}"] == part


def _imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _part_of(module: str) -> str | None:
    bits = module.split(".")
    return bits[1] if len(bits) > 1 and bits[0] == "ossagent" and bits[1] in PARTS else None


FORBIDDEN = {"model": {"agent", "tools", "sandbox"}, "sandbox": {"agent", "tools", "model"}, "tools": {"agent"}}


def test_dependency_direction() -> None:
    bad = []
    for part, banned in FORBIDDEN.items():
        for py in (ROOT / part).rglob("*.py"):
            for mod in _imports(py, top_level_only=False):
                if _part_of(mod) in banned:
                    bad.append(f"{py.relative_to(ROOT)} imports {mod}")
    assert not bad, bad


def test_relative_imports_are_not_used() -> None:
    bad = []
    for part in PARTS:
        for py in (ROOT / part).rglob("*.py"):
            tree = ast.parse(py.read_text(encoding="utf-8"))
            bad += [f"{py.relative_to(ROOT)}:{n.lineno}" for n in ast.walk(tree)
                    if isinstance(n, ast.ImportFrom) and n.level > 0]
    assert not bad, f"use absolute imports: {bad}"


def test_agent_does_not_import_torch_at_import_time() -> None:
    """Module-level imports only: torch inside a function (lazily) is fine."""
    bad = []
    for py in (ROOT / "agent").rglob("*.py"):
        tree = ast.parse(py.read_text(encoding="utf-8"))
        for node in tree.body:
            mods: list[str] = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            bad += [f"{py.relative_to(ROOT)}: {m}" for m in mods if m.split(".")[0] == "torch"]
    assert not bad, bad


def test_agent_import_does_not_load_torch_transitively() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pkgutil, importlib, ossagent.agent as a\n"
        "for m in pkgutil.walk_packages(a.__path__, 'ossagent.agent.'):\n"
        "    importlib.import_module(m.name)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", "importing ossagent.agent pulled in torch"


def test_required_folders_exist() -> None:
    for folder in ("tests", "examples", "benchmarks", ".ci"):
        assert (ROOT / folder).is_dir(), folder
    assert (ROOT / ".ci" / "run").stat().st_mode & 0o111
