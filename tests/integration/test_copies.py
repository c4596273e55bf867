"""Copies and rebuilds against a real coved: LXD's REST bodies, pylxd and
``lxc copy``/``lxc move``/``lxc rebuild`` unchanged, bad sources refused with
LXD's statuses, and coved killed in the middle of a copy or a rebuild."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pylxd
import pytest
from covetest import Coved, assert_no_leaks, mkroot, new_name, point_of


@pytest.fixture
def daemon(make_coved: Callable[..., Coved], busybox_tar: Path,
           request: pytest.FixtureRequest) -> Coved:
    """A private coved, for the tests that kill it or look at the whole root
    (the others share the session's: ``shared_coved``), started armed at
    the test's failpoint parameter, if any (its arm() then needs no restart)."""
    d = make_coved("copy", failpoints=point_of(request))
    d.api.import_image(busybox_tar, "busybox")
    return d


def _read(d: Coved, name: str, path: str) -> bytes | None:
    r = d.api.request("GET", f"/1.0/instances/{name}/files?path={path}")
    return r.body if r.status == 200 else None


def _dirs(d: Coved) -> list[str]:
    return sorted(os.listdir(d.root / "instances"))


def _copy(src: str, dst: str, **source: object) -> dict[str, object]:
    return {"name": dst, "source": {"type": "copy", "source": src, **source}}


def test_rest_copy_of_a_running_instance(shared_coved: Coved) -> None:
    daemon = shared_coved
    api, src, dst = daemon.api, new_name("src"), new_name("dst")
    api.create(src, config={"user.k": "v", "cove.cmd": "sleep 1000"})
    api.request("PATCH", f"/1.0/instances/{src}",
                {"devices": {"d0": {"type": "none"}}, "description": "the source"})
    api.run("PUT", f"/1.0/instances/{src}/state", {"action": "start"})
    api.sh(src, "echo one > /data; rm /bin/true")  # a whiteout in the upper layer
    api.run("POST", f"/1.0/instances/{src}/snapshots", {"name": "s0"})
    api.sh(src, "echo two > /data")
    op = api.run("POST", "/1.0/instances", _copy(src, dst))
    api.made.append(dst)
    assert f"/1.0/instances/{dst}" in op["resources"]["instances"]
    assert op["metadata"]["progress"] == {"stage": "Copying the upper layer", "percent": "100"}
    assert api.status(src) == "Running"  # thawed after the copy
    got = api.instance(dst)
    assert got["status"] == "Stopped" and got["profiles"] == ["default"]
    assert got["config"]["user.k"] == "v"
    assert got["config"]["volatile.base_image"]
    assert not any(k.startswith("volatile.last_state") for k in got["config"])
    assert got["devices"] == {"d0": {"type": "none"}}
    assert got["description"] == ""  # the request's, as LXD (lxc sends the source's)
    assert [s["name"] for s in api.sync(
        "GET", f"/1.0/instances/{dst}/snapshots?recursion=1")] == ["s0"]
    api.run("PUT", f"/1.0/instances/{dst}/state", {"action": "start"})
    assert api.sh(dst, "cat /data; test -e /bin/true || echo gone") == b"two\ngone\n"
    # the copy is its own: a change to it is not the source's
    api.sh(dst, "echo three > /data")
    assert api.sh(src, "cat /data") == b"two\n"
    mac = {n: api.state(n)["network"]["eth0"]["hwaddr"] for n in (src, dst)}
    assert mac[src] != mac[dst]
    # its snapshot restores the source's files as they were
    api.run("PUT", f"/1.0/instances/{dst}", {"restore": "s0"})
    assert api.sh(dst, "cat /data") == b"one\n"
    api.remove(dst)
    api.remove(src)
    assert_no_leaks(daemon.root, [src, dst])


def test_rest_copy_of_a_snapshot_and_instance_only(shared_coved: Coved) -> None:
    daemon = shared_coved
    api, src = daemon.api, new_name("src")
    one, two = new_name("fromsnap"), new_name("only")
    api.create(src)
    api.file_put(src, "/v", b"in snapshot\n")
    api.run("POST", f"/1.0/instances/{src}/snapshots", {"name": "s0"})
    api.file_put(src, "/v", b"later\n")
    api.run("POST", "/1.0/instances", {**_copy(f"{src}/s0", one), "profiles": [],
                                       "config": {"user.extra": "1"}})
    api.made.append(one)
    got = api.instance(one)
    assert got["profiles"] == [] and got["config"]["user.extra"] == "1"
    assert _read(daemon, one, "/v") == b"in snapshot\n"
    assert api.sync("GET", f"/1.0/instances/{one}/snapshots") == []
    api.run("POST", "/1.0/instances", {**_copy(src, two, instance_only=True), "start": True,
                                       "config": {"cove.cmd": "sleep 1000"}})
    api.made.append(two)
    assert api.sync("GET", f"/1.0/instances/{two}/snapshots") == []
    assert api.status(two) == "Running"
    assert api.sh(two, "cat /v") == b"later\n"
    for n in (one, two, src):
        api.remove(n)
    assert_no_leaks(daemon.root, [src, one, two])


def test_copy_refused_as_lxd_refuses(daemon: Coved) -> None:
    api, src = daemon.api, new_name("src")
    api.create(src)
    cases = [
        ({"name": "x", "source": {"type": "copy"}}, 400),           # no source
        (_copy("covetest-nothere", "x"), 404),
        (_copy(f"{src}/nosnap", "x"), 404),
        (_copy(src, "bad_name"), 400),
        (_copy("covetest-nothere", "bad_name"), 404),  # the source is looked up first, as LXD
        (_copy(src, src), 409),
        (_copy(src, "x", project="nothere"), 404),
        ({**_copy(src, "x"), "profiles": ["nothere"]}, 404),
        ({**_copy(src, "x"), "config": {"nonsense.key": "1"}}, 400),
    ]
    for body, status in cases:
        r = api.request("POST", "/1.0/instances", body)
        assert r.status == status, (body, r.status, r.body[:200])
    assert api.names() == [src] and _dirs(daemon) == [src]
    api.remove(src)


def test_copy_across_projects(daemon: Coved) -> None:
    api, src = daemon.api, new_name("src")
    r = api.request("POST", "/1.0/projects", {"name": "covetestp", "config": {
        "features.images": "false", "features.profiles": "false"}})
    assert r.status == 201, r.body
    api.create(src)
    api.file_put(src, "/v", b"x\n")
    try:
        api.run("POST", "/1.0/instances?project=covetestp",
                _copy(src, "other", project="default"))
        r = api.request("GET", "/1.0/instances/other/files?path=/v&project=covetestp")
        assert r.status == 200 and r.body == b"x\n"
        assert os.path.isdir(daemon.root / "instances" / "covetestp_other")
    finally:
        api.request("DELETE", "/1.0/instances/other?project=covetestp")
        api.request("DELETE", "/1.0/projects/covetestp")
    api.remove(src)


def test_rebuild(shared_coved: Coved) -> None:
    daemon = shared_coved
    api, name = daemon.api, new_name("reb")
    api.create(name, config={"user.k": "v", "cove.cmd": "sleep 1000"})
    api.file_put(name, "/v", b"old\n")
    api.run("POST", f"/1.0/instances/{name}/snapshots", {"name": "s0"})
    fp = api.instance(name)["config"]["volatile.base_image"]
    # running: refused, as LXD
    api.run("PUT", f"/1.0/instances/{name}/state", {"action": "start"})
    r = api.request("POST", f"/1.0/instances/{name}/rebuild",
                    {"source": {"type": "image", "alias": "busybox"}})
    assert r.status == 400 and "must be stopped" in r.body.decode(), r.body
    api.action(name, "stop", force=True)
    for body, status in [({}, 400), ({"source": {"type": "copy"}}, 400),
                         ({"source": {"type": "image", "alias": "nothere"}}, 404)]:
        r = api.request("POST", f"/1.0/instances/{name}/rebuild", body)
        assert r.status == status, (body, r.status, r.body[:200])
    api.run("POST", f"/1.0/instances/{name}/rebuild",
            {"source": {"type": "image", "alias": "busybox"}})
    got = api.instance(name)
    assert got["config"]["user.k"] == "v" and got["config"]["volatile.base_image"] == fp
    assert _read(daemon, name, "/v") is None  # a new, empty upper layer
    assert _read(daemon, name, "/bin/busybox")
    assert [s["name"] for s in api.sync(
        "GET", f"/1.0/instances/{name}/snapshots?recursion=1")] == ["s0"]
    # empty: no image at all; a snapshot taken before brings its image back
    api.run("POST", f"/1.0/instances/{name}/rebuild", {"source": {"type": "none"}})
    got = api.instance(name)
    assert "volatile.base_image" not in got["config"]
    assert not any(k.startswith("image.") for k in got["config"])
    assert _read(daemon, name, "/bin/busybox") is None
    api.run("PUT", f"/1.0/instances/{name}", {"restore": "s0"})
    assert _read(daemon, name, "/v") == b"old\n"
    api.run("PUT", f"/1.0/instances/{name}/state", {"action": "start"})
    assert api.sh(name, "cat /v") == b"old\n"
    api.remove(name)
    assert_no_leaks(daemon.root, [name])


def test_pylxd_copy(shared_coved: Coved) -> None:
    daemon = shared_coved
    client = pylxd.Client(endpoint=f"http+unix://{str(daemon.socket).replace('/', '%2F')}")
    src, dst = new_name("pysrc"), new_name("pydst")
    daemon.api.create(src)
    daemon.api.file_put(src, "/v", b"py\n")
    inst = client.instances.create(
        {"name": dst, "source": {"type": "copy", "source": src}}, wait=True)
    daemon.api.made.append(dst)
    assert inst.name == dst and inst.status == "Stopped"
    assert _read(daemon, dst, "/v") == b"py\n"
    daemon.api.remove(dst)
    daemon.api.remove(src)


LXC = shutil.which("lxc")


@pytest.fixture
def lxc(daemon: Coved) -> Iterator[Callable[..., str]]:
    if LXC is None:
        pytest.skip("lxc (Debian package lxd-client) missing")
    home = mkroot("lxchome")
    (home / "lxdconf").mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "LXD_CONF": str(home / "lxdconf"), "LANG": "C.UTF-8"}
    assert LXC is not None
    lxc_path = LXC

    def run(*args: str) -> str:
        p = subprocess.run([lxc_path, *args], env=env, capture_output=True, timeout=60,
                           stdin=subprocess.DEVNULL, check=False)
        assert p.returncode == 0, f"lxc {args}: {p.stderr.decode(errors='replace')}"
        return p.stdout.decode()

    run("remote", "add", "covetest-r", f"unix://{daemon.socket}")
    yield run
    shutil.rmtree(home, ignore_errors=True)


def test_lxc_copy_move(daemon: Coved, lxc: Callable[..., str]) -> None:
    api = daemon.api
    src, dst, fromsnap, moved = (new_name(p) for p in ("lxs", "lxd", "lxf", "lxm"))
    api.create(src, config={"user.k": "v"})
    api.file_put(src, "/v", b"first\n")
    lxc("snapshot", f"covetest-r:{src}", "s0")
    api.file_put(src, "/v", b"second\n")
    lxc("copy", f"covetest-r:{src}", f"covetest-r:{dst}")
    api.made.append(dst)
    assert api.instance(dst)["config"]["user.k"] == "v"
    assert "s0" in lxc("info", f"covetest-r:{dst}").split("Snapshots:")[-1]
    assert _read(daemon, dst, "/v") == b"second\n"
    lxc("copy", f"covetest-r:{src}/s0", f"covetest-r:{fromsnap}")
    api.made.append(fromsnap)
    assert _read(daemon, fromsnap, "/v") == b"first\n"
    only = new_name("lxo")
    lxc("copy", f"covetest-r:{src}", f"covetest-r:{only}", "--instance-only",
        "-c", "user.k=w")  # lxc asks for container_only_migration first
    api.made.append(only)
    assert api.sync("GET", f"/1.0/instances/{only}/snapshots") == []
    assert api.instance(only)["config"]["user.k"] == "w"
    api.remove(only)
    lxc("move", f"covetest-r:{dst}", f"covetest-r:{moved}")
    api.made.append(moved)
    assert sorted(api.names()) == sorted([src, fromsnap, moved])
    assert _read(daemon, moved, "/v") == b"second\n"
    for n in (src, fromsnap, moved):
        api.remove(n)
    assert_no_leaks(daemon.root, [src, dst, fromsnap, moved])


@pytest.mark.parametrize("point", ["copy.after-files", "copy.after-rename", "copy.after-row"])
def test_copy_killed_half_way(daemon: Coved, point: str) -> None:
    api, src, dst = daemon.api, new_name("src"), new_name("dst")
    api.create(src)
    api.file_put(src, "/v", b"kept\n")
    api.run("POST", f"/1.0/instances/{src}/snapshots", {"name": "s0"})
    daemon.arm(point)
    with contextlib.suppress(OSError):  # coved may die before it answers
        api.request("POST", "/1.0/instances", _copy(src, dst))
    daemon.revive()
    if point == "copy.after-row":  # whole: its files, its snapshot
        assert sorted(api.names()) == sorted([src, dst]) and _dirs(daemon) == sorted([src, dst])
        assert _read(daemon, dst, "/v") == b"kept\n"
        assert api.sync("GET", f"/1.0/instances/{dst}/snapshots") == [
            f"/1.0/instances/{dst}/snapshots/s0"]
        api.remove(dst)
    else:  # absent, and nothing left of it
        assert api.names() == [src] and _dirs(daemon) == [src]
    assert _read(daemon, src, "/v") == b"kept\n"  # the source untouched
    assert len(os.listdir(daemon.root / "instances" / src / "snapshots")) == 1
    api.remove(src)
    assert_no_leaks(daemon.root, [src, dst])


@pytest.mark.parametrize("point", ["rebuild.after-intent", "rebuild.after-old",
                                   "rebuild.after-swap"])
def test_rebuild_killed_half_way(daemon: Coved, point: str) -> None:
    api, name = daemon.api, new_name("rebk")
    api.create(name, config={"cove.cmd": "sleep 1000", "user.k": "v"})
    api.file_put(name, "/v", b"old\n")
    daemon.arm(point)
    with contextlib.suppress(OSError):
        api.request("POST", f"/1.0/instances/{name}/rebuild", {"source": {"type": "none"}})
    daemon.revive()
    # the intent was recorded first: the next coved does the rebuild again, whole
    d = daemon.root / "instances" / name
    assert sorted(p for p in os.listdir(d) if p.startswith(".")) == []
    got = api.instance(name)
    assert "volatile.base_image" not in got["config"] and got["config"]["user.k"] == "v"
    assert _read(daemon, name, "/v") is None and _read(daemon, name, "/bin/busybox") is None
    api.run("POST", f"/1.0/instances/{name}/rebuild",
            {"source": {"type": "image", "alias": "busybox"}})
    api.run("PUT", f"/1.0/instances/{name}/state", {"action": "start"})
    api.remove(name)
    assert_no_leaks(daemon.root, [name])


def test_cove_cli_copy_move_rebuild(shared_coved: Coved) -> None:
    daemon = shared_coved
    import sys

    def cove(*args: str, ok: bool = True) -> subprocess.CompletedProcess[bytes]:
        p = subprocess.run([sys.executable, "-m", "cove.cli.main", *args],
                           env=daemon.cli_env(), capture_output=True, timeout=120,
                           stdin=subprocess.DEVNULL, check=False)
        assert (p.returncode == 0) == ok, (args, p.returncode, p.stderr)
        return p

    api = daemon.api
    src, dst, moved = new_name("clis"), new_name("clid"), new_name("clim")
    api.create(src, config={"user.a": "1"})
    api.file_put(src, "/v", b"cli\n")
    api.run("POST", f"/1.0/instances/{src}/snapshots", {"name": "s0"})
    cove("copy", src, dst, "--instance-only", "-c", "user.b=2", "--no-profiles")
    api.made.append(dst)
    got = api.instance(dst)
    assert got["config"]["user.a"] == "1" and got["config"]["user.b"] == "2"
    assert got["profiles"] == []
    assert api.sync("GET", f"/1.0/instances/{dst}/snapshots") == []
    assert b"--instance-only" in cove("copy", f"{src}/s0", "x", "--instance-only",
                                      ok=False).stderr
    cove("move", dst, moved)
    api.made.append(moved)
    assert _read(daemon, moved, "/v") == b"cli\n"
    cove("rebuild", moved, "busybox")
    assert _read(daemon, moved, "/v") is None and _read(daemon, moved, "/bin/busybox")
    cove("rebuild", moved, "--empty")
    assert _read(daemon, moved, "/bin/busybox") is None
    assert b"not found" in cove("copy", "covetest-none", "y", ok=False).stderr.lower()
    for n in (src, moved):
        api.remove(n)
    assert_no_leaks(daemon.root, [src, dst, moved])


def test_copy_on_a_full_disk_leaves_nothing(make_coved: Callable[..., Coved],
                                            busybox_tar: Path) -> None:
    d = make_coved("copyfull", start=False)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "covetest-cpfull",
                    str(d.root)], check=True)
    try:
        d.start()
        d.api.import_image(busybox_tar, "busybox")
        src, dst = new_name("big"), new_name("nocopy")
        d.api.create(src)
        d.api.file_put(src, "/big", os.urandom(16 << 20))
        filler = d.root / "covetest-filler"
        with filler.open("wb") as f:  # all but 4 MiB taken
            free = os.statvfs(d.root).f_bavail * os.statvfs(d.root).f_frsize
            f.truncate(max(0, free - (4 << 20)))
            f.seek(0)
            with contextlib.suppress(OSError):
                while f.tell() < free - (4 << 20):
                    f.write(b"\0" * (1 << 20))
        r = d.api.request("POST", "/1.0/instances", _copy(src, dst))
        assert r.status == 202, r.body[:300]
        op = d.api.request("GET", r.headers["location"] + "/wait?timeout=60").json
        # refused before a byte is copied: the 507 of a full disk, in words a client reads
        assert op["metadata"]["status"] == "Failure", op
        assert op["metadata"]["err"].startswith(
            "No space left on the device holding the cove root"), op
        assert d.api.names() == [src] and _dirs(d) == [src]  # no half copy, no temp dir
        filler.unlink()
        d.api.run("POST", "/1.0/instances", _copy(src, dst))
        d.api.made.append(dst)
        assert len(_read(d, dst, "/big") or b"") == 16 << 20
        for n in (dst, src):
            d.api.remove(n)
    finally:
        d.stop()
        subprocess.run(["umount", "-l", str(d.root)], check=False)
