"""Imports between the project's modules go one way: no cycles, and ``retrieval`` never imports back into ``hrpo``.

The graph is read from the source files with :mod:`ast` (nothing is imported), under the names the modules have
once installed: ``hrpo/x.py`` is ``hrpo.x``, ``retrieval/x.py`` is ``hrpo.retrieval.x``, ``tasks/x.py`` is
``hrpo.tasks.x`` (pyproject's ``package-dir``). Every import counts, also one inside a function: a lazy import
only hides a cycle, it does not remove it. An import of the checkout-only name ``retrieval.x`` counts as
``hrpo.retrieval.x``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# repository folder -> the package it installs as
PACKAGES = {"hrpo": "hrpo", "retrieval": "hrpo.retrieval", "tasks": "hrpo.tasks"}


def module_files() -> dict[str, Path]:
    """Installed module name -> source file, for every ``.py`` of the packaged folders."""
    modules = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def _absolute(name: str) -> str:
    return "hrpo." + name if name == "retrieval" or name.startswith("retrieval.") else name


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules that ``module`` imports anywhere in its source."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [_absolute(alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = _absolute(node.module)
            # `from pkg import sub` imports the module pkg.sub when there is one, else a name of pkg
            targets = [f"{name}.{a.name}" if f"{name}.{a.name}" in known else name for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import hrpo.x.y` of a non-module: its nearest module
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {module: imports_of(module, path, set(files)) for module, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None (depth-first search with colours)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert "hrpo.retrieval.corpus" in graph["hrpo.retrieval.index"]  # relative `from .corpus import`
    assert "hrpo.retrieval.search" in graph["hrpo.commands.retrieval"]  # inside a function
    assert "hrpo.leaderboard" in graph["hrpo.leaderboard_render"]  # `from hrpo.leaderboard import (...)`
    assert "hrpo.tasks.utils" in graph and "hrpo.prompts" in graph["hrpo.tasks.utils"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", sorted(m for m in module_files() if m.startswith("hrpo.retrieval")))
def test_retrieval_never_imports_the_rest_of_hrpo(module):
    outside = {m for m in import_graph()[module] if not m.startswith("hrpo.retrieval")}
    assert not outside, f"{module} imports {sorted(outside)}; pass paths or values in from hrpo instead"


def test_library_modules_never_import_the_commands():
    graph = import_graph()
    for module, targets in graph.items():
        if not module.startswith(("hrpo.commands", "hrpo.cli", "hrpo.eval", "hrpo.train")):
            commands = sorted(t for t in targets if t.startswith("hrpo.commands") or t == "hrpo.cli")
            assert not commands, f"{module} imports the command layer: {commands}"


def test_only_the_demo_imports_the_test_helpers():
    """hrpo.testing (tiny models, scripted LMs) is for tests, benchmarks and the demo's smoke run only."""
    importers = sorted(m for m, targets in import_graph().items() if "hrpo.testing" in targets)
    assert importers == ["hrpo.demo"], f"library modules importing hrpo.testing: {importers}"
