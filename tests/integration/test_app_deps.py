"""App stacks enforced by coved (issue 11): dependency order on every start
path, readiness, stop and delete of dependencies, health checks, restart by
policy with its cascade, a simulated reboot and a coved killed half-way.

A tier records when it became ready and when it started in the host's
uptime (``/proc/uptime`` is not namespaced), so the order is read from the
containers themselves, not from cove's bookkeeping.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pylxd
import pytest
from covetest import Api, Coved, assert_no_leaks, conmon_pids, new_name, runc_ids, wait_until

from cove.client import connect

# ready 2 s after it starts: /tmp/ready appears then, with the uptime
SLOW_READY = "sh -c 'rm -f /tmp/ready; sleep 2; cat /proc/uptime > /tmp/ready; exec sleep 1000'"
# the uptime it started at
STARTED = "sh -c 'cat /proc/uptime > /tmp/t0; exec sleep 1000'"
READY_PROBE = "test -f /tmp/ready"


def uptime(api: Api, name: str, path: str) -> float:
    return float(api.sh(name, f"cat {path}").split()[0])


def remove_top_down(api: Api, *names: str) -> None:
    """Dependents before what they depend on (a dependency is not deleted
    while others name it)."""
    for n in names:
        api.remove(n)


@pytest.fixture
def tiers(api: Api) -> Iterator[tuple[str, str, str]]:
    """web -> api -> db (db ready after 2 s), all stopped."""
    db, mid, web = new_name("db"), new_name("api"), new_name("web")
    api.create(db, config={"cove.cmd": SLOW_READY, "cove.ready": READY_PROBE})
    api.create(mid, config={"cove.cmd": STARTED, "cove.depends": db})
    api.create(web, config={"cove.cmd": STARTED, "cove.depends": f"{mid}:started"})
    yield db, mid, web
    remove_top_down(api, web, mid, db)
    api.made.clear()


def test_three_tier_start_waits_for_readiness(coved: Coved, api: Api,
                                              tiers: tuple[str, str, str]) -> None:
    db, mid, web = tiers
    t = time.monotonic()
    api.action(web, "start")
    assert time.monotonic() - t >= 2.0  # db's readiness was waited for
    assert [api.status(n) for n in tiers] == ["Running"] * 3
    assert uptime(api, mid, "/tmp/t0") >= uptime(api, db, "/tmp/ready")
    assert uptime(api, web, "/tmp/t0") >= uptime(api, mid, "/tmp/t0")
    assert api.state(db)["cove"]["ready"] is True

    # stopping the bottom stops its dependents first
    api.action(db, "stop", timeout=0)
    assert [api.status(n) for n in tiers] == ["Stopped"] * 3

    # a dependency is not deleted while others name it, unless forced
    r = api.request("DELETE", f"/1.0/instances/{db}")
    assert r.status == 400 and mid in r.error

    def cove_delete(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "cove.cli.main", "delete", *args],
                              env=coved.cli_env(), capture_output=True, timeout=60, check=False)
    p = cove_delete(db)
    assert p.returncode != 0 and mid.encode() in p.stderr and b"force" in p.stderr, p
    assert cove_delete("--force", db).returncode == 0
    assert db not in api.names()
    op = api.wait(api.request("PUT", f"/1.0/instances/{mid}/state", {"action": "start"}))
    assert op["status"] == "Failure" and db in op["err"] and "does not exist" in op["err"], op


def test_independent_branches_start_and_stop_in_parallel(api: Api) -> None:
    # two dependencies each ready 1 s after they start (halted by SIGKILL:
    # quick), and two dependents that take a second over SIGTERM; each
    # records in the host's uptime when it started or got the signal
    a, b, top1, top2 = new_name("pa"), new_name("pb"), new_name("ptop"), new_name("ptop")
    base = {"cove.cmd": "sh -c 'rm -f /tmp/ready; cat /proc/uptime > /tmp/t0; sleep 1; "
                        "touch /tmp/ready; exec sleep 1000'",
            "cove.ready": READY_PROBE, "cove.halt": "SIGKILL"}
    slow_stop = "sh -c 'trap \"cat /proc/uptime > /tmp/term; sleep 1; exit 0\" TERM; " \
                "while :; do sleep 0.1; done'"
    api.create(a, config=base)
    api.create(b, config=base)
    api.create(top1, config={"cove.cmd": slow_stop, "cove.depends": f"{a},{b}"})
    api.create(top2, config={"cove.cmd": slow_stop, "cove.depends": a})
    try:
        api.action(top1, "start")  # a and b together: not one after the other's readiness
        assert abs(uptime(api, a, "/tmp/t0") - uptime(api, b, "/tmp/t0")) < 0.9
        api.action(top2, "start")
        api.action(a, "stop")  # its dependents first, together
        assert [api.status(n) for n in (top1, top2, a)] == ["Stopped"] * 3
        terms = [float(api.file_get(n, "/tmp/term").body.split()[0]) for n in (top1, top2)]
        assert abs(terms[0] - terms[1]) < 0.9, terms
    finally:
        remove_top_down(api, top1, top2, a, b)
        api.made.clear()


def test_bad_dependencies_are_refused_when_set(api: Api, tiers: tuple[str, str, str]) -> None:
    db, mid, web = tiers
    r = api.request("PATCH", f"/1.0/instances/{db}", {"config": {"cove.depends": web}})
    assert r.status == 400, r.body
    assert "cycle" in r.error and f"{db} -> {web} -> {mid} -> {db}" in r.error
    r = api.request("PATCH", f"/1.0/instances/{db}",
                    {"config": {"cove.depends": "covetest-nosuch"}})
    assert r.status == 400 and "covetest-nosuch" in r.error
    r = api.request("POST", "/1.0/instances", {
        "name": new_name("x"), "source": {"type": "image", "alias": "busybox"},
        "config": {"cove.depends": "covetest-nosuch"}})
    assert r.status == 400 and "covetest-nosuch" in r.error
    # through a profile: db would depend on itself
    prof = new_name("prof")
    api.sync("POST", "/1.0/profiles", {"name": prof, "config": {"cove.depends": db}})
    try:
        r = api.request("PATCH", f"/1.0/instances/{db}", {"profiles": ["default", prof]})
        assert r.status == 400 and "itself" in r.error
    finally:
        api.sync("DELETE", f"/1.0/profiles/{prof}")
    assert api.instance(db)["config"].get("cove.depends") is None


def test_readiness_timeout_fails_the_start_naming_the_probe(api: Api) -> None:
    db, top = new_name("db"), new_name("top")
    api.create(db, config={"cove.cmd": "sleep 1000",
                           "cove.ready": "sh -c 'echo still waiting; exit 1'",
                           "cove.ready.timeout": "1s"})
    api.create(top, config={"cove.cmd": "sleep 1000", "cove.depends": db})
    try:
        r = api.request("PUT", f"/1.0/instances/{top}/state", {"action": "start"})
        op = api.wait(r)
        assert op["status"] == "Failure"
        err = op["err"]
        assert db in err and "still waiting" in err and "within 1s" in err, err
        assert api.status(top) == "Stopped"
    finally:
        remove_top_down(api, top, db)
        api.made.clear()


def _health_cell(coved: Coved, name: str) -> str:
    """The HEALTH cell of ``name`` in ``cove list`` (CSV: name, state, health, ...)."""
    p = subprocess.run([sys.executable, "-m", "cove.cli.main", "list", "--format", "csv"],
                       env=coved.cli_env(), capture_output=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    return next(x for x in p.stdout.decode().splitlines() if x.startswith(name + ",")).split(",")[2]


def test_health_states_and_a_hung_probe(coved: Coved, api: Api) -> None:
    name = new_name("health")
    events = connect(str(coved.socket)).events(("lifecycle",))  # /1.0/events, a websocket
    api.launch(name, cmd="sleep 1000", config={
        "cove.health": "test -f /tmp/ok", "cove.health.interval": "300ms",
        "cove.health.retries": "2", "cove.health.timeout": "2s"})

    def health() -> dict[str, object]:
        return api.state(name).get("cove", {}).get("health", {})

    wait_until(lambda: health().get("status") == "unhealthy", 10, what="unhealthy")
    assert int(health()["failing_streak"]) >= 2  # type: ignore[call-overload]
    assert _health_cell(coved, name).startswith("unhealthy (")
    api.sh(name, "touch /tmp/ok")
    wait_until(lambda: health().get("status") == "healthy", 10, what="healthy")
    assert health()["failing_streak"] == 0
    assert _health_cell(coved, name) == "healthy"
    # each change was an event: starting -> unhealthy -> healthy
    seen = []
    with events:
        while len(seen) < 2:
            ev = events.get(timeout=10)
            assert ev is not None
            if ev.metadata.get("action") == "instance-health-changed" \
                    and ev.metadata.get("source") == f"/1.0/instances/{name}":
                seen.append(ev.metadata["context"]["status"])
    assert seen == ["unhealthy", "healthy"], seen

    # a probe that hangs is killed at its timeout, with what it started
    api.sync("PATCH", f"/1.0/instances/{name}", {"config": {
        "cove.health": "sh -c 'sleep 777 & sleep 778'", "cove.health.timeout": "500ms"}})
    wait_until(lambda: "timed out" in str(health().get("output")), 10, what="a timeout")
    api.sync("PATCH", f"/1.0/instances/{name}", {"config": {"cove.health": "true"}})
    time.sleep(1.5)  # the probe in flight reaches its timeout
    ps = api.sh(name, "ps -o args")
    assert b"sleep 77" not in ps, ps


def test_tcp_and_http_probes_reach_the_instance(api: Api) -> None:
    name = new_name("web")
    api.launch(name, cmd="sh -c 'mkdir -p /www && httpd -f -p 8080 -h /www'", config={
        "cove.health": "http:8080/ok", "cove.health.interval": "200ms",
        "cove.health.retries": "1", "cove.halt": "SIGKILL"})

    def health() -> dict[str, object]:
        return dict(api.state(name).get("cove", {}).get("health", {}))

    # from the host to the instance's own address: a 404 fails, a 200 passes
    wait_until(lambda: "HTTP 404" in str(health().get("output")), 10, what="a 404")
    assert health()["status"] == "unhealthy"
    api.sh(name, "echo fine > /www/ok")
    wait_until(lambda: health().get("status") == "healthy", 10, what="healthy over http")
    assert str(health()["output"]).startswith("HTTP 200"), health()
    api.sync("PATCH", f"/1.0/instances/{name}", {"config": {"cove.health": "tcp:8081"}})
    wait_until(lambda: health().get("status") == "unhealthy", 10, what="nothing on 8081")
    assert "Refused" in str(health()["output"]), health()
    api.sync("PATCH", f"/1.0/instances/{name}", {"config": {"cove.health": "tcp:8080"}})
    wait_until(lambda: health().get("status") == "healthy", 10, what="healthy over tcp")
    assert "connected to" in str(health()["output"]), health()


def test_crash_restart_by_policy_and_cascade(api: Api) -> None:
    db, top = new_name("db"), new_name("top")
    # halted by SIGKILL: a sleep as PID 1 ignores SIGTERM, and each restart
    # would wait out the 10 s stop timeout
    api.create(db, config={"cove.cmd": "sh -c 'cat /proc/uptime > /tmp/ready; exec sleep 1000'",
                           "cove.ready": READY_PROBE, "cove.restart": "on-failure",
                           "cove.halt": "SIGKILL"})
    api.create(top, config={"cove.cmd": STARTED, "cove.depends": f"{db}:ready:restart",
                            "cove.halt": "SIGKILL"})
    try:
        api.action(top, "start")
        db_pid, top_pid = api.state(db)["pid"], api.state(top)["pid"]
        os.kill(db_pid, signal.SIGKILL)  # a crash: exit status 137
        wait_until(lambda: api.state(db)["pid"] not in (0, db_pid), 15, what="db restarted")
        wait_until(lambda: api.state(top)["pid"] not in (0, top_pid), 15,
                   what="its dependent restarted")
        assert api.status(top) == "Running"
        assert uptime(api, top, "/tmp/t0") >= uptime(api, db, "/tmp/ready")

        # unhealthy under the policy: db is restarted, then top once db is ready
        # again (the probe fails once: it takes the marker away as it fails)
        api.sync("PATCH", f"/1.0/instances/{db}", {"config": {
            "cove.health": "sh -c 'test ! -f /tmp/sick || { rm /tmp/sick; exit 1; }'",
            "cove.health.interval": "200ms", "cove.health.retries": "1"}})
        wait_until(lambda: api.state(db).get("cove", {}).get("health", {}).get("status")
                   == "healthy", 10, what="db healthy")
        db_pid, top_pid = api.state(db)["pid"], api.state(top)["pid"]
        api.sh(db, "touch /tmp/sick")
        wait_until(lambda: api.state(db)["pid"] not in (0, db_pid), 15,
                   what="the unhealthy db restarted")
        wait_until(lambda: api.state(top)["pid"] not in (0, top_pid), 15,
                   what="its dependent restarted")
        assert uptime(api, top, "/tmp/t0") >= uptime(api, db, "/tmp/ready")
        wait_until(lambda: api.state(db)["cove"]["health"]["status"] == "healthy", 10,
                   what="db healthy again")

        # a client's stop is no failure: no restart
        api.action(top, "stop", timeout=0)
        api.action(db, "stop", timeout=0)
        time.sleep(1.0)
        assert api.status(db) == "Stopped"
    finally:
        remove_top_down(api, top, db)
        api.made.clear()


def test_pylxd_start_honours_dependencies(coved: Coved, api: Api) -> None:
    db, top = new_name("db"), new_name("top")
    client = pylxd.Client(endpoint="http+unix://" + urllib.parse.quote(str(coved.socket),
                                                                       safe=""))
    api.create(db, config={"cove.cmd": SLOW_READY, "cove.ready": READY_PROBE})
    try:
        inst = client.instances.create({
            "name": top, "source": {"type": "image", "alias": "busybox"},
            "config": {"cove.cmd": STARTED, "cove.depends": db}}, wait=True)
        inst.start(wait=True)
        assert api.status(db) == "Running"
        assert uptime(api, top, "/tmp/t0") >= uptime(api, db, "/tmp/ready")
        client.instances.get(db).stop(wait=True)  # its dependent first
        assert api.status(top) == "Stopped"
        with pytest.raises(pylxd.exceptions.LXDAPIException, match=top):
            client.instances.get(db).delete(wait=True)
    finally:
        remove_top_down(api, top, db)
        api.made.clear()


@pytest.fixture
def daemon(make_coved, busybox_tar: Path) -> Coved:  # type: ignore[no-untyped-def]
    d = make_coved("deps")
    d.api.import_image(busybox_tar, "busybox")
    return d


def _reboot(daemon: Coved) -> None:
    """Kill coved and every container of its root, drop run/ (a reboot)."""
    daemon.kill()
    runc_root = daemon.root / "run" / "runc"
    for cid in runc_ids(daemon.root):
        subprocess.run(["runc", "--root", str(runc_root), "kill", cid, "KILL"],
                       capture_output=True, check=False, timeout=30)
        subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", cid],
                       capture_output=True, check=True, timeout=30)
    wait_until(lambda: not conmon_pids(daemon.root), what="the monitors to go")
    shutil.rmtree(daemon.root / "run")


def test_reboot_autostart_honours_the_order(daemon: Coved) -> None:
    api = daemon.api
    # the dependent sorts first: its order can only come from cove.depends
    db, top = new_name("zdb"), new_name("atop")
    api.create(db, config={"cove.cmd": SLOW_READY, "cove.ready": READY_PROBE,
                           "boot.autostart": "true"})
    api.create(top, config={"cove.cmd": STARTED, "cove.depends": db,
                            "boot.autostart": "true"})
    always = new_name("always")  # no boot.autostart: its restart policy brings it back
    api.create(always, config={"cove.cmd": "sleep 1000", "cove.restart": "always"})
    # unless-stopped: back when it ran at the reboot, not when a client stopped it
    kept, stopped = new_name("unless"), new_name("unless")
    for name in (kept, stopped):
        api.create(name, config={"cove.cmd": "sleep 1000", "cove.restart": "unless-stopped"})
        api.action(name, "start")
    api.action(stopped, "stop", force=True)
    api.action(top, "start")
    _reboot(daemon)
    daemon.start(timeout=60)
    assert api.status(db) == "Running" and api.status(top) == "Running"
    assert uptime(api, top, "/tmp/t0") >= uptime(api, db, "/tmp/ready")
    assert api.status(always) == "Running"
    assert api.status(kept) == "Running" and api.status(stopped) == "Stopped"
    remove_top_down(api, top, db, always, kept, stopped)
    assert_no_leaks(daemon.root)


def test_coved_killed_between_dependencies_and_dependent(daemon: Coved) -> None:
    api = daemon.api
    db, top = new_name("db"), new_name("top")
    api.create(db, config={"cove.cmd": "sh -c 'touch /tmp/ready; exec sleep 1000'",
                           "cove.ready": READY_PROBE})
    api.create(top, config={"cove.cmd": STARTED, "cove.depends": db})
    daemon.arm("deps.before-start")
    api.request("PUT", f"/1.0/instances/{top}/state", {"action": "start"})
    daemon.revive()  # died with db running, top not yet
    wait_until(lambda: api.status(top) == "Running", 30, what="the order finished")
    assert api.status(db) == "Running"
    remove_top_down(api, top, db)
    assert_no_leaks(daemon.root)


def test_start_once_with_another_command_and_exec_waits_for_a_start(
        coved: Coved, api: Api) -> None:
    db, top = new_name("db"), new_name("top")
    api.create(db, config={"cove.cmd": SLOW_READY, "cove.ready": READY_PROBE})
    api.create(top, config={"cove.cmd": STARTED, "cove.depends": db})
    try:
        # the CLI: cove start NAME -- CMD, dependencies first as usual
        p = subprocess.run([sys.executable, "-m", "cove.cli.main", "start", top, "--",
                            "sh", "-c", "echo once > /tmp/once; exec sleep 1000"],
                           env=coved.cli_env(), capture_output=True, timeout=120, check=False)
        assert p.returncode == 0, p.stderr
        assert api.status(db) == "Running"
        assert api.sh(top, "cat /tmp/once") == b"once\n"
        assert api.sh(top, "cat /proc/1/cmdline") == b"sleep\x001000\x00"
        # the next start runs its own command again
        api.sh(top, "rm -f /tmp/t0")
        api.action(top, "restart", timeout=0)
        wait_until(lambda: api.exec(top, ["test", "-f", "/tmp/t0"])[0] == 0, 10,
                   what="its own command")
        r = api.request("PUT", f"/1.0/instances/{top}/state",
                        {"action": "stop", "command": ["true"]})
        assert r.status == 400 and "command" in r.error

        # an exec into an instance that is starting waits for the start
        api.action(top, "stop", timeout=0)
        api.action(db, "stop", timeout=0)
        r = api.request("PUT", f"/1.0/instances/{top}/state", {"action": "start"})
        assert r.status == 202
        time.sleep(0.3)  # db is still getting ready: top is starting
        # the exec runs once the start is done: its init runs, but its shell may have
        # made /tmp/t0 and not yet written it (CI: an empty read), so it is waited for
        wait_written = "for i in $(seq 100); do [ -s /tmp/t0 ] && break; sleep 0.05; done"
        code, out, _ = api.exec(top, ["sh", "-c", f"{wait_written}; cat /tmp/t0"])
        assert code == 0 and out
        api.wait(r)
    finally:
        remove_top_down(api, top, db)
        api.made.clear()


def test_exec_into_a_restarting_or_stopping_instance_waits(api: Api) -> None:
    name = new_name("settle")
    # SIGTERM is taken slowly: a stop takes about a second
    api.launch(name, cmd="sh -c 'trap \"sleep 1; exit 0\" TERM; while :; do sleep 0.1; done'")

    def init_start() -> bytes:  # the container init's start time: one per run
        return api.sh(name, "cat /proc/1/stat").split()[21]

    old = init_start()
    r = api.request("PUT", f"/1.0/instances/{name}/state", {"action": "restart", "timeout": 30})
    assert r.status == 202, r.body
    time.sleep(0.3)  # it is stopping
    code, out, _ = api.exec(name, ["cat", "/proc/1/stat"])  # waits for the restart
    assert api.wait(r)["status"] == "Success"
    assert code == 0 and out.split()[21] == init_start() != old  # ran in the new run

    r = api.request("PUT", f"/1.0/instances/{name}/state", {"action": "stop", "timeout": 30})
    assert r.status == 202, r.body
    time.sleep(0.3)
    x = api.request("POST", f"/1.0/instances/{name}/exec", {
        "command": ["true"], "wait-for-websocket": False, "record-output": True})
    # refused once the stop ended, as for any stopped instance (not a half-dead one)
    assert x.status == 400 and "not running" in x.error, x.body
    assert api.wait(r)["status"] == "Success" and api.status(name) == "Stopped"


def test_exec_into_a_stopped_instance(coved: Coved, api: Api) -> None:
    name = new_name("stopped")
    api.create(name, config={"cove.cmd": "sleep 1000", "environment.GREETING": "hi"})
    api.file_put(name, "/root/note", b"on its rootfs\n")
    r = api.request("POST", f"/1.0/instances/{name}/exec",
                    {"command": ["true"], "record-output": True})
    assert r.status == 400  # not without asking for it
    script = "cat /root/note; echo $GREETING; cat /proc/1/cmdline; echo made > /root/made; exit 3"
    body = {"command": ["sh", "-c", script],
            "record-output": True, "wait-for-websocket": False, "stopped": True}
    op = api.wait(api.request("POST", f"/1.0/instances/{name}/exec", body))
    assert op["status"] == "Success" and op["metadata"]["return"] == 3, op
    out = api.request("GET", op["metadata"]["output"]["1"]).body
    assert out.startswith(b"on its rootfs\nhi\nsh\x00-c\x00"), out
    assert api.status(name) == "Stopped"
    assert api.file_get(name, "/root/made").body == b"made\n"
    # the CLI, websockets and all; then the instance starts as usual
    p = subprocess.run([sys.executable, "-m", "cove.cli.main", "exec", "--stopped", name, "--",
                        "cat", "/root/made"], env=coved.cli_env(), capture_output=True,
                       timeout=60, check=False)
    assert (p.returncode, p.stdout) == (0, b"made\n"), p.stderr
    assert not [m for m in runc_ids(coved.root) if m.endswith(".exec")]
    api.action(name, "start")
    r = api.request("POST", f"/1.0/instances/{name}/exec", body)
    assert r.status == 400 or api.wait(r)["status"] == "Failure"


@pytest.mark.skipif(shutil.which("lxc") is None, reason="lxc (Debian package lxd-client) missing")
def test_lxc_start_and_stop_honour_dependencies(daemon: Coved, tmp_path: Path) -> None:
    api = daemon.api
    db, top = new_name("db"), new_name("top")
    api.create(db, config={"cove.cmd": SLOW_READY, "cove.ready": READY_PROBE})
    api.create(top, config={"cove.cmd": STARTED, "cove.depends": db})
    home = tmp_path / "covetest-lxchome"
    (home / "lxdconf").mkdir(parents=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "LXD_CONF": str(home / "lxdconf"), "LANG": "C.UTF-8"}

    def lxc(*args: str) -> None:
        p = subprocess.run([str(shutil.which("lxc")), *args], env=env, capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=120, check=False)
        assert p.returncode == 0, p.stderr

    lxc("remote", "add", "covetest-r", f"unix://{daemon.socket}")
    lxc("start", f"covetest-r:{top}")
    assert api.status(db) == "Running"
    assert uptime(api, top, "/tmp/t0") >= uptime(api, db, "/tmp/ready")
    lxc("stop", "--force", f"covetest-r:{db}")
    assert api.status(top) == "Stopped" and api.status(db) == "Stopped"
    remove_top_down(api, top, db)


def test_healthy_and_completed_conditions(api: Api) -> None:
    db, job, bad, top = new_name("db"), new_name("job"), new_name("bad"), new_name("top")
    twin = new_name("twin")
    # failures in the start period do not count (else it is unhealthy, and the
    # dependent's start fails at once, as Compose's service_healthy)
    api.create(db, config={"cove.cmd": SLOW_READY, "cove.health": READY_PROBE,
                           "cove.health.interval": "300ms", "cove.health.start_period": "20s",
                           "cove.health.start_interval": "200ms"})
    api.create(job, config={"cove.cmd": "sh -c 'sleep 1; cat /proc/uptime >> /tmp/done'"})
    api.create(bad, config={"cove.cmd": "sh -c 'echo failing; exit 3'"})
    api.create(top, config={"cove.cmd": STARTED,
                            "cove.depends": f"{db}:healthy,{job}:completed"})
    api.create(twin, config={"cove.cmd": STARTED, "cove.depends": f"{job}:completed"})

    def runs() -> int:
        return api.file_get(job, "/tmp/done").body.count(b"\n")

    try:
        api.action(top, "start")
        assert api.state(db)["cove"]["health"]["status"] == "healthy"
        assert api.status(job) == "Stopped"
        assert api.instance(job)["config"]["volatile.last_state.exit_code"] == "0"
        t0 = uptime(api, top, "/tmp/t0")
        assert t0 >= uptime(api, db, "/tmp/ready")
        assert runs() == 1
        # Compose's service_completed_successfully as `up` runs it: the
        # one-shot runs again for the next start of a dependent that ran
        # since (its old exit 0 does not count), and dependents started
        # together share one run (twin never ran: it takes top's)
        api.action(top, "stop", timeout=0)
        started = [api.request("PUT", f"/1.0/instances/{n}/state", {"action": "start"})
                   for n in (top, twin)]
        assert all(api.wait(r)["status"] == "Success" for r in started)
        assert runs() == 2
        assert uptime(api, top, "/tmp/t0") > t0
        api.action(twin, "stop", timeout=0)
        # one that fails fails its dependent's start
        api.action(top, "stop", timeout=0)
        api.sync("PATCH", f"/1.0/instances/{top}", {"config": {"cove.depends": f"{bad}:completed"}})
        op = api.wait(api.request("PUT", f"/1.0/instances/{top}/state", {"action": "start"}))
        assert op["status"] == "Failure" and bad in op["err"] and "exit status 3" in op["err"]
        assert api.status(top) == "Stopped"
    finally:
        remove_top_down(api, twin, top, bad, job, db)
        api.made.clear()


def test_a_dependency_that_died_while_coved_was_down_is_started_again(daemon: Coved) -> None:
    api = daemon.api
    db, top = new_name("db"), new_name("top")
    api.create(db, config={"cove.cmd": "sleep 1000"})
    api.create(top, config={"cove.cmd": "sleep 1000", "cove.depends": f"{db}:started"})
    api.action(top, "start")
    pid = api.state(db)["pid"]
    daemon.kill()
    os.kill(pid, signal.SIGKILL)  # db dies while no coved watches
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), what="db's end")
    daemon.start()
    # top kept running; its dependency is not left behind it
    wait_until(lambda: api.status(db) == "Running", 30, what="db started again")
    assert api.status(top) == "Running" and api.state(db)["pid"] != pid
    remove_top_down(api, top, db)
    assert_no_leaks(daemon.root)


def test_a_renamed_dependency_is_followed(api: Api) -> None:
    db, top = new_name("db"), new_name("top")
    api.create(db, config={"cove.cmd": "sleep 1000"})
    api.create(top, config={"cove.cmd": "sleep 1000", "cove.depends": f"{db}:started:restart"})
    moved, made = new_name("moved"), new_name("made")
    try:
        api.run("POST", f"/1.0/instances/{db}", {"name": moved})
        assert api.instance(top)["config"]["cove.depends"] == f"{moved}:started:restart"
        # a create with start starts what the new instance depends on first
        api.create(made, config={"cove.cmd": "sleep 1000", "cove.depends": f"{moved}:started",
                                 "cove.halt": "SIGKILL"}, start=True)
        assert api.status(moved) == "Running" and api.status(made) == "Running"
        api.action(top, "start")
    finally:
        remove_top_down(api, made, top, moved)
        api.made.clear()
