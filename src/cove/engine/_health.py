"""Health checks that coved runs itself (``cove.health`` and its keys).

Design note: one scheduler thread holds a heap of due checks, one entry per
running instance with a ``cove.health`` probe; the probes themselves run on
a small pool (``_WORKERS`` threads), so a hung probe delays no other
instance's check and is killed at its timeout (``_probes``). The states are
Docker's: ``starting`` until the first pass (failures in
``cove.health.start_period`` do not count), ``healthy``, ``unhealthy`` once
``cove.health.retries`` checks failed in a row. Each change is a lifecycle
event ``instance-health-changed``; ``on_unhealthy`` is told (the restart
policy's business). The state lives in memory and, when it changes (its
status or failing streak; never per passing probe, so a healthy stack
costs no disk write), in the store (``store.app_health``): a new coved
shows what still runs as it last was, output included, until its next
probe (``resume``). A new start begins at ``starting`` again.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from cove.engine._probes import Prober, ProbeResult
from cove.engine.events import EventBus
from cove.model.app_keys import Probe, parse_duration, parse_probe
from cove.model.errors import BadRequest
from cove.model.projects import instance_url, split_key

__all__ = ["Health", "HealthConfig", "HealthRows", "HealthState", "health_config"]

log = logging.getLogger("cove.engine")

_WORKERS = 4


class HealthRows(Protocol):
    """Where the last states are kept (``store.app_health``)."""

    def put(self, instance: str, status: str, failing_streak: int, output: str,
            checked_at: float) -> None: ...

    def remove(self, instance: str) -> None: ...

    def all(self) -> dict[str, tuple[str, int, str, float]]: ...


class HealthConfig:
    """The ``cove.health.*`` keys of one instance, with Docker's defaults
    (interval 30 s, timeout 30 s, 3 retries, no start period, start
    interval 5 s)."""

    __slots__ = ("interval", "probe", "retries", "start_interval", "start_period", "timeout")

    def __init__(self, probe: Probe, interval: float = 30.0, timeout: float = 30.0,
                 retries: int = 3, start_period: float = 0.0,
                 start_interval: float = 5.0) -> None:
        self.probe = probe
        self.interval = interval
        self.timeout = timeout
        self.retries = retries
        self.start_period = start_period
        self.start_interval = start_interval


def health_config(conf: dict[str, str]) -> HealthConfig | None:
    """The health check of an expanded config, None without ``cove.health``
    (or with a value that no longer parses)."""
    if not conf.get("cove.health"):
        return None
    try:
        def dur(key: str, default: float) -> float:
            return parse_duration(conf[key], key) if conf.get(key) else default
        return HealthConfig(
            parse_probe(conf["cove.health"], "cove.health"),
            interval=max(0.1, dur("cove.health.interval", 30.0)),
            timeout=max(0.1, dur("cove.health.timeout", 30.0)),
            retries=max(1, int(conf.get("cove.health.retries") or 3)),
            start_period=dur("cove.health.start_period", 0.0),
            start_interval=max(0.1, dur("cove.health.start_interval", 5.0)))
    except (BadRequest, ValueError):
        return None


class HealthState:
    """Where one instance's health stands."""

    __slots__ = ("checked_at", "failing_streak", "output", "started", "status")

    def __init__(self, started: float) -> None:
        self.status = "starting"
        self.failing_streak = 0
        self.output = ""
        self.checked_at = 0.0
        self.started = started

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "failing_streak": self.failing_streak,
                "output": self.output, "checked_at": self.checked_at}


class Health:
    """The health checks of one root. Thread-safe; ``close()`` ends them."""

    def __init__(self, *, config_of: Callable[[str], dict[str, str] | None], prober: Prober,
                 events: EventBus, on_unhealthy: Callable[[str], None],
                 paused: Callable[[str], bool] = lambda key: False,
                 clock: Callable[[], float] = time.monotonic,
                 rows: HealthRows | None = None) -> None:
        self._rows = rows  # the persisted states (None: memory only)
        self._saved: dict[str, tuple[str, int, str, float]] = rows.all() if rows else {}
        self._config_of = config_of  # key -> expanded config, None once it is gone
        self._paused = paused  # a frozen instance is not checked (nor restarted)
        self._prober = prober
        self._events = events
        self._on_unhealthy = on_unhealthy
        self._now = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, str, int]] = []
        self._gen: dict[str, int] = {}  # key -> the generation its heap entries must carry
        self._states: dict[str, HealthState] = {}
        self._seq = itertools.count()
        self._closed = False
        self._pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="health")
        self._thread = threading.Thread(target=self._loop, name="health", daemon=True)
        self._thread.start()

    def track(self, key: str, *, resume: bool = False) -> None:
        """``key`` (re)started: check it from now on if it has a probe
        (``starting`` again). ``resume``: it ran before this coved started;
        its persisted state, if any, stands until the next probe.
        Idempotent per start."""
        conf = self._config_of(key)
        hc = health_config(conf) if conf is not None else None
        with self._cond:
            gen = self._gen.get(key, 0) + 1
            self._gen[key] = gen
            saved = self._saved.get(key) if resume else None
            if hc is None or saved is None:
                self._unsave(key)  # a new run (or no check): no old state shows
            if hc is None:
                self._states.pop(key, None)
                return
            st = self._states[key] = HealthState(self._now())
            if saved is not None:
                st.status, st.failing_streak, st.output, st.checked_at = saved
            first = hc.start_interval if hc.start_period > 0 else hc.interval
            self._push(self._now() + min(first, hc.interval), key, gen)

    def refresh(self, key: str) -> None:
        """``key``'s config changed while it runs: start checking it if it
        got a probe, stop if it lost it; a changed probe or interval takes
        effect at the next check. Idempotent."""
        conf = self._config_of(key)
        has = conf is not None and health_config(conf) is not None
        with self._cond:
            tracked = key in self._states
        if has and not tracked:
            self.track(key)
        elif tracked and not has:
            self.forget(key)

    def forget(self, key: str) -> None:
        """``key`` stopped or went: no more checks, no state. Idempotent."""
        with self._cond:
            self._gen[key] = self._gen.get(key, 0) + 1
            self._states.pop(key, None)
            self._unsave(key)
            self._cond.notify_all()  # a waiter learns it is no longer checked

    def resume(self, running: list[str]) -> None:
        """At coved's start: check the ``running`` instances again, each
        from its persisted state; drop the states of the others (stopped or
        gone while no coved ran). Idempotent."""
        for key in running:
            self.track(key, resume=True)
        with self._cond:
            for key in [k for k in self._saved if k not in running]:
                self._unsave(key)

    def _unsave(self, key: str) -> None:
        """Drop ``key``'s persisted state, if it has one (caller holds the lock)."""
        if self._saved.pop(key, None) is not None and self._rows is not None:
            try:
                self._rows.remove(key)
            except Exception:
                log.exception("forgetting the health of %s", key)

    def _save(self, key: str, st: HealthState) -> None:
        """Persist ``key``'s changed state (caller holds the lock: writes
        of one key stay in order with ``forget``)."""
        row = (st.status, st.failing_streak, st.output, st.checked_at)
        self._saved[key] = row
        if self._rows is not None:
            try:
                self._rows.put(key, *row)
            except Exception:
                log.exception("recording the health of %s", key)

    def get(self, key: str) -> HealthState | None:
        with self._cond:
            return self._states.get(key)

    def wait_status(self, key: str, want: str, deadline: float) -> HealthState | None:
        """Block until ``key``'s status is ``want`` (or ``unhealthy``, or it
        is no longer checked) or ``deadline`` (monotonic); its state then."""
        with self._cond:
            while True:
                st = self._states.get(key)
                if st is None or st.status in (want, "unhealthy"):
                    return st
                left = deadline - self._now()
                if left <= 0:
                    return st
                self._cond.wait(left)

    def close(self) -> None:
        """End the scheduler; probes in flight finish at their timeout. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=2)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the scheduler ------------------------------------------------------
    def _push(self, due: float, key: str, gen: int) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), key, gen))
        self._cond.notify_all()

    def _loop(self) -> None:
        with self._cond:
            while not self._closed:
                if not self._heap:
                    self._cond.wait()
                    continue
                due, _, key, gen = self._heap[0]
                left = due - self._now()
                if left > 0:
                    self._cond.wait(left)
                    continue
                heapq.heappop(self._heap)
                if self._gen.get(key) != gen:
                    continue  # stopped, or restarted since it was scheduled
                try:
                    self._pool.submit(self._check, key, gen)
                except RuntimeError:
                    return  # shut down

    def _check(self, key: str, gen: int) -> None:
        conf = self._config_of(key)
        hc = health_config(conf) if conf is not None else None
        if hc is None:
            self.forget(key)
            return
        if self._paused(key):
            with self._cond:
                if self._gen.get(key) == gen:
                    self._push(self._now() + hc.interval, key, gen)
            return
        try:
            result = self._prober.run(key, hc.probe, hc.timeout)
        except Exception as e:  # a probe is never allowed to end the checks
            log.exception("health probe of %s", key)
            result = ProbeResult(False, f"probe error: {e}")
        self._record(key, gen, hc, result)

    def _record(self, key: str, gen: int, hc: HealthConfig, result: ProbeResult) -> None:
        changed = unhealthy = False
        with self._cond:
            st = self._states.get(key)
            if st is None or self._gen.get(key) != gen:
                return
            now = self._now()
            in_start = now - st.started < hc.start_period
            old, old_streak = st.status, st.failing_streak
            st.checked_at = time.time()
            st.output = result.output
            if result.ok:
                st.failing_streak = 0
                st.status = "healthy"
            elif not (in_start and st.status == "starting"):
                st.failing_streak += 1
                if st.failing_streak >= hc.retries:
                    st.status = "unhealthy"
            changed = st.status != old
            unhealthy = changed and st.status == "unhealthy"
            if changed or st.failing_streak != old_streak:
                self._save(key, st)  # not per passing probe: only on a change
            snapshot = st.to_dict()
            self._push(now + (hc.start_interval if in_start and st.status == "starting"
                              else hc.interval), key, gen)
        if changed:
            project, _ = split_key(key)
            self._events.lifecycle("instance-health-changed", instance_url(key),
                                   project=project, **snapshot)
        if unhealthy:
            try:
                self._on_unhealthy(key)
            except Exception:
                log.exception("acting on the unhealthy %s", key)
