"""Containers outlive coved (SIGTERM or SIGKILL); a new coved reconciles:
exits that happened meanwhile, a simulated reboot, a launch killed half-way."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from covetest import (
    Coved,
    assert_no_leaks,
    conmon_pids,
    monitors_of,
    mounts_under,
    new_name,
    pid_alive,
    runc_ids,
    wait_until,
)


@pytest.fixture
def daemon(make_coved, busybox_tar: Path) -> Coved:  # type: ignore[no-untyped-def]
    d = make_coved("recover")
    d.api.import_image(busybox_tar, "busybox")
    return d


def test_containers_survive_coved_sigterm_and_sigkill(daemon: Coved) -> None:
    api = daemon.api
    names = [new_name("live"), new_name("live")]
    for n in names:
        api.launch(n)
    pids = {n: api.state(n)["pid"] for n in names}
    monitors = conmon_pids(daemon.root)  # one they share (conmon: one each), no other
    assert sorted(set(monitors_of(daemon.root, names).values())) == sorted(monitors)

    assert daemon.stop() == 0  # SIGTERM: a clean stop
    assert all(pid_alive(p) for p in pids.values())
    assert sorted(conmon_pids(daemon.root)) == sorted(monitors)
    daemon.start()
    for n in names:
        st = api.state(n)
        assert (st["status"], st["pid"]) == ("Running", pids[n])
        assert api.sh(n, "hostname") == f"{n}\n".encode()

    daemon.kill()  # SIGKILL: no chance to tidy up
    assert all(pid_alive(p) for p in pids.values())
    daemon.start()
    for n in names:
        st = api.state(n)
        assert (st["status"], st["pid"]) == ("Running", pids[n])
        assert api.sh(n, "echo still here") == b"still here\n"

    # the new coved still watches them: a stop is recorded, with its exit code
    api.action(names[0], "stop", force=True)
    assert api.status(names[0]) == "Stopped"
    assert not pid_alive(pids[names[0]])
    os.kill(pids[names[1]], 9)  # dies behind coved's back
    wait_until(lambda: api.status(names[1]) == "Stopped", what="the exit to be noticed")
    assert api.instance(names[1])["config"]["volatile.last_state.exit_code"] == "137"
    assert_no_leaks(daemon.root, names, existing=True)
    wait_until(lambda: conmon_pids(daemon.root) == [], what="the monitors to go")
    assert mounts_under(daemon.root) == []


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_exit_while_coved_is_down_is_recorded(daemon: Coved, how: str) -> None:
    api = daemon.api
    name, eph, stays = new_name("exit"), new_name("eph"), new_name("stay")
    api.launch(name, "sh -c 'sleep 1; exit 4'")
    api.launch(eph, "sh -c 'sleep 1; exit 0'", ephemeral=True)
    api.launch(stays)
    pid = api.state(name)["pid"]
    if how == "sigkill":
        daemon.kill()
    else:
        assert daemon.stop() == 0
    wait_until(lambda: not pid_alive(pid), timeout=10, what="the container to exit")
    time.sleep(0.3)
    daemon.start()
    inst = api.instance(name)
    assert inst["status"] == "Stopped"
    assert inst["config"]["volatile.last_state.exit_code"] == "4"
    assert api.request("GET", f"/1.0/instances/{eph}").status == 404
    assert api.status(stays) == "Running"
    assert_no_leaks(daemon.root, [eph])
    assert_no_leaks(daemon.root, [name], existing=True)
    # and it starts again like any stopped instance
    api.action(name, "start")
    wait_until(lambda: api.status(name) == "Stopped", what="the second run to end")
    assert api.instance(name)["config"]["volatile.last_state.exit_code"] == "4"


def test_simulated_reboot(daemon: Coved) -> None:
    api = daemon.api
    auto, plain = new_name("auto"), new_name("plain")
    api.launch(auto, config={"boot.autostart": "true"})
    api.launch(plain)
    api.file_put(auto, "/root/covetest-kept", b"survives the reboot\n")
    old_pid = api.state(auto)["pid"]

    daemon.kill()
    runc_root = daemon.root / "run" / "runc"
    for cid in runc_ids(daemon.root):
        subprocess.run(["runc", "--root", str(runc_root), "kill", cid, "KILL"],
                       capture_output=True, check=False, timeout=30)
        subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", cid],
                       capture_output=True, check=True, timeout=30)
    wait_until(lambda: not conmon_pids(daemon.root), what="the monitors to go")
    shutil.rmtree(daemon.root / "run")

    daemon.start()
    assert api.status(plain) == "Stopped"
    st = api.state(auto)
    assert st["status"] == "Running" and st["pid"] not in (0, old_pid)
    assert api.sh(auto, "cat /root/covetest-kept") == b"survives the reboot\n"
    assert_no_leaks(daemon.root, [plain], existing=True)
    assert runc_ids(daemon.root) == [auto]
    # the stopped one starts normally
    api.action(plain, "start")
    assert api.sh(plain, "hostname") == f"{plain}\n".encode()


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.08, 0.2])
def test_coved_killed_during_launch_cleans_up(daemon: Coved, delay: float) -> None:
    api = daemon.api
    name = new_name("crash")
    r = api.request("POST", "/1.0/instances", {
        "name": name, "source": {"type": "image", "alias": "busybox"},
        "config": {"cove.cmd": "sleep 1000"}, "start": True})
    assert r.status == 202, r.body
    time.sleep(delay)
    daemon.kill()
    daemon.start()

    resp = api.request("GET", f"/1.0/instances/{name}")
    if resp.status == 404:
        assert_no_leaks(daemon.root)
        return
    status = resp.metadata["status"]
    assert status in ("Stopped", "Running"), status
    if status == "Stopped":
        assert_no_leaks(daemon.root, [name], existing=True)
        assert (daemon.root / "instances" / name / "rootfs").is_dir()
        api.action(name, "start")  # a half-made instance must still be usable
    assert api.sh(name, "hostname") == f"{name}\n".encode()
    assert runc_ids(daemon.root) == [name]
    assert len(conmon_pids(daemon.root)) == 1
    api.remove(name)
    assert_no_leaks(daemon.root)
