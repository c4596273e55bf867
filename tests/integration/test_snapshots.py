"""Instance snapshots against a real coved: LXD's REST calls, pylxd and
``lxc`` unchanged, names refused as LXD refuses them, and coved killed in
the middle of a snapshot or a restore."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pylxd
import pytest
from covetest import Coved, assert_no_leaks, mkroot, new_name, point_of, wait_until


@pytest.fixture
def daemon(make_coved: Callable[..., Coved], busybox_tar: Path,
           request: pytest.FixtureRequest) -> Coved:
    """A private coved, for the tests that kill or restart it (the others
    share the session's: ``shared_coved``); started armed at the test's
    failpoint, if it has one (its arm() then needs no restart)."""
    d = make_coved("snap", failpoints=point_of(request))
    d.api.import_image(busybox_tar, "busybox")
    return d


def _snap_dirs(d: Coved, name: str) -> list[str]:
    p = d.root / "instances" / name / "snapshots"
    return sorted(os.listdir(p)) if p.is_dir() else []


def _read(d: Coved, name: str, path: str) -> bytes | None:
    r = d.api.request("GET", f"/1.0/instances/{name}/files?path={path}")
    return r.body if r.status == 200 else None


def test_rest_snapshot_lifecycle(shared_coved: Coved) -> None:
    daemon = shared_coved
    api, name = daemon.api, new_name("snap")
    api.launch(name)
    api.sh(name, "echo before > /data; echo gone > /later-deleted")
    op = api.run("POST", f"/1.0/instances/{name}/snapshots", {"name": "s0"})
    assert op["resources"]["instances_snapshots"] == [f"/1.0/instances/{name}/snapshots/s0"]
    assert api.status(name) == "Running"  # thawed after the copy
    api.sh(name, "echo after > /data; rm /later-deleted; echo new > /new-file")
    # unnamed: snapshots.pattern's default, snap%d
    api.run("POST", f"/1.0/instances/{name}/snapshots", {})
    assert api.sync("GET", f"/1.0/instances/{name}/snapshots") == [
        f"/1.0/instances/{name}/snapshots/s0", f"/1.0/instances/{name}/snapshots/snap0"]
    objs = api.sync("GET", f"/1.0/instances/{name}/snapshots?recursion=1")
    assert [o["name"] for o in objs] == ["s0", "snap0"]
    one = api.sync("GET", f"/1.0/instances/{name}/snapshots/s0")
    assert one["stateful"] is False and one["size"] > 0
    assert one["expires_at"] == "0001-01-01T00:00:00Z"
    assert one["config"]["cove.cmd"] == "sleep 1000"
    # restore of a running instance: stopped, restored, started again
    api.run("PUT", f"/1.0/instances/{name}", {"restore": "s0"})
    assert api.status(name) == "Running"
    assert api.sh(name, "cat /data; cat /later-deleted; test -e /new-file || echo no") == \
        b"before\ngone\nno\n"
    # rename, expiry, delete
    api.run("POST", f"/1.0/instances/{name}/snapshots/s0", {"name": "first"})
    api.request("PATCH", f"/1.0/instances/{name}/snapshots/first",
                {"expires_at": "2099-01-02T03:04:05Z"})
    assert api.sync("GET", f"/1.0/instances/{name}/snapshots/first")["expires_at"] == \
        "2099-01-02T03:04:05Z"
    api.run("DELETE", f"/1.0/instances/{name}/snapshots/snap0")
    assert len(_snap_dirs(daemon, name)) == 1
    r = api.request("GET", f"/1.0/instances/{name}/snapshots/snap0")
    assert r.status == 404
    # a rename of the instance carries its snapshots
    api.action(name, "stop", force=True)
    new = new_name("snap")
    api.run("POST", f"/1.0/instances/{name}", {"name": new})
    api.made.append(new)
    assert [o["name"] for o in api.sync(
        "GET", f"/1.0/instances/{new}/snapshots?recursion=1")] == ["first"]
    api.run("PUT", f"/1.0/instances/{new}", {"restore": "first"})
    assert _read(daemon, new, "/data") == b"before\n"
    api.remove(new)
    assert_no_leaks(daemon.root, [name, new])


def test_snapshot_bad_input(shared_coved: Coved) -> None:
    daemon = shared_coved
    api, name = daemon.api, new_name("snap")
    api.create(name)
    for bad in ("a/b", "..", ".", " x", "x\n"):
        r = api.request("POST", f"/1.0/instances/{name}/snapshots", {"name": bad})
        assert r.status == 400, (bad, r.body)
        assert "snapshot name" in r.error.lower()
    r = api.request("POST", f"/1.0/instances/{name}/snapshots", {"name": "s", "stateful": True})
    assert r.status == 400 and "stateful" in r.error
    r = api.request("POST", f"/1.0/instances/{name}/snapshots", {"name": 3})
    assert r.status == 400 and "'name'" in r.error
    r = api.request("POST", f"/1.0/instances/{name}/snapshots",
                    {"name": "s", "expires_at": "tomorrow"})
    assert r.status == 400 and "expires_at" in r.error
    r = api.request("PATCH", f"/1.0/instances/{name}", {"config": {"snapshots.expiry": "3q"}})
    assert r.status == 400 and "snapshots.expiry" in r.error
    r = api.request("PATCH", f"/1.0/instances/{name}",
                    {"config": {"snapshots.schedule": "every day"}})
    assert r.status == 400 and "snapshots.schedule" in r.error
    assert api.request("POST", "/1.0/instances/covetest-none/snapshots",
                       {"name": "s"}).status == 404
    r = api.request("PUT", f"/1.0/instances/{name}", {"restore": "nope"})
    assert r.status == 404
    api.run("POST", f"/1.0/instances/{name}/snapshots", {"name": "s"})
    r = api.request("POST", f"/1.0/instances/{name}/snapshots", {"name": "s"})
    assert r.status == 409
    r = api.request("POST", f"/1.0/instances/{name}/snapshots/s", {"name": "../x"})
    assert r.status == 400
    assert _snap_dirs(daemon, name) and not any(e.startswith(".") for e in _snap_dirs(daemon, name))
    api.remove(name)
    assert_no_leaks(daemon.root, [name])


def test_snapshot_expiry_from_config(shared_coved: Coved) -> None:
    daemon = shared_coved
    api, name = daemon.api, new_name("snap")
    api.create(name, config={"snapshots.expiry": "2d", "snapshots.pattern": "auto-%d"})
    api.run("POST", f"/1.0/instances/{name}/snapshots", {})
    one = api.sync("GET", f"/1.0/instances/{name}/snapshots/auto-0")
    assert one["expires_at"].startswith("20") and one["expires_at"] != one["created_at"]
    api.remove(name)


def test_pylxd_snapshots(shared_coved: Coved) -> None:
    daemon = shared_coved
    client = pylxd.Client(endpoint="http+unix://" + urllib.parse.quote(str(daemon.socket),
                                                                       safe=""))
    name = new_name("pysnap")
    daemon.api.launch(name)
    inst = client.instances.get(name)
    inst.files.put("/f", b"one\n")
    snap = inst.snapshots.create("p0", wait=True)
    assert snap.name == "p0"
    inst.files.put("/f", b"two\n")
    assert [s.name for s in inst.snapshots.all()] == ["p0"]
    got = inst.snapshots.get("p0")
    assert got.name == "p0" and got.stateful is False
    inst.restore_snapshot("p0", wait=True)
    assert inst.files.get("/f") == b"one\n"
    got.rename("p1", wait=True)
    assert [s.name for s in inst.snapshots.all()] == ["p1"]
    inst.snapshots.get("p1").delete(wait=True)
    assert inst.snapshots.all() == []
    daemon.api.remove(name)


LXC = shutil.which("lxc")


@pytest.mark.skipif(LXC is None, reason="lxc (Debian package lxd-client) missing")
def test_lxc_snapshot_restore_info(shared_coved: Coved) -> None:
    daemon = shared_coved
    home = mkroot("lxchome")
    (home / "lxdconf").mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "LXD_CONF": str(home / "lxdconf"), "LANG": "C.UTF-8"}
    assert LXC is not None

    def lxc(*args: str) -> str:
        p = subprocess.run([LXC, *args], env=env, capture_output=True, timeout=60,
                           stdin=subprocess.DEVNULL, check=False)
        assert p.returncode == 0, f"lxc {args}: {p.stderr.decode(errors='replace')}"
        return p.stdout.decode()

    name = new_name("lxsnap")
    try:
        lxc("remote", "add", "covetest-r", f"unix://{daemon.socket}")
        daemon.api.launch(name)
        daemon.api.sh(name, "echo kept > /k")
        lxc("snapshot", f"covetest-r:{name}", "l0")
        lxc("snapshot", f"covetest-r:{name}")
        daemon.api.sh(name, "echo changed > /k")
        info = lxc("info", f"covetest-r:{name}")
        assert "Snapshots:" in info and "l0" in info and "snap0" in info, info
        lxc("restore", f"covetest-r:{name}", "l0")
        assert daemon.api.sh(name, "cat /k") == b"kept\n"
        lxc("rename", f"covetest-r:{name}/snap0", f"covetest-r:{name}/second")
        lxc("delete", f"covetest-r:{name}/second")
        info = lxc("info", f"covetest-r:{name}")
        assert "second" not in info.split("Snapshots:")[-1], info
    finally:
        shutil.rmtree(home, ignore_errors=True)
    daemon.api.remove(name)




@pytest.mark.parametrize("point", ["snapshot.after-copy", "snapshot.after-rename",
                                   "snapshot-delete.after-row", "restore.after-old",
                                   "restore.after-swap"])
def test_snapshot_killed_half_way(daemon: Coved, point: str) -> None:
    api, name = daemon.api, new_name("snapk")
    api.create(name)
    api.file_put(name, "/v", b"first\n")
    mark = {"config": {"user.mark": "snap"}}
    api.sync("PATCH", f"/1.0/instances/{name}", mark)
    if point.startswith(("snapshot-delete", "restore")):
        api.run("POST", f"/1.0/instances/{name}/snapshots", {"name": "s"})
        api.file_put(name, "/v", b"second\n")
        api.sync("PATCH", f"/1.0/instances/{name}", {"config": {"user.mark": "later"}})
    daemon.arm(point)
    with contextlib.suppress(OSError):  # coved may die before it answers
        if point.startswith("snapshot."):
            api.request("POST", f"/1.0/instances/{name}/snapshots", {"name": "s"})
        elif point.startswith("snapshot-delete"):
            api.request("DELETE", f"/1.0/instances/{name}/snapshots/s")
        else:
            api.request("PUT", f"/1.0/instances/{name}", {"restore": "s"})
    daemon.revive()
    snaps = api.sync("GET", f"/1.0/instances/{name}/snapshots")
    dirs = _snap_dirs(daemon, name)
    # whole or nothing: one directory per row, no temporary ones
    assert len(dirs) == len(snaps), (dirs, snaps)
    inst_dir = daemon.root / "instances" / name
    assert sorted(os.listdir(inst_dir)) == sorted(
        e for e in ["upper", "work", "rootfs", "snapshots", "logs", "config.json",
                    "console.log"] if (inst_dir / e).exists())
    if point.startswith("restore"):  # the restore was finished at startup: files and config
        assert _read(daemon, name, "/v") == b"first\n"
        config = api.sync("GET", f"/1.0/instances/{name}")["config"]
        assert config["user.mark"] == "snap"
    elif point == "snapshot-delete.after-row":
        assert snaps == [] and _read(daemon, name, "/v") == b"second\n"
    else:
        assert snaps == [] and _read(daemon, name, "/v") == b"first\n"
    api.run("PUT", f"/1.0/instances/{name}/state", {"action": "start"})
    api.remove(name)
    assert_no_leaks(daemon.root, [name])


def test_cove_snapshot_cli(shared_coved: Coved) -> None:
    daemon = shared_coved
    import json
    import sys

    def cove(*args: str, ok: bool = True) -> subprocess.CompletedProcess[bytes]:
        p = subprocess.run([sys.executable, "-m", "cove.cli.main", *args],
                           env=daemon.cli_env(), capture_output=True, timeout=60,
                           stdin=subprocess.DEVNULL, check=False)
        assert (p.returncode == 0) == ok, (args, p.stderr)
        return p

    name = new_name("clisnap")
    daemon.api.launch(name)
    daemon.api.sh(name, "echo v1 > /v")
    cove("snapshot", "create", name, "one")
    cove("snapshot", "create", name)
    rows = json.loads(cove("snapshot", "list", name, "--format", "json").stdout)
    assert [r["name"] for r in rows] == ["one", "snap0"]
    info = cove("info", name).stdout.decode()
    assert "Snapshots:" in info and "  one (taken at" in info, info
    daemon.api.sh(name, "echo v2 > /v")
    cove("snapshot", "restore", name, "one")
    assert daemon.api.sh(name, "cat /v") == b"v1\n"
    cove("snapshot", "rename", name, "snap0", "two")
    cove("snapshot", "delete", name, "one", "two")
    assert json.loads(cove("snapshot", "list", name, "--format", "json").stdout) == []
    err = cove("snapshot", "create", name, "a/b", ok=False).stderr.decode()
    assert "Traceback" not in err and "snapshot name" in err.lower(), err
    assert "Snapshots:" not in cove("info", name).stdout.decode()
    daemon.api.remove(name)


def test_coved_expires_and_schedules(make_coved: Callable[..., Coved],
                                     busybox_tar: Path) -> None:
    import time

    daemon = make_coved("snap", start=False)  # started with the fast tick, not restarted
    daemon.env = {"COVE_SNAPSHOT_TICK": "0.5"}
    daemon.start()
    daemon.api.import_image(busybox_tar, "busybox")
    api, name = daemon.api, new_name("sched")
    api.launch(name, config={"snapshots.schedule": "@startup",
                             "snapshots.pattern": "boot%d"})
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    api.run("POST", f"/1.0/instances/{name}/snapshots", {"name": "brief", "expires_at": soon})
    api.run("POST", f"/1.0/instances/{name}/snapshots", {"name": "kept"})
    path = f"/1.0/instances/{name}/snapshots"
    wait_until(lambda: api.sync("GET", path) == [f"{path}/kept"]
               and len(_snap_dirs(daemon, name)) == 1, 15,
               what="the expired snapshot deleted by coved, row and files")
    # @startup: taken when coved starts (the instance is running)
    daemon.stop()
    daemon.start()
    wait_until(lambda: f"{path}/boot0" in api.sync("GET", path), 15,
               what="the @startup snapshot")
    api.remove(name)
    assert_no_leaks(daemon.root, [name])


def test_snapshots_in_a_project(shared_coved: Coved) -> None:
    daemon = shared_coved
    api = daemon.api
    proj = "covetestsp"
    api.sync("POST", "/1.0/projects", {"name": proj, "config": {
        "features.images": "false", "features.profiles": "false"}})
    name = new_name("psnap")
    try:
        api.run("POST", f"/1.0/instances?project={proj}", {
            "name": name, "source": {"type": "image", "alias": "busybox"}})
        op = api.run("POST", f"/1.0/instances/{name}/snapshots?project={proj}", {"name": "s"})
        assert op["resources"]["instances_snapshots"] == [
            f"/1.0/instances/{name}/snapshots/s?project={proj}"]
        assert api.sync("GET", f"/1.0/instances/{name}/snapshots?project={proj}") == [
            f"/1.0/instances/{name}/snapshots/s?project={proj}"]
        # not visible from the default project
        assert api.request("GET", f"/1.0/instances/{name}/snapshots").status == 404
        api.run("PUT", f"/1.0/instances/{name}?project={proj}", {"restore": "s"})
        assert _snap_dirs(daemon, f"{proj}_{name}")
        api.run("DELETE", f"/1.0/instances/{name}?project={proj}")
        assert not (daemon.root / "instances" / f"{proj}_{name}").exists()
    finally:
        api.request("DELETE", f"/1.0/projects/{proj}")


def test_restore_keeps_a_running_ephemeral_instance(shared_coved: Coved) -> None:
    daemon = shared_coved
    api, name = daemon.api, new_name("eph")
    api.launch(name, ephemeral=True)
    api.sh(name, "echo a > /e")
    api.run("POST", f"/1.0/instances/{name}/snapshots", {"name": "s"})
    api.sh(name, "echo b > /e")
    api.run("PUT", f"/1.0/instances/{name}", {"restore": "s"})
    assert api.status(name) == "Running"
    assert api.sh(name, "cat /e") == b"a\n"
    api.remove(name)
    assert_no_leaks(daemon.root, [name])
