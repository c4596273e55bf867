"""The order solver of app stacks (``cove.model.app_order``)."""

from __future__ import annotations

import pytest

from cove.model.app_keys import Dependency
from cove.model.app_order import closure, dependents, find_cycle, graph_of, levels, stop_levels
from cove.model.errors import BadRequest


def g(**edges: str) -> dict[str, list[Dependency]]:
    """``g(web="api,cache", api="db")``: a graph in cove.depends syntax."""
    return graph_of({k: {"cove.depends": v} for k, v in edges.items()})


def test_levels_of_three_tiers() -> None:
    graph = g(web="api", api="db", db="")
    assert levels(graph) == [["db"], ["api"], ["web"]]


def test_independent_branches_share_a_level() -> None:
    graph = g(web="api,cache", api="db", cache="", db="", worker="db")
    assert levels(graph) == [["cache", "db"], ["api", "worker"], ["web"]]


def test_levels_of_targets_take_only_their_closure() -> None:
    graph = g(web="api", api="db", db="", other="")
    assert levels(graph, ["api"]) == [["db"], ["api"]]
    assert closure(graph, ["web"]) == {"web", "api", "db"}


def test_diamond_is_one_start_of_the_shared_dependency() -> None:
    graph = g(top="left,right", left="base", right="base", base="")
    assert levels(graph) == [["base"], ["left", "right"], ["top"]]


@pytest.mark.parametrize(("edges", "cycle"), [
    ({"a": "a"}, ["a", "a"]),
    ({"a": "b", "b": "a"}, ["a", "b", "a"]),
    ({"a": "b", "b": "c", "c": "a", "d": "a"}, ["a", "b", "c", "a"]),
])
def test_cycles_are_found_and_named(edges: dict[str, str], cycle: list[str]) -> None:
    graph = g(**edges)
    assert find_cycle(graph) == cycle
    with pytest.raises(BadRequest, match=" -> ".join(cycle)):
        levels(graph)


def test_no_cycle_in_a_dag_and_unknown_names_ignored() -> None:
    assert find_cycle(g(a="b,c", b="c", c="")) is None
    assert find_cycle(g(a="missing")) is None


def test_conditions_and_restart_flags_are_kept_on_the_edges() -> None:
    graph = g(web="db:healthy:restart,migrate:completed,cache:started,api")
    assert graph["web"] == [Dependency("db", "healthy", True),
                            Dependency("migrate", "completed", False),
                            Dependency("cache", "started", False),
                            Dependency("api", "ready", False)]


def test_names_become_keys_of_the_dependents_project() -> None:
    graph = graph_of({"dev_web": {"cove.depends": "db"}, "dev_db": {}})
    assert graph["dev_web"] == [Dependency("dev_db")]


def test_a_malformed_value_counts_as_no_dependency() -> None:
    assert graph_of({"a": {"cove.depends": "b:bogus"}}) == {"a": []}


def test_dependents_direct_and_transitive() -> None:
    graph = g(web="api", api="db", worker="db", db="")
    assert dependents(graph, "db") == {"api", "worker"}
    assert dependents(graph, "db", transitive=True) == {"api", "worker", "web"}


def test_stop_levels_put_the_top_first() -> None:
    graph = g(web="api", api="db", worker="db", db="")
    assert stop_levels(graph, "db") == [["web"], ["api", "worker"]]
    assert stop_levels(graph, "web") == []
