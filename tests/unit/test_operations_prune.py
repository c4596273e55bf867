"""Ended operations are pruned as LXD does (5 s), yet a late ``/wait`` by id
still finds the result, and memory stays bounded."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from test_server_fakes import FakeEngine, run_app

from cove.engine import operations as ops_mod
from cove.engine.operations import Operations
from cove.model.errors import NotFound


def _ended(ops: Operations, n: int) -> list[str]:
    ids = []
    for i in range(n):
        op = ops.run(lambda _op, i=i: i, description="t", background=False)
        assert op.done and op.result == i
        ids.append(op.id)
    return ids


def _age(ops: Operations, seconds: float) -> None:
    """Pretend every ended operation ended ``seconds`` earlier."""
    for op in list(ops._ops.values()) + list(ops._recent.values()):
        if op.done:
            op.updated_at -= seconds


def test_ended_operations_leave_the_list_after_five_seconds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COVE_OPERATIONS_EXPIRY", raising=False)
    ops = Operations()
    ids = _ended(ops, 3)
    assert {o.id for o in ops.all()} == set(ids)
    _age(ops, 4.0)
    assert len(ops.all()) == 3  # LXD keeps them 5 s
    _age(ops, 1.5)
    assert ops.all() == []
    # still answered by id (a slow client's GET .../wait right after the 202)
    assert ops.get(ids[0]).result == 0


@pytest.mark.parametrize(("value", "seconds"), [
    ("2", 2.0), ("0", 0.0), ("0.5", 0.5), ("", 5.0), ("soon", 5.0), ("-1", 5.0), ("inf", 5.0),
    ("nan", 5.0)])
def test_the_five_seconds_are_settable_for_tests(monkeypatch: pytest.MonkeyPatch, value: str,
                                                 seconds: float) -> None:
    monkeypatch.setenv("COVE_OPERATIONS_EXPIRY", value)
    ops = Operations()
    assert ops.listed_after_end == seconds
    _ended(ops, 2)
    if seconds > 0.2:
        _age(ops, seconds - 0.2)
        assert len(ops.all()) == 2
    _age(ops, 0.5)
    assert ops.all() == []


def test_running_operations_are_never_pruned() -> None:
    ops = Operations()
    op = ops.run(lambda _o: time.sleep(0.3), description="slow")
    op.updated_at -= 3600
    assert ops.all() == [op] and ops.get(op.id) is op
    assert op.wait(5)


def test_memory_is_bounded_by_count_and_age(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops_mod, "_RECENT_MAX", 10)
    ops = Operations()
    ids = _ended(ops, 50)
    _age(ops, 6)
    _ended(ops, 1)  # creating one prunes, no reader needed
    assert len(ops._ops) == 1 and len(ops._recent) == 10
    with pytest.raises(NotFound):
        ops.get(ids[0])
    assert ops.get(ids[-1]).result == 49
    _age(ops, 301)
    with pytest.raises(NotFound):
        ops.get(ids[-1])
    assert len(ops._recent) <= 1


Client = TestClient[web.Request, web.Application]


def test_wait_on_an_ended_operation_answers_and_adds_no_listener(tmp_path: Path) -> None:
    fake = FakeEngine(root=tmp_path)
    op = fake.operations.run(lambda _o: None, description="done", background=False)
    before = len(op._listeners)

    async def body(client: Client) -> None:
        for _ in range(20):
            resp = await client.get(f"/1.0/operations/{op.id}/wait?timeout=5")
            assert resp.status == 200
            data: dict[str, Any] = await resp.json()
            assert data["metadata"]["status"] == "Success"

    run_app(fake, body)
    assert len(op._listeners) == before


def test_a_slow_event_listener_holds_a_bounded_buffer() -> None:
    from cove.engine.events import EventBus

    bus = EventBus()
    ops = Operations(on_change=lambda op: bus.publish("operation", op.to_dict()))
    slow = bus.subscribe()  # never reads
    _ended(ops, 600)  # 3 events each (created, started, ended)
    assert len(slow.queue) == 1000  # the oldest were dropped, the newest kept
    assert slow.drain()[-1]["metadata"]["status"] == "Success"
    slow.close()
    _ended(ops, 10)
    assert len(slow.queue) == 0  # a closed subscription gets nothing
