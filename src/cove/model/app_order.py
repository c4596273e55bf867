"""The order of an app stack: who starts before whom, who stops first.

Pure functions over a dependency graph, ``{key: [Dependency, ...]}`` where
every name is already an instance key (``cove.model.projects``) and the
edges point from a dependent to what it depends on. The engine builds the
graph from the expanded ``cove.depends`` of its instances; the Compose
loader can build it from services. A cycle is an error when the key is set,
so the solvers below may assume none (``find_cycle`` checks).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cove.model.app_keys import Dependency, parse_depends
from cove.model.errors import BadRequest
from cove.model.projects import instance_key, split_key

__all__ = ["Graph", "closure", "dependents", "find_cycle", "graph_of", "levels",
           "stop_levels"]

Graph = Mapping[str, list[Dependency]]


def graph_of(configs: Mapping[str, Mapping[str, str]]) -> dict[str, list[Dependency]]:
    """The graph of instances keyed by key, from their expanded configs:
    each dependency's name turned into the key in its dependent's project.
    A malformed ``cove.depends`` (set before the key was checked) counts as
    none."""
    out: dict[str, list[Dependency]] = {}
    for key, conf in configs.items():
        project = split_key(key)[0]
        try:
            deps = parse_depends(conf.get("cove.depends", ""))
        except BadRequest:
            deps = []
        out[key] = [Dependency(instance_key(project, d.name), d.condition, d.restart)
                    for d in deps]
    return out


def find_cycle(graph: Graph) -> list[str] | None:
    """A cycle of ``graph`` as ``[a, b, ..., a]``, or None. Edges to keys
    not in ``graph`` are ignored."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(graph, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        color[node] = grey
        stack.append(node)
        for dep in graph.get(node, []):
            c = color.get(dep.name)
            if c == grey:
                return [*stack[stack.index(dep.name):], dep.name]
            if c == white:
                found = visit(dep.name)
                if found:
                    return found
        stack.pop()
        color[node] = black
        return None

    for node in sorted(graph):
        if color[node] == white:
            found = visit(node)
            if found:
                return found
    return None


def closure(graph: Graph, targets: Iterable[str]) -> set[str]:
    """``targets`` and everything they depend on, transitively."""
    seen: set[str] = set()
    todo = list(targets)
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        todo.extend(d.name for d in graph.get(node, []))
    return seen


def levels(graph: Graph, targets: Iterable[str] | None = None) -> list[list[str]]:
    """The start order of ``targets`` (default: all) and their dependencies:
    level 0 depends on nothing, level N only on levels below N; the members
    of one level are independent and may start in parallel. Sorted within a
    level, so the order is deterministic.

    Raises: BadRequest naming the cycle, if there is one.
    """
    cycle = find_cycle(graph)
    if cycle:
        raise BadRequest(f"Dependency cycle: {' -> '.join(split_key(k)[1] for k in cycle)}")
    nodes = closure(graph, graph if targets is None else targets)
    depth: dict[str, int] = {}

    def level(node: str) -> int:
        if node not in depth:
            depth[node] = 1 + max((level(d.name) for d in graph.get(node, [])), default=-1)
        return depth[node]

    out: list[list[str]] = []
    for node in sorted(nodes):
        n = level(node)
        while len(out) <= n:
            out.append([])
        out[n].append(node)
    return [sorted(lv) for lv in out]


def dependents(graph: Graph, key: str, *, transitive: bool = False) -> set[str]:
    """The keys that depend on ``key`` (directly, or also through others)."""
    direct = {k for k, deps in graph.items() if any(d.name == key for d in deps)}
    if not transitive:
        return direct
    seen: set[str] = set()
    todo = list(direct)
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(dependents(graph, node))
    return seen


def stop_levels(graph: Graph, key: str) -> list[list[str]]:
    """The dependents of ``key`` (transitively) in the order to stop them:
    the ones nothing else of them depends on first; within a level, in
    parallel. ``key`` itself is not included."""
    members = dependents(graph, key, transitive=True)
    sub = {k: [d for d in graph.get(k, []) if d.name in members] for k in members}
    return list(reversed(levels(sub)))
