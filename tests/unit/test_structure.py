"""The shape of the code, kept so: no import loop in src/cove (type-only
imports count: a loop there is a loop in the design), no module over 800
lines, no mixin classes in the engine."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PKG = SRC / "cove"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _imports(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The cove modules ``name`` imports (a name taken from a package is an
    edge to its submodule when there is one, else to the package)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("cove"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:
                    out.add(sub)
                elif target in known:
                    out.add(target)
    out.discard(name)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_loops() -> None:
    known = _modules()
    graph = {name: _imports(path, name, known) for name, path in known.items()}
    # A package's __init__ re-exports its modules; an edge from a module of
    # the package back to its own __init__ would be the loop, so it is kept.
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_over_800_lines() -> None:
    long = {str(p.relative_to(SRC)): n for p in PKG.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 800}
    assert long == {}


def test_no_mixins_in_the_engine() -> None:
    mixins = [f"{p.name}:{node.name}" for p in (PKG / "engine").rglob("*.py")
              for node in ast.walk(ast.parse(p.read_text()))
              if isinstance(node, ast.ClassDef)
              and (node.name.endswith("Mixin") or node.name == "EngineCore")]
    assert mixins == []


def test_test_module_names_are_unique() -> None:
    """pytest imports test modules by basename (no packages under tests/):
    two files of one name in unit/, integration/ and conformance/ stop the
    whole run at collection."""
    root = Path(__file__).resolve().parent.parent
    seen: dict[str, str] = {}
    clashes = []
    for path in sorted(root.glob("*/test_*.py")):
        if path.name in seen:
            clashes.append(f"{seen[path.name]} and {path.parent.name}/{path.name}")
        seen[path.name] = f"{path.parent.name}/{path.name}"
    assert not clashes, clashes
