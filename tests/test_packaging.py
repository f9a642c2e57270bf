"""The package layout: every sub-package installed, and dependencies pointing one way."""

from __future__ import annotations

import ast
import re
import subprocess
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


def _module_name(py: Path) -> str:
    rel = py.relative_to(ROOT).with_suffix("").parts
    return ".".join(("ossagent", *(rel[:-1] if rel[-1] == "__init__" else rel)))


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of a module but those under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def _import_graph() -> dict[str, set[str]]:
    """Module -> the ossagent modules it imports when it runs, at any depth of its code (lazy imports included:
    a cycle through a function-level import is still a cycle in the design; annotation-only imports are not)."""
    modules = {_module_name(py): py for part in PARTS for py in (ROOT / part).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, py in modules.items():
        edges: set[str] = set()
        for node in _runtime_nodes(ast.parse(py.read_text(encoding="utf-8"), str(py))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module in modules:
                # ``from ossagent.agent import prompt`` names a module: the edge goes to it, not to the package
                subs = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
                edges.update(subs)
                if len(subs) < len(node.names):
                    edges.add(node.module)
        graph[name] = edges - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                scc = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    scc.append(top)
                    if top == node:
                        break
                if len(scc) > 1:
                    out.append(sorted(scc))
    return out


def test_no_import_cycles() -> None:
    cycles = _cycles(_import_graph())
    assert not cycles, f"modules that import each other (directly or around a loop): {cycles}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    graph = _import_graph()
    assert "ossagent.agent.prompt" in graph["ossagent.agent.loop"]  # module-valued from-imports count
    assert "ossagent.agent.constrain" in graph["ossagent.agent.grammar_hooks"]  # so do function-level (lazy) imports
    assert "ossagent.model.hooks" not in graph["ossagent.agent.loop"]  # annotation-only imports do not


# a path that starts in this machine's folders: work, root, home/NAME, Users/NAME (not under proc/self)
MACHINE_PATH = re.compile(r"(?<![\w.~/-])/(?:work|root|home/[A-Za-z_][\w-]*|Users/[A-Za-z][\w-]*)/")


def _tree_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file but the usual outputs
        skip = {".git", ".venv", "build", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
        return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]
    return [ROOT / line for line in out if (ROOT / line).is_file()]


def test_no_absolute_machine_paths_in_the_tree() -> None:
    """Code, tests, benchmarks and docs name places relative to the checkout, never this machine's folders."""
    bad = []
    for path in _tree_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary (weights, images)
        bad += [f"{path.relative_to(ROOT)}:{i}: {m.group()}" for i, line in enumerate(text.splitlines(), 1)
                for m in [MACHINE_PATH.search(line)] if m]
    assert not bad, bad


def test_the_machine_path_pattern() -> None:
    # the folders are spelled apart so that this file passes its own test
    work, root, home, users = ("/" + name for name in ("work", "root", "home", "Users"))
    for hit in (f"see {work}/shared/docs", f'"{root}/.ssh"', f"({home}/alice/x)", f"`{users}/bob/code`"):
        assert MACHINE_PATH.search(hit), hit
    etc, tmp = "/" + "etc", "/" + "tmp"
    for miss in (f"/proc/self{root}{etc}/passwd", f"workspace{work}/x", f"~{work}/", f"{etc}/passwd", f"{tmp}/x"):
        assert not MACHINE_PATH.search(miss), miss
