"""Health state survives a coved restart (issue 11): an instance's last
status, failing streak and probe output show in the state API's ``cove``
key and in ``cove info`` from the new coved's first answer, not ``starting``
again; a stop drops it. So does the ``ready`` flag of a run whose
``cove.ready`` probe passed: a dependent started after the restart needs no
new probe of that run, while a run that ended with no coved to see it is
not ready. The database is read directly for the rows. One coved crash
serves both (a restart costs seconds under load)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from covetest import Api, Coved, new_name, wait_until


def _health(api: Api, name: str) -> dict[str, object]:
    return dict(api.state(name)["cove"]["health"])


def _ready(api: Api, name: str) -> bool:
    return bool((api.state(name).get("cove") or {}).get("ready"))


def _rows(coved: Coved, table: str = "app_health") -> list[str]:
    db = sqlite3.connect(f"file:{coved.root / 'cove.db'}?mode=ro", uri=True)
    try:
        return sorted(r[0] for r in db.execute(f"SELECT instance FROM {table}"))
    finally:
        db.close()


def test_health_and_ready_survive_a_coved_restart(coved: Coved, api: Api) -> None:
    name = new_name("hp")
    api.create(name, config={"cove.cmd": "sleep 1000", "cove.health": "cat /tmp/ok",
                             "cove.health.interval": "200ms", "cove.health.retries": "2"})
    # db stays up through the crash, db2's init dies while no coved runs
    db, db2, web = new_name("rdb"), new_name("rdb2"), new_name("rweb")
    api.create(db, config={"cove.cmd": "sleep 1000", "cove.ready": "true"})
    api.create(db2, config={"cove.cmd": "sleep 1000", "cove.ready": "true"})
    api.create(web, config={"cove.cmd": "sleep 1000", "cove.depends": f"{db},{db2}"})
    try:
        api.action(name, "start")
        assert not _ready(api, db)
        api.action(web, "start")  # db and db2 first, each probed ready once
        assert _ready(api, db) and _ready(api, db2)
        assert _rows(coved, "app_ready") == sorted([db, db2])
        api.action(web, "stop", force=True)  # else the next coved starts db2 again for it
        wait_until(lambda: _health(api, name)["status"] == "unhealthy", 20, what="unhealthy")
        # no more probes for an hour: the check already scheduled is the last
        api.sync("PATCH", f"/1.0/instances/{name}", {"config": {"cove.health.interval": "1h"}})
        time.sleep(0.5)
        before = _health(api, name)
        assert int(before["failing_streak"]) >= 2 and "/tmp/ok" in str(before["output"]), before
        assert _rows(coved) == [name]

        coved.kill()  # a crash: nothing is written on the way out
        state = subprocess.run(["runc", "--root", str(coved.root / "run" / "runc"), "state",
                                db2], capture_output=True, check=True).stdout
        os.kill(int(json.loads(state)["pid"]), signal.SIGKILL)
        coved.start()
        assert _health(api, name) == before  # as it was, before any probe of the new coved
        assert _ready(api, db)  # likewise
        p = subprocess.run([sys.executable, "-m", "cove.cli.main", "info", name],
                           env=coved.cli_env(), capture_output=True, timeout=60, check=False)
        assert p.returncode == 0 and b"unhealthy" in p.stdout and b"/tmp/ok" in p.stdout, p
        assert api.status(db2) == "Stopped" and not _ready(api, db2)
        assert _rows(coved, "app_ready") == [db]

        # db's run counts as ready: a probe that would now fail is never asked;
        # db2's new run is probed (and passes)
        api.sync("PATCH", f"/1.0/instances/{db}", {"config": {"cove.ready": "false",
                                                               "cove.ready.timeout": "1s"}})
        api.action(web, "start")
        assert api.status(web) == "Running" and _ready(api, db2)
        api.action(db, "stop", force=True)  # web first, then db: its run is over
        assert api.status(web) == "Stopped"
        assert not _ready(api, db) and _rows(coved, "app_ready") == [db2]

        api.action(name, "stop", force=True)
        wait_until(lambda: _rows(coved) == [], 5, what="the stopped instance's state gone")
        api.action(name, "start")
        assert _health(api, name)["status"] == "starting"  # a new run starts over
        api.action(name, "stop", force=True)
    finally:
        api.remove(web)  # the dependent first: a dependency's delete is refused
        api.remove(db)
        api.remove(db2)
