"""coved's snapshot scheduler: ``snapshots.schedule`` and ``snapshots.expiry``.

Design note: one daemon thread wakes every ``interval`` seconds (30 by
default; ``COVE_SNAPSHOT_TICK`` for tests) and, once per wall-clock minute,
takes the snapshots whose schedule is due (``cove.model.schedule``) of
running instances, and of stopped ones with ``snapshots.schedule.stopped``
true, as LXD does. Every tick it deletes the snapshots whose ``expires_at``
has passed. Each is an ordinary operation of the snapshots service (it
shows in ``/1.0/operations`` and takes the instance's lock); one that
cannot run now (the instance is busy) is logged and left to the next tick
(an expired snapshot) or the next due minute (a scheduled one). A minute
coved was down for is not made up.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from cove.model.config import truthy
from cove.model.errors import CoveError
from cove.model.projects import split_key
from cove.model.records import Instance
from cove.model.schedule import due
from cove.model.states import Status
from cove.store import Store

__all__ = ["SnapshotJobs", "SnapshotScheduler"]

log = logging.getLogger("cove.engine")


class SnapshotJobs(Protocol):
    """What the scheduler starts (the snapshots service)."""

    def create(self, name: str, snapshot: str | None = None, *,
               project: str = "default") -> Any:
        """Start taking a snapshot. Raises CoveError."""
        ...

    def delete(self, name: str, snapshot: str, *, project: str = "default") -> Any:
        """Start deleting a snapshot. Raises CoveError."""
        ...


class SnapshotScheduler:
    """See module note. ``tick`` is the whole of one wake-up (tests call it)."""

    def __init__(self, store: Store, snapshots: SnapshotJobs,
                 expanded_config: Callable[[Instance], dict[str, str]],
                 clock: Callable[[], float] = time.time, interval: float | None = None) -> None:
        self._store = store
        self._snapshots = snapshots
        self._expanded = expanded_config
        self._now = clock
        self._interval = interval if interval is not None else float(
            os.environ.get("COVE_SNAPSHOT_TICK", "30") or 30)
        self._last_minute = -1
        self._startup = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread. Idempotent."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="cove-snapshots",
                                            daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the thread (an operation it started runs on). Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("snapshot scheduler")
            self._stop.wait(self._interval)

    def tick(self) -> list[str]:
        """Expire, and (once per minute) take what is due. Returns what it
        started, as ``created KEY`` / ``expired KEY/SNAP`` lines."""
        now = self._now()
        started = self._expire(now)
        minute = int(now // 60)
        if minute != self._last_minute:
            self._last_minute = minute
            started += self._take_due(time.localtime(now))
            self._startup = False
        return started

    def _expire(self, now: float) -> list[str]:
        out = []
        for snap in self._store.snapshots.all():
            if snap.expires_at and snap.expires_at <= now:
                project, name = split_key(snap.instance)
                try:
                    self._snapshots.delete(name, snap.name, project=project)
                    out.append(f"expired {snap.instance}/{snap.name}")
                except CoveError as e:  # busy or gone: the next tick tries again
                    log.info("expired snapshot %s/%s not deleted yet: %s",
                             snap.instance, snap.name, e)
        return out

    def _take_due(self, tm: time.struct_time) -> list[str]:
        out = []
        for inst in self._store.list_instances():
            config = self._expanded(inst)
            schedule = config.get("snapshots.schedule", "")
            if not schedule or not due(schedule, tm, inst.name, startup=self._startup):
                continue
            if inst.status is Status.STOPPED and \
                    not truthy(config.get("snapshots.schedule.stopped", "false")):
                continue
            project, name = split_key(inst.name)
            try:
                self._snapshots.create(name, None, project=project)
                out.append(f"created {inst.name}")
            except CoveError as e:  # busy, or a bad config left from before
                log.warning("scheduled snapshot of %s not taken: %s", inst.name, e)
        return out
