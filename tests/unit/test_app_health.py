"""Health checks (``engine._health``) with a fake prober, the wire state's
``cove`` key, and the CLI's HEALTH column and info lines."""

from __future__ import annotations

import threading
import time

from cove.api import InstanceState
from cove.cli.instances import health_cell, info_text
from cove.engine._health import Health, health_config
from cove.engine._probes import ProbeResult
from cove.engine.events import EventBus
from cove.model.app_keys import Probe

CONF = {"cove.health": "test -f /ok", "cove.health.interval": "20ms",
        "cove.health.retries": "2", "cove.health.timeout": "1s"}


class FakeProber:
    """Answers from a script of results, then repeats the last one."""

    def __init__(self, *results: bool) -> None:
        self.results = list(results)
        self.calls: list[tuple[str, Probe, float]] = []

    def run(self, key: str, probe: Probe, timeout: float) -> ProbeResult:
        self.calls.append((key, probe, timeout))
        ok = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        return ProbeResult(ok, "fine" if ok else "no /ok")


def _until(pred, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_health_config_defaults_and_overrides() -> None:
    hc = health_config({"cove.health": "tcp:5432"})
    assert hc is not None
    assert (hc.interval, hc.timeout, hc.retries, hc.start_period) == (30.0, 30.0, 3, 0.0)
    assert health_config({}) is None
    hc = health_config(CONF)
    assert hc is not None and (hc.interval, hc.retries) == (0.1, 2)  # 0.1 s at least


def test_states_streak_events_and_the_unhealthy_callback() -> None:
    bus = EventBus()
    sub = bus.subscribe({"lifecycle"})
    prober = FakeProber(True, False, False, False, True)
    unhealthy: list[str] = []
    health = Health(config_of=lambda key: dict(CONF), prober=prober,  # type: ignore[arg-type]
                    events=bus, on_unhealthy=unhealthy.append)
    try:
        health.track("web")
        assert health.get("web").status == "starting"  # type: ignore[union-attr]
        _until(lambda: unhealthy == ["web"])
        st = health.get("web")
        assert st is not None and st.status == "unhealthy" and st.failing_streak >= 2
        assert st.output == "no /ok"
        _until(lambda: health.get("web").status == "healthy")  # type: ignore[union-attr]
        statuses = [e["metadata"]["context"]["status"] for e in sub.drain()
                    if e["metadata"]["action"] == "instance-health-changed"]
        assert statuses[:3] == ["healthy", "unhealthy", "healthy"]
        assert all(c[0] == "web" and c[2] == 1.0 for c in prober.calls)
    finally:
        health.close()


def test_forget_stops_the_checks_and_wait_status_returns() -> None:
    prober = FakeProber(False)
    conf = {**CONF, "cove.health.start_period": "1h"}  # starting, for good
    health = Health(config_of=lambda key: conf, prober=prober,  # type: ignore[arg-type]
                    events=EventBus(), on_unhealthy=lambda key: None)
    try:
        health.track("db")
        threading.Timer(0.2, health.forget, args=("db",)).start()
        t = time.monotonic()
        assert health.wait_status("db", "healthy", time.monotonic() + 5) is None  # forgotten
        assert time.monotonic() - t < 4
        health.forget("db")
        n = len(prober.calls)
        time.sleep(0.1)
        assert len(prober.calls) <= n + 1 and health.get("db") is None
    finally:
        health.close()


def test_failures_in_the_start_period_do_not_count() -> None:
    conf = {**CONF, "cove.health.start_period": "10s", "cove.health.start_interval": "10ms"}
    prober = FakeProber(False)
    health = Health(config_of=lambda key: conf, prober=prober,  # type: ignore[arg-type]
                    events=EventBus(), on_unhealthy=lambda key: None)
    try:
        health.track("db")
        _until(lambda: len(prober.calls) >= 5)
        st = health.get("db")
        assert st is not None and st.status == "starting" and st.failing_streak == 0
    finally:
        health.close()


STATE = {"status": "Running", "status_code": 103, "pid": 7,
         "cove": {"ready": True, "health": {"status": "unhealthy", "failing_streak": 3,
                                            "output": "refused", "checked_at": 1.0}}}


def test_state_wire_carries_cove_only_when_set() -> None:
    assert InstanceState.from_wire(STATE).to_wire()["cove"] == STATE["cove"]
    assert "cove" not in InstanceState(status="Running").to_wire()


def test_cli_health_cell_and_info() -> None:
    assert health_cell(STATE) == "unhealthy (3)"
    assert health_cell({"cove": {"ready": True}}) == "ready"
    assert health_cell({"status": "Running"}) == ""
    text = info_text({"name": "db"}, STATE)
    assert "Health: unhealthy (failing streak 3)" in text
    assert "Last Health Output: refused" in text and "Ready: yes" in text


def test_refresh_follows_a_config_change() -> None:
    conf: dict[str, str] = {}
    prober = FakeProber(True)
    health = Health(config_of=lambda key: conf, prober=prober,  # type: ignore[arg-type]
                    events=EventBus(), on_unhealthy=lambda key: None)
    try:
        health.track("db")
        assert health.get("db") is None  # no probe, not checked
        conf.update(CONF)
        health.refresh("db")
        _until(lambda: health.get("db") is not None
               and health.get("db").status == "healthy")  # type: ignore[union-attr]
        conf.clear()
        health.refresh("db")
        assert health.get("db") is None
    finally:
        health.close()


def test_a_paused_instance_is_not_probed() -> None:
    prober = FakeProber(False)
    paused = {"db"}
    health = Health(config_of=lambda key: dict(CONF), prober=prober,  # type: ignore[arg-type]
                    events=EventBus(), on_unhealthy=lambda key: None,
                    paused=lambda key: key in paused)
    try:
        health.track("db")
        time.sleep(0.5)
        assert prober.calls == [] and health.get("db").status == "starting"  # type: ignore[union-attr]
        paused.clear()
        _until(lambda: len(prober.calls) > 0)
    finally:
        health.close()


class FakeRows:
    """``store.app_health`` in memory, counting its writes."""

    def __init__(self, rows: dict[str, tuple[str, int, str, float]] | None = None) -> None:
        self.rows = dict(rows or {})
        self.writes = 0

    def put(self, instance: str, status: str, failing_streak: int, output: str,
            checked_at: float) -> None:
        self.writes += 1
        self.rows[instance] = (status, failing_streak, output, checked_at)

    def remove(self, instance: str) -> None:
        self.writes += 1
        self.rows.pop(instance, None)

    def all(self) -> dict[str, tuple[str, int, str, float]]:
        return dict(self.rows)


def test_state_is_persisted_on_change_only_and_resumed() -> None:
    rows = FakeRows({"gone": ("healthy", 0, "old", 1.0)})
    prober = FakeProber(True, True, True, True, True, True, False, True)
    health = Health(config_of=lambda key: dict(CONF), prober=prober,  # type: ignore[arg-type]
                    events=EventBus(), on_unhealthy=lambda key: None, rows=rows)
    try:
        health.track("web")
        _until(lambda: len(prober.calls) >= 6)
        # starting -> healthy is one write; five more passing probes are none
        assert rows.rows["web"][:3] == ("healthy", 0, "fine") and rows.writes == 1
        _until(lambda: len(prober.calls) >= 8)
        _until(lambda: rows.writes == 3)  # the failure (streak 1), then healthy again
        assert rows.rows["web"][:2] == ("healthy", 0)
    finally:
        health.close()
    rows.rows["web"] = ("unhealthy", 4, "no /ok", 2.0)
    # a new coved: what still runs shows its last state until its next probe
    slow = dict(CONF, **{"cove.health.interval": "1h"})
    health = Health(config_of=lambda key: slow, prober=FakeProber(True),  # type: ignore[arg-type]
                    events=EventBus(), on_unhealthy=lambda key: None, rows=rows)
    try:
        health.resume(["web"])
        st = health.get("web")
        assert st is not None and st.to_dict() == {
            "status": "unhealthy", "failing_streak": 4, "output": "no /ok", "checked_at": 2.0}
        assert "gone" not in rows.rows  # it did not run: its state went
        health.track("web")  # a new start: starting again, the old state gone
        assert health.get("web").status == "starting"  # type: ignore[union-attr]
        assert "web" not in rows.rows
        health.forget("web")
        writes = rows.writes
        health.forget("web")
        assert rows.writes == writes  # nothing saved: no write
    finally:
        health.close()
