"""Operations: results, errors, locks that refuse or wait, events."""

from __future__ import annotations

import threading
import time

import pytest

from cove.engine.events import EventBus
from cove.engine.operations import Operation, Operations
from cove.model.errors import BadRequest, Conflict
from cove.model.states import OperationStatus


def test_operation_success_and_result() -> None:
    ops = Operations()
    op = ops.run(lambda op: 42, description="Answer")
    assert op.wait(5)
    assert op.status is OperationStatus.SUCCESS and op.result == 42
    op.raise_for_error()
    assert ops.get(op.id) is op
    assert op.to_dict()["status_code"] == 200


def test_operation_failure_keeps_error_class() -> None:
    def boom(op: Operation) -> None:
        raise BadRequest("no")

    op = Operations().run(boom, description="Boom")
    op.wait(5)
    assert op.status is OperationStatus.FAILURE and op.err == "no"
    with pytest.raises(BadRequest):
        op.raise_for_error()


def test_unexpected_exception_becomes_internal_error() -> None:
    def boom(op: Operation) -> None:
        raise KeyError("x")

    op = Operations().run(boom, description="Boom")
    op.wait(5)
    assert op.status is OperationStatus.FAILURE and "KeyError" in op.err


def test_lock_conflict_names_the_operation_in_flight() -> None:
    ops = Operations()
    gate = threading.Event()
    first = ops.run(lambda op: gate.wait(5), description="Starting instance", lock="instance:web")
    with pytest.raises(Conflict) as e:
        ops.run(lambda op: None, description="Deleting instance", lock="instance:web")
    assert first.id in str(e.value) and "Starting instance" in str(e.value)
    gate.set()
    first.wait(5)
    ops.run(lambda op: None, description="again", lock="instance:web").wait(5)


def test_several_locks_all_or_none() -> None:
    """A copy holds its source's lock and its target's: when one is taken,
    it holds neither, and when it runs, both are taken until it ends."""
    ops = Operations()
    gate = threading.Event()
    busy = ops.run(lambda op: gate.wait(5), description="Starting instance",
                   lock="instance:src")
    with pytest.raises(Conflict, match="Starting instance"):
        ops.run(lambda op: None, description="Creating instance",
                lock=("instance:dst", "instance:src"))
    assert ops.holder("instance:dst") is None  # the first one was let go
    gate.set()
    busy.wait(5)
    gate.clear()
    copy = ops.run(lambda op: gate.wait(5), description="Creating instance",
                   lock=("instance:dst", "instance:src"))
    assert ops.holder("instance:dst") is copy and ops.holder("instance:src") is copy
    gate.set()
    copy.wait(5)
    assert ops.holder("instance:dst") is None and ops.holder("instance:src") is None


def test_lock_waits_when_asked() -> None:
    ops = Operations()
    order: list[str] = []

    def slow(op: Operation) -> None:
        time.sleep(0.2)
        order.append("first")

    ops.run(slow, description="first", lock="k")
    second = ops.run(lambda op: order.append("second"), description="second", lock="k",
                     wait_for_lock=5)
    second.wait(5)
    assert order == ["first", "second"]


def test_lock_is_free_when_waiters_wake() -> None:
    """A client that waited for an operation may act on its instance at once:
    whoever hears that it finished (waiters, event listeners) finds the lock
    released."""
    seen: list[object] = []

    def on_change(op: Operation) -> None:
        if op.status in (OperationStatus.SUCCESS, OperationStatus.FAILURE):
            seen.append(ops.holder("instance:web"))

    ops = Operations(on_change=on_change)
    op = ops.run(lambda op: None, description="Stop", lock="instance:web")
    assert op.wait(5) and ops.holder("instance:web") is None
    failed = ops.run(lambda op: 1 / 0, description="Boom", lock="instance:web")
    assert failed.wait(5) and ops.holder("instance:web") is None
    assert failed.status is OperationStatus.FAILURE
    assert seen == [None, None]


def test_a_create_that_finds_the_name_taken_takes_no_lock() -> None:
    """Two creates of one name, the second checked (by the caller) before the
    first made its row and locked after the first let go: the check runs again
    as the lock is taken, so the second fails there, holding nothing, and the
    maker's start right after its create is not refused as busy."""
    ops = Operations()
    rows: set[str] = set()

    def free() -> None:
        if "web" in rows:
            raise Conflict("Instance 'web' already exists")

    free()  # the second create's early check: the name is still free
    ops.run(lambda op: rows.add("web"), description="Creating instance",
            lock="instance:web", check=free).wait(5)
    before = len(ops.all())
    with pytest.raises(Conflict, match="already exists"):
        ops.run(lambda op: None, description="Creating instance", lock="instance:web",
                check=free)
    assert ops.holder("instance:web") is None and len(ops.all()) == before
    gate = threading.Event()
    start = ops.run(lambda op: gate.wait(5), description="Starting instance",
                    lock="instance:web")
    with pytest.raises(Conflict, match="Starting instance"):  # a lock held still refuses
        ops.run(lambda op: None, description="Creating instance", lock="instance:web",
                check=free)
    gate.set()
    assert start.wait(5) and start.status is OperationStatus.SUCCESS


def test_unknown_operation_is_not_found() -> None:
    from cove.model.errors import NotFound
    with pytest.raises(NotFound):
        Operations().get("nope")


def test_events_report_operation_changes() -> None:
    bus = EventBus()
    sub = bus.subscribe({"operation"})
    ops = Operations(on_change=lambda op: bus.publish("operation", op.to_dict()))
    ops.run(lambda op: op.progress("Unpacking", 50), description="x").wait(5)
    events = sub.drain()
    statuses = [e["metadata"]["status"] for e in events]
    assert statuses[0] == "Running" and statuses[-1] == "Success"
    assert any((e["metadata"]["metadata"] or {}).get("progress", {}).get("percent") == "50"
               for e in events)
    sub.close()
    bus.publish("operation", {})
    assert sub.drain() == []


def test_instance_locks_go_when_nobody_holds_them() -> None:
    """Each launch brings a new name: its lock must not outlive its use."""
    import threading

    from cove.engine._runs import RunTable

    runs = RunTable()
    for i in range(100):
        with runs.mutex(f"c{i}"), runs.mutex(f"c{i}"):  # re-entrant
            assert runs.mutexes() == 1
    assert runs.mutexes() == 0
    held, release, order = threading.Event(), threading.Event(), []

    def holder() -> None:
        with runs.mutex("web"):
            held.set()
            release.wait(5)
            order.append("first")

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    def waiter() -> None:
        with runs.mutex("web"):
            order.append("second")

    w = threading.Thread(target=waiter)
    w.start()
    release.set()
    t.join(5)
    w.join(5)
    assert order == ["first", "second"]  # the waiter got the same lock, after the holder
    assert runs.mutexes() == 0


def test_progress_as_lxd_reports_it() -> None:
    """``metadata.progress`` and one ``<stage>_progress`` line (what ``lxc`` prints)."""
    ops = Operations()

    def work(op: Operation) -> None:
        op.progress("Copying files", 10, "1 of 10 bytes")
        op.progress("Starting instance")

    op = ops.run(work, description="x")
    op.wait(5)
    assert op.metadata["progress"] == {"stage": "Starting instance"}
    assert op.metadata["starting_instance_progress"] == "Starting instance"
    assert not any(k == "copying_files_progress" for k in op.metadata)
