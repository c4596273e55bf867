"""The restart policy (``cove.restart``), enforced by coved.

Design note: an instance whose init ended on its own (no operation holds
it, no client asked for the stop) is started again as its policy says:
``always`` and ``unless-stopped`` whatever its exit code, ``on-failure``
on a non-zero one, at most MAX times (``on-failure:MAX``; the count starts
again when a client starts it). An unhealthy one is restarted under any
policy but ``no``. Restarts wait a back-off that doubles from 0.1 s to
30 s and starts again once a run lasted 10 s (Docker's), and no more than
``cove.restart.max_per_minute`` (default 10) happen in any 60 s (Incus'
``boot.autorestart``). A restart is an ordinary start or restart
operation, so what the instance depends on is started first. A client's
stop of an instance waiting out its back-off cancels the restart (as
``docker stop`` of a restarting container): ``cancel``. A stop that comes
while the restart's start is in flight is not refused as busy: it waits
for that start (as LXD's stop waits for a start in flight) and then stops
what it started; a start that had not yet begun its work gives up.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

from cove.engine.operations import Operations
from cove.engine.ports import StackInstances
from cove.model.app_keys import parse_restart
from cove.model.errors import BadRequest, Conflict, CoveError, NotFound
from cove.model.projects import split_key
from cove.model.states import Status
from cove.store import Store

__all__ = ["Restarter"]

log = logging.getLogger("cove.engine")

_BACKOFF_MIN, _BACKOFF_MAX, _RESET_AFTER = 0.1, 30.0, 10.0
_DEFAULT_CAP = 10


class Restarter:
    """Restarts by policy. Thread-safe; every restart runs on its own timer thread."""

    def __init__(self, *, store: Store, instances: StackInstances, operations: Operations,
                 config_of: Callable[[str], dict[str, str] | None],
                 after_restart: Callable[[str], None]) -> None:
        self._store = store
        self._instances = instances
        self._operations = operations
        self._config_of = config_of
        self._after = after_restart  # key: restarted by policy (its dependents' turn)
        self._lock = threading.Lock()
        self._expected: set[str] = set()
        self._failures: dict[str, int] = {}
        self._delay: dict[str, float] = {}
        self._recent: dict[str, collections.deque[float]] = {}
        self._by_policy: set[str] = set()
        self._pending: dict[str, threading.Timer] = {}  # restarts waiting out a back-off
        self._stop_asked: set[str] = set()  # a client stopped it while its restart was in flight
        self._closed = False

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def expect_stop(self, key: str) -> None:
        """A client asked ``key`` to stop: its exit is no failure."""
        with self._lock:
            self._expected.add(key)

    def started(self, key: str) -> None:
        """``key`` is starting (its operation holds it); a start a client
        asked for resets the count.

        Raises:
            Conflict: this is a restart by policy and a client stopped
                ``key`` since it was decided (the start is not made).
        """
        with self._lock:
            self._expected.discard(key)
            if key in self._stop_asked:
                raise Conflict(f"{split_key(key)[1]} was stopped by a client: "
                               "its restart by policy is cancelled")
            if key not in self._by_policy:
                self._failures.pop(key, None)

    def cancel(self, key: str) -> bool:
        """A client stops ``key``: a restart it waits for is not done, one
        whose start is in flight is either cancelled (its work had not begun)
        or runs to its end. True if there was one; the stop must then wait
        for ``key``'s operation, and is done if ``key`` is stopped after it."""
        with self._lock:
            timer = self._pending.pop(key, None)
            if timer is None:
                if key not in self._by_policy:
                    return False
                self._stop_asked.add(key)
        if timer is not None:
            timer.cancel()
        log.info("%s: restart by policy cancelled by a stop", key)
        return True

    def forget(self, key: str) -> None:
        self.cancel(key)
        with self._lock:
            for d in (self._failures, self._delay, self._recent):
                d.pop(key, None)
            self._expected.discard(key)

    def on_exit(self, key: str, exit_code: int | None) -> None:
        """The init of ``key`` ended. Never raises, never blocks."""
        with self._lock:
            if key in self._expected:
                self._expected.discard(key)
                return
        if self._operations.holder(f"instance:{key}") is not None:
            return  # a stop, restart, delete or restore is in flight: theirs
        self._consider(key, exit_code, "exited" if exit_code is None
                       else f"exited with status {exit_code}", "start")

    def on_unhealthy(self, key: str) -> None:
        """``key``'s health check failed its retries. Never raises, never blocks."""
        self._consider(key, None, "unhealthy", "restart")

    def _consider(self, key: str, exit_code: int | None, why: str, action: str) -> None:
        try:
            inst = self._store.get_instance(key)
        except NotFound:
            return
        conf = self._config_of(key) or {}
        try:
            policy = parse_restart(conf.get("cove.restart") or "no")
            cap = int(conf.get("cove.restart.max_per_minute") or _DEFAULT_CAP)
        except (BadRequest, ValueError):
            return
        if policy.mode == "no":
            return
        if action == "start" and (inst.status is not Status.STOPPED
                                  or (policy.mode == "on-failure" and exit_code == 0)):
            return
        now = time.monotonic()
        with self._lock:
            if self._closed:
                return
            if policy.mode == "on-failure" and policy.max_retries \
                    and self._failures.get(key, 0) >= policy.max_retries:
                log.warning("%s %s: not restarted, %d restarts by policy already", key, why,
                            policy.max_retries)
                return
            recent = self._recent.setdefault(key, collections.deque())
            while recent and now - recent[0] > 60:
                recent.popleft()
            if len(recent) >= cap:
                log.warning("%s %s: not restarted, %d restarts in the last minute", key, why,
                            cap)
                return
            recent.append(now)
            self._failures[key] = self._failures.get(key, 0) + 1
            ran = time.time() - (inst.last_used_at or 0)
            delay = _BACKOFF_MIN if ran >= _RESET_AFTER else min(
                _BACKOFF_MAX, self._delay.get(key, _BACKOFF_MIN / 2) * 2)
            self._delay[key] = delay
        log.info("%s %s: restarting in %.1fs (cove.restart=%s)", key, why, delay, policy.mode)
        timer = threading.Timer(delay, self._restart, args=(key, action))
        timer.daemon = True
        with self._lock:
            self._pending[key] = timer
        timer.start()

    def _restart(self, key: str, action: str) -> None:
        project, name = split_key(key)
        with self._lock:
            if self._closed or self._pending.pop(key, None) is None:
                return  # cancelled by a stop
            self._by_policy.add(key)
        try:
            if action == "start" and self._store.get_instance(key).status is not Status.STOPPED:
                return  # somebody started it meanwhile
            op = self._instances.change_state(name, action, project=project, wait_for_lock=60)
            op.wait()
            op.raise_for_error()
        except CoveError as e:
            with self._lock:
                stopped = key in self._stop_asked
            if stopped:
                return  # a client's stop came first: nothing to try again
            log.warning("restart of %s by policy failed: %s", key, e)
            if action == "start":  # tried again, with the back-off, within the cap
                self._consider(key, None, "failed to start", "start")
            return
        finally:
            with self._lock:
                self._by_policy.discard(key)
                self._stop_asked.discard(key)
        if action == "start":  # a restart action's event tells the dependents itself
            self._after(key)
