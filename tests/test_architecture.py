"""The layers point one way and no module imports itself round a circle.

Every module of the project's packages is parsed with ``ast`` (nothing is imported); every ``import`` statement
counts, also those inside functions (a lazy import is still a dependency).  ``import a.b.c`` and
``from a.b import c`` are edges to the deepest project module they name; the implicit import of parent packages
is not an edge (every submodule depends on its package's ``__init__``, which is not a design choice).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bmi_dhydro", "coupler", "dhydro")


def module_files(root: Path = ROOT, packages=PACKAGES) -> dict[str, Path]:
    mods = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _resolve(name: str, mods) -> str | None:
    """The deepest project module that ``name`` (dotted) names or lies in."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in mods:
            return cand
        parts.pop()
    return None


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        package = mod if is_pkg else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in mods else stem for a in node.names]
            for t in targets:
                dep = _resolve(t, mods)
                if dep is not None and dep != mod:
                    graph[mod].add(dep)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer_violations(graph, lower: str, upper: str) -> list[str]:
    """Modules of package ``lower`` that import a module of package ``upper``."""
    def top(m: str) -> str:
        return m.split(".")[0]

    return sorted(f"{m} imports {d}" for m, deps in graph.items() if top(m) == lower for d in deps if top(d) == upper)


@pytest.fixture(scope="module")
def graph():
    return import_graph(module_files())


def test_the_graph_sees_the_packages(graph):
    # a parser that found nothing would pass every check below
    assert {"bmi_dhydro.bmi", "bmi_dhydro.physics.hbv", "coupler.run", "coupler.mpirun", "dhydro.cli"} <= set(graph)
    assert "bmi_dhydro.stepper" in graph["bmi_dhydro.bmi"]
    assert "coupler.loop" in graph["coupler.mpirun"]


def test_the_model_package_does_not_import_the_coupler_or_the_cli(graph):
    assert layer_violations(graph, "bmi_dhydro", "coupler") == []
    assert layer_violations(graph, "bmi_dhydro", "dhydro") == []
    assert layer_violations(graph, "coupler", "dhydro") == []


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_the_checks_can_fail(tmp_path):
    """A circle and an upward import planted in a scratch copy of the layout are found."""
    for pkg, files in {
        "bmi_dhydro": {"__init__.py": "", "a.py": "from .b import x\n", "b.py": "def f():\n    from . import a\n",
                       "c.py": "def g():\n    from coupler.run import run\n"},
        "coupler": {"__init__.py": "", "run.py": "import bmi_dhydro.c\n"},
        "dhydro": {"__init__.py": ""},
    }.items():
        (tmp_path / pkg).mkdir()
        for name, text in files.items():
            (tmp_path / pkg / name).write_text(text)
    g = import_graph(module_files(tmp_path))
    assert cycles(g) == [["bmi_dhydro.a", "bmi_dhydro.b"], ["bmi_dhydro.c", "coupler.run"]]
    assert layer_violations(g, "bmi_dhydro", "coupler") == ["bmi_dhydro.c imports coupler.run"]


def test_no_native_source_in_python_strings():
    """C/C++ lives in its own files (bmi_dhydro/physics/csrc), where compilers and linters can read it."""
    marks = ("#include <", 'extern "C"')
    found = []
    for mod, path in module_files().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and any(m in node.value for m in marks):
                found.append(f"{mod}:{node.lineno}")
    assert found == []
