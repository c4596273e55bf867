"""The ``cove.*`` app keys: dependencies, probes, durations, restart policies."""

from __future__ import annotations

import pytest

from cove.model.app_keys import (
    Dependency,
    Probe,
    RestartPolicy,
    parse_depends,
    parse_duration,
    parse_probe,
    parse_restart,
)
from cove.model.config import validate_config
from cove.model.errors import BadRequest


def test_depends_conditions_and_restart() -> None:
    got = parse_depends("db, migrate:completed, cache:healthy:restart,q:restart")
    assert got == [Dependency("db"), Dependency("migrate", "completed"),
                   Dependency("cache", "healthy", True), Dependency("q", "ready", True)]
    assert [str(d) for d in got] == ["db", "migrate:completed", "cache:healthy:restart",
                                     "q:restart"]
    assert parse_depends("") == []


@pytest.mark.parametrize("bad", ["a:foo", "a,a", "a:ready:healthy", "../x", "a:restart:restart"])
def test_depends_refused(bad: str) -> None:
    with pytest.raises(BadRequest, match="cove.depends"):
        parse_depends(bad)


def test_probes() -> None:
    assert parse_probe("tcp:5432") == Probe("tcp", port=5432)
    assert parse_probe("http:8080/healthz") == Probe("http", port=8080, path="/healthz")
    assert parse_probe("http:80") == Probe("http", port=80, path="/")
    assert parse_probe("pg_isready -q") == Probe("exec", argv=("pg_isready", "-q"))
    assert str(parse_probe("sh -c 'test -f /x'")) == "sh -c 'test -f /x'"
    for bad in ("tcp:0", "tcp:x", "http:99999/", "", "'unclosed"):
        with pytest.raises(BadRequest):
            parse_probe(bad)


def test_durations() -> None:
    assert parse_duration("1m30s") == 90.0
    assert parse_duration("500ms") == 0.5
    assert parse_duration("10") == 10.0
    assert parse_duration("1h") == 3600.0
    for bad in ("", "10x", "s", "1m 30s", "-1s"):
        with pytest.raises(BadRequest):
            parse_duration(bad)


def test_restart() -> None:
    assert parse_restart("on-failure:3") == RestartPolicy("on-failure", 3)
    assert parse_restart("always") == RestartPolicy("always")
    for bad in ("sometimes", "always:3", "on-failure:x"):
        with pytest.raises(BadRequest):
            parse_restart(bad)


def test_keys_checked_when_set() -> None:
    assert validate_config({"cove.depends": "db", "cove.health.retries": "3"})
    with pytest.raises(BadRequest, match="cove.health.interval"):
        validate_config({"cove.health.interval": "soon"})
