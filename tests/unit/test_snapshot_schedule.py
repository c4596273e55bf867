"""When a snapshot schedule is due (cron fields, aliases fixed per
instance), and the scheduler's tick against a real store with a recording
snapshots service."""

from __future__ import annotations

import time
from pathlib import Path

from cove.engine._snapshot_schedule import SnapshotScheduler
from cove.model.records import Instance, Snapshot
from cove.model.schedule import due, expand_alias
from cove.model.states import Status
from cove.store import Store


def _tm(y: int, mo: int, d: int, h: int, mi: int) -> time.struct_time:
    return time.localtime(time.mktime((y, mo, d, h, mi, 0, 0, 0, -1)))


def test_cron_fields() -> None:
    monday_0630 = _tm(2026, 11, 30, 6, 30)  # 2026-11-30 is a Monday
    assert due("30 6 * * *", monday_0630, "x")
    assert not due("31 6 * * *", monday_0630, "x")
    assert due("*/15 * * * *", monday_0630, "x")
    assert not due("*/7 * * * *", monday_0630, "x")
    assert due("0-45/10 6 * * 1-5", monday_0630, "x")
    assert not due("* * * * 0,6", monday_0630, "x")
    assert due("* * * 11 *", monday_0630, "x") and not due("* * * 12 *", monday_0630, "x")
    sunday = _tm(2026, 11, 29, 0, 0)
    assert due("0 0 * * 7", sunday, "x") and due("0 0 * * 0", sunday, "x")
    # day of month and day of week both restricted: either matches (cron's rule)
    assert due("30 6 1 * 1", monday_0630, "x")
    assert due("30 6 30 * 0", monday_0630, "x")
    assert not due("30 6 1 * 0", monday_0630, "x")
    assert due("@never, 30 6 * * *", monday_0630, "x")


def test_aliases_fixed_per_instance() -> None:
    a, b = expand_alias("@hourly", "c1"), expand_alias("@hourly", "c1")
    assert a == b and a.endswith(" * * * *")
    minute = int(a.split()[0])
    assert due("@hourly", _tm(2026, 11, 30, 13, minute), "c1")
    assert not due("@hourly", _tm(2026, 11, 30, 13, (minute + 1) % 60), "c1")
    assert expand_alias("@startup", "c1") == ""
    assert due("@startup", _tm(2026, 11, 30, 13, 0), "c1", startup=True)
    assert not due("@startup", _tm(2026, 11, 30, 13, 0), "c1")


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def create(self, name: str, snapshot: str | None = None, *,
               project: str = "default") -> None:
        self.calls.append(("create", project, name))

    def delete(self, name: str, snapshot: str, *, project: str = "default") -> None:
        self.calls.append(("delete", project, name, snapshot))


def test_tick(tmp_path: Path) -> None:
    store = Store(tmp_path / "cove.db")
    try:
        every = {"snapshots.schedule": "* * * * *"}
        store.add_instance(Instance(name="run", image="f", config=every,
                                    status=Status.RUNNING))
        store.add_instance(Instance(name="off", image="f", config=every))
        store.add_instance(Instance(name="off2", image="f", config={
            **every, "snapshots.schedule.stopped": "true"}))
        store.add_instance(Instance(name="p2_web", image="f", config=every,
                                    status=Status.RUNNING, project="p2"))
        store.add_instance(Instance(name="none", image="f", status=Status.RUNNING))
        store.snapshots.add(Snapshot(instance="run", name="old", dir="d1", expires_at=50.0))
        store.snapshots.add(Snapshot(instance="run", name="keep", dir="d2", expires_at=0.0))
        store.snapshots.add(Snapshot(instance="run", name="later", dir="d3",
                                     expires_at=10_000.0))
        now = [120.0]
        rec = _Recorder()
        sched = SnapshotScheduler(store, rec, lambda i: i.config,
                                  clock=lambda: now[0], interval=1)
        sched.tick()
        assert sorted(rec.calls) == [("create", "default", "off2"),
                                     ("create", "default", "run"),
                                     ("create", "p2", "web"),
                                     ("delete", "default", "run", "old")]
        rec.calls.clear()
        now[0] = 150.0  # same minute: only expiry runs
        sched.tick()
        assert rec.calls == [("delete", "default", "run", "old")]  # (the fake deletes nothing)
    finally:
        store.close()
