"""Health state survives a coved restart (issue 11): an instance's last
status, failing streak and probe output show in the state API's ``cove``
key and in ``cove info`` from the new coved's first answer, not ``starting``
again; a stop drops it. The database is read directly for the latter."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

from covetest import Api, Coved, new_name, wait_until


def _health(api: Api, name: str) -> dict[str, object]:
    return dict(api.state(name)["cove"]["health"])


def _rows(coved: Coved) -> list[str]:
    db = sqlite3.connect(f"file:{coved.root / 'cove.db'}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute("SELECT instance FROM app_health")]
    finally:
        db.close()


def test_health_state_survives_a_coved_restart(coved: Coved, api: Api) -> None:
    name = new_name("hp")
    api.create(name, config={"cove.cmd": "sleep 1000", "cove.health": "cat /tmp/ok",
                             "cove.health.interval": "200ms", "cove.health.retries": "2"})
    api.action(name, "start")
    wait_until(lambda: _health(api, name)["status"] == "unhealthy", 20, what="unhealthy")
    # no more probes for an hour: the check already scheduled is the last
    api.sync("PATCH", f"/1.0/instances/{name}", {"config": {"cove.health.interval": "1h"}})
    time.sleep(0.5)
    before = _health(api, name)
    assert int(before["failing_streak"]) >= 2 and "/tmp/ok" in str(before["output"]), before
    assert _rows(coved) == [name]

    coved.kill()  # a crash: nothing is written on the way out
    coved.start()
    assert _health(api, name) == before  # as it was, before any probe of the new coved
    p = subprocess.run([sys.executable, "-m", "cove.cli.main", "info", name],
                       env=coved.cli_env(), capture_output=True, timeout=60, check=False)
    assert p.returncode == 0 and b"unhealthy" in p.stdout and b"/tmp/ok" in p.stdout, p

    api.action(name, "stop", force=True)
    wait_until(lambda: _rows(coved) == [], 5, what="the stopped instance's state gone")
    api.action(name, "start")
    assert _health(api, name)["status"] == "starting"  # a new run starts over
    api.action(name, "stop", force=True)
