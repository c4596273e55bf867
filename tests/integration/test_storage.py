"""Storage: the default pool, custom volumes and disk devices, on a real coved
with real runc containers; the hostile mount target (CVE-2021-30465 class)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from covetest import Api, Coved, mkroot, mounts_under, new_name

POOL = "/1.0/storage-pools/default"


def _host_mounts_at(path: Path) -> list[str]:
    """Mount points of the host's namespace at or under ``path``."""
    return mounts_under(path)


def _patch_devices(api: Api, name: str, devices: dict[str, Any]) -> None:
    r = api.request("PATCH", f"/1.0/instances/{name}", {"devices": devices})
    if r.status == 202:
        op = api.wait(r)
        assert op["status"] == "Success", op
    else:
        assert r.status == 200, r.body


def _start_error(api: Api, name: str) -> str:
    r = api.request("PUT", f"/1.0/instances/{name}/state", {"action": "start"})
    op = api.wait(r)
    assert op["status"] == "Failure", op
    return str(op["err"])


@pytest.fixture
def scratch() -> Any:
    d = mkroot("storage-src")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def volumes(api: Api) -> Any:
    """Volume names to delete after the test (instances go first, by ``api``)."""
    made: list[str] = []
    yield made
    for name in made:
        api.request("DELETE", f"{POOL}/volumes/custom/{name}")


def test_default_pool(api: Api, coved: Coved) -> None:
    assert api.sync("GET", "/1.0/storage-pools") == [POOL]
    pools = api.sync("GET", "/1.0/storage-pools?recursion=1")
    assert [p["name"] for p in pools] == ["default"]
    pool = api.sync("GET", POOL)
    assert pool["driver"] == "dir" and pool["status"] == "Created"
    assert pool["config"]["source"] == str(coved.root)
    res = api.sync("GET", f"{POOL}/resources")
    assert 0 < res["space"]["used"] < res["space"]["total"]
    assert res["inodes"]["total"] > 0
    assert "storage" in api.sync("GET", "/1.0")["api_extensions"]
    r = api.request("POST", "/1.0/storage-pools", {"name": "covetest-p", "driver": "dir"})
    assert r.status == 400 and "one storage pool" in r.json["error"]
    assert api.request("GET", "/1.0/storage-pools/other").status == 404


def test_volume_lifecycle_and_mount(api: Api, coved: Coved, volumes: list[str]) -> None:
    vol, vol2 = new_name("vol"), new_name("vol")
    volumes += [vol, vol2]
    api.sync("POST", f"{POOL}/volumes/custom", {"name": vol, "config": {"size": "1GiB"},
                                                 "description": "d1"})
    r = api.request("POST", f"{POOL}/volumes/custom", {"name": vol})
    assert r.status == 409
    r = api.request("POST", f"{POOL}/volumes", {"name": "covetest-x", "type": "custom",
                                                 "config": {"snapshots.expiry": "1d"}})
    assert r.status == 400 and "snapshots.expiry" in r.json["error"]
    d = coved.root / "storage" / "custom" / vol
    assert d.is_dir() and (d.stat().st_mode & 0o777) == 0o711 and d.stat().st_uid == 0
    got = api.sync("GET", f"{POOL}/volumes/custom/{vol}")
    assert (got["name"], got["type"], got["pool"], got["content_type"], got["description"],
            got["config"], got["used_by"]) == (vol, "custom", "default", "filesystem", "d1",
                                               {"size": "1GiB"}, [])
    assert f"{POOL}/volumes/custom/{vol}" in api.sync("GET", f"{POOL}/volumes")
    api.sync("PATCH", f"{POOL}/volumes/custom/{vol}", {"config": {"user.k": "v"}})
    assert api.sync("GET", f"{POOL}/volumes/custom/{vol}")["config"] == {
        "size": "1GiB", "user.k": "v"}
    api.sync("PUT", f"{POOL}/volumes/custom/{vol}", {"config": {}, "description": "d2"})
    got = api.sync("GET", f"{POOL}/volumes/custom/{vol}")
    assert (got["config"], got["description"]) == ({}, "d2")

    name = new_name("vol")
    api.create(name, config={"cove.cmd": "sleep 1000"})
    _patch_devices(api, name, {"data": {"type": "disk", "pool": "default", "source": vol,
                                         "path": "/mnt/data"}})
    api.action(name, "start")
    api.sh(name, "echo kept > /mnt/data/f; mount | grep -q ' /mnt/data '")
    assert (d / "f").read_text() == "kept\n"
    assert _host_mounts_at(d) == []  # the bind lives in the container's namespace only
    assert api.sync("GET", f"{POOL}/volumes/custom/{vol}")["used_by"] == [
        f"/1.0/instances/{name}"]
    assert f"{POOL}/volumes/custom/{vol}" in api.sync("GET", POOL)["used_by"]
    r = api.request("DELETE", f"{POOL}/volumes/custom/{vol}")
    assert r.status == 400 and "still in use" in r.json["error"]
    r = api.request("POST", f"{POOL}/volumes/custom/{vol}", {"name": vol2})
    assert r.status == 400 and "running" in r.json["error"]

    api.action(name, "stop", force=True)
    r = api.request("POST", f"{POOL}/volumes/custom/{vol}", {"name": vol2, "pool": "default"})
    assert r.status == 201 and r.headers["location"] == f"{POOL}/volumes/custom/{vol2}"
    assert api.instance(name)["devices"]["data"]["source"] == vol2  # the user follows
    assert not d.exists() and (coved.root / "storage" / "custom" / vol2 / "f").exists()
    api.action(name, "start")
    assert api.sh(name, "cat /mnt/data/f") == b"kept\n"
    api.remove(name)
    api.sync("DELETE", f"{POOL}/volumes/custom/{vol2}")
    assert not (coved.root / "storage" / "custom" / vol2).exists()
    assert api.request("GET", f"{POOL}/volumes/custom/{vol2}").status == 404
    r = api.request("PATCH", f"/1.0/instances/{new_name('x')}", {})
    assert r.status == 404


def test_missing_volume_is_refused_at_add(api: Api) -> None:
    name = new_name("vol")
    api.create(name, config={"cove.cmd": "sleep 1000"})
    r = api.request("PATCH", f"/1.0/instances/{name}", {"devices": {
        "d": {"type": "disk", "pool": "default", "source": "covetest-nope", "path": "/d"}}})
    assert r.status in (400, 404) and "covetest-nope" in r.json["error"]
    r = api.request("PATCH", f"/1.0/instances/{name}", {"devices": {
        "d": {"type": "disk", "source": "/srv", "path": "/d", "shift": "true"}}})
    assert r.status == 400 and "shift" in r.json["error"]
    r = api.request("PATCH", f"/1.0/instances/{name}", {"devices": {
        "root": {"type": "disk", "path": "/", "pool": "other"}}})
    assert r.status == 400 and "other" in r.json["error"]


def test_host_bind_mounts(api: Api, scratch: Path) -> None:
    (scratch / "dir").mkdir()
    (scratch / "dir" / "a").write_text("from the host\n")
    (scratch / "file").write_text("one file\n")
    name = new_name("bind")
    api.create(name, config={"cove.cmd": "sleep 1000"})
    _patch_devices(api, name, {
        "rw": {"type": "disk", "source": str(scratch / "dir"), "path": "/srv/rw"},
        "ro": {"type": "disk", "source": str(scratch / "dir"), "path": "/srv/ro",
               "readonly": "true"},
        "one": {"type": "disk", "source": str(scratch / "file"), "path": "/etc/one.conf"},
        "gone": {"type": "disk", "source": str(scratch / "nope"), "path": "/srv/gone",
                 "required": "false"},
        "root": {"type": "disk", "path": "/", "pool": "default"},
    })
    api.action(name, "start")
    assert api.sh(name, "cat /srv/rw/a /etc/one.conf") == b"from the host\none file\n"
    api.sh(name, "echo back > /srv/rw/b")
    assert (scratch / "dir" / "b").read_text() == "back\n"
    code, _, err = api.exec(name, ["sh", "-c", "echo x > /srv/ro/c"])
    assert code != 0 and b"Read-only" in err
    assert not (scratch / "dir" / "c").exists()
    code, _, _ = api.exec(name, ["test", "-e", "/srv/gone"])
    assert code != 0  # required=false and missing: skipped
    assert api.instance(name)["expanded_devices"]["root"]["pool"] == "default"
    assert _host_mounts_at(scratch) == []

    api.action(name, "stop", force=True)
    _patch_devices(api, name, {"gone": {"type": "disk", "source": str(scratch / "nope"),
                                         "path": "/srv/gone"}})
    err = _start_error(api, name)
    assert "missing source path" in err and "gone" in err, err
    assert api.status(name) == "Stopped"


def test_symlinked_targets_stay_inside_the_container(api: Api, coved: Coved,
                                                     scratch: Path) -> None:
    """A target planted as a symlink to a host path, absolute or by ``..``,
    resolves inside the container's root: the host's copy is untouched and
    the mount lands inside (CVE-2021-30465 class)."""
    canary = mkroot("canary")  # a host directory the symlinks name
    try:
        (canary / "keep").write_text("host canary\n")
        before = sorted(os.listdir(canary))
        src = scratch / "payload"
        src.mkdir()
        (src / "marker").write_text("mounted\n")
        name = new_name("sym")
        api.create(name, config={"cove.cmd": "sleep 1000"})
        upper = coved.root / "instances" / name / "upper"
        inside = upper / str(canary).lstrip("/")
        inside.mkdir(parents=True)  # the same path exists inside the container too
        (upper / "abs").symlink_to(str(canary))  # /abs -> /tmp/covetest-canary-...
        (upper / "rel").symlink_to("../../../../../../.." + str(canary))
        (upper / "etcl").symlink_to("/etc")
        os.makedirs(upper / "deep")
        (upper / "deep" / "up").symlink_to("../../../../../..")  # the container's /
        _patch_devices(api, name, {
            "a": {"type": "disk", "source": str(src), "path": "/abs"},
            "r": {"type": "disk", "source": str(src), "path": "/rel/sub"},
            "e": {"type": "disk", "source": str(src), "path": "/etcl/covetest-e"},
        })
        api.action(name, "start")
        cpath = str(canary)
        assert api.sh(name, f"cat {cpath}/marker {cpath}/sub/marker /etc/covetest-e/marker") \
            == b"mounted\n" * 3
        # cove itself resolved the targets inside the rootfs: runc is handed
        # symlink-free destinations (runc's own securejoin is a second guard)
        spec = json.loads((coved.root / "instances" / name / "config.json").read_text())
        binds = sorted(m["destination"] for m in spec["mounts"] if m["source"] == str(src))
        assert binds == sorted([cpath, f"{cpath}/sub", "/etc/covetest-e"])
        mounts = api.sh(name, "cat /proc/self/mounts").decode()
        assert f" {cpath} " in mounts and f" {cpath}/sub " in mounts
        # the host: nothing mounted on the canary or /etc, nothing written there
        assert sorted(os.listdir(canary)) == before
        assert (canary / "keep").read_text() == "host canary\n"
        assert _host_mounts_at(canary) == [] and _host_mounts_at(Path("/etc")) == []
        assert not Path("/etc/covetest-e").exists()
        # what the mounts made lives in the container's upper layer
        assert (inside / "sub").is_dir() and (upper / "etc" / "covetest-e").is_dir()

        api.action(name, "stop", force=True)
        _patch_devices(api, name, {"up": {"type": "disk", "source": str(src),
                                          "path": "/deep/up"}})
        err = _start_error(api, name)
        assert "resolves to the instance's root" in err, err
        assert api.status(name) == "Stopped"
        # a dangling symlink at the target: refused, nothing made on the host
        _patch_devices(api, name, {"up": {"type": "none"}})
        (upper / "dangle").symlink_to(str(canary) + "-covetest-missing")
        _patch_devices(api, name, {"dg": {"type": "disk", "source": str(src),
                                          "path": "/dangle"}})
        err = _start_error(api, name)
        assert "dg" in err, err
        assert not Path(str(canary) + "-covetest-missing").exists()
        assert sorted(os.listdir(canary)) == before
    finally:
        shutil.rmtree(canary, ignore_errors=True)


# -- real clients ------------------------------------------------------------------------

def test_pylxd_storage(make_coved, busybox_tar: Path) -> None:  # type: ignore[no-untyped-def]
    import urllib.parse

    import pylxd

    d = make_coved("pylxd-storage")
    client = pylxd.Client(endpoint="http+unix://" + urllib.parse.quote(str(d.socket), safe=""))
    assert [p.name for p in client.storage_pools.all()] == ["default"]
    pool = client.storage_pools.get("default")
    assert pool.driver == "dir"
    assert pool.resources.get().space["total"] > 0
    vol = pool.volumes.create({"name": "covetest-pv", "type": "custom",
                               "config": {"size": "100MiB"}})
    assert vol.name == "covetest-pv" and vol.config == {"size": "100MiB"}
    assert [v.name for v in pool.volumes.all()] == ["covetest-pv"]
    vol.rename({"name": "covetest-pv2", "pool": "default"})
    got = pool.volumes.get("custom", "covetest-pv2")
    assert got.type == "custom" and got.used_by == []
    got.config = {"user.note": "saved"}  # pylxd sends config only (description is readonly)
    got.save(wait=True)
    assert pool.volumes.get("custom", "covetest-pv2").config == {"user.note": "saved"}
    got.delete()
    assert pool.volumes.all() == []
    assert not (d.root / "storage" / "custom" / "covetest-pv2").exists()


LXC = shutil.which("lxc")


@pytest.mark.skipif(LXC is None, reason="lxc (Debian package lxd-client) missing")
def test_lxc_storage(make_coved, busybox_tar: Path) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    d = make_coved("lxc-storage")
    home = mkroot("lxchome")
    (home / "lxdconf").mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "LXD_CONF": str(home / "lxdconf"), "LANG": "C.UTF-8"}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([str(LXC), *args], env=env, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=60, check=False)
        if check and p.returncode != 0:
            raise AssertionError(f"lxc {' '.join(args)} exited {p.returncode}: {p.stderr}")
        return p

    try:
        run("remote", "add", "covetest-r", f"unix://{d.socket}")
        run("image", "import", str(busybox_tar), "covetest-r:", "--alias", "bb")
        assert run("storage", "list", "covetest-r:", "--format", "csv").stdout.startswith(
            "default,")
        assert "driver: dir" in run("storage", "show", "covetest-r:default").stdout
        info = run("storage", "info", "covetest-r:default").stdout
        assert "total space" in info and "driver: dir" in info

        run("storage", "volume", "create", "covetest-r:default", "covetest-lv", "size=1GiB")
        listed = run("storage", "volume", "list", "covetest-r:default", "--format", "csv").stdout
        assert "custom,covetest-lv," in listed, listed
        shown = run("storage", "volume", "show", "covetest-r:default", "covetest-lv").stdout
        assert "size: 1GiB" in shown and "type: custom" in shown
        run("storage", "volume", "set", "covetest-r:default", "covetest-lv", "user.a=b")  # If-Match
        assert "user.a: b" in run("storage", "volume", "show", "covetest-r:default",
                                  "covetest-lv").stdout
        run("storage", "volume", "rename", "covetest-r:default", "covetest-lv", "covetest-lv2")

        name = new_name("lxcs")
        run("launch", "covetest-r:bb", f"covetest-r:{name}", "-s", "default",
            "-c", "cove.cmd=sleep 1000")
        assert "pool: default" in run("config", "show", f"covetest-r:{name}",
                                      "--expanded").stdout
        listed = run("storage", "volume", "list", "covetest-r:default", "--format", "csv").stdout
        assert f"container,{name}," in listed, listed  # its root filesystem, as LXD lists it
        # lxc config device add/remove on the running instance: hot-plugged
        run("config", "device", "add", f"covetest-r:{name}", "hostdir", "disk",
            f"source={home}", "path=/mnt/h", "readonly=true")
        run("exec", f"covetest-r:{name}", "--", "test", "-d", "/mnt/h/lxdconf")
        run("config", "device", "remove", f"covetest-r:{name}", "hostdir")
        assert run("exec", f"covetest-r:{name}", "--", "test", "-d", "/mnt/h/lxdconf",
                   check=False).returncode != 0
        run("stop", "-f", f"covetest-r:{name}")
        run("storage", "volume", "attach", "covetest-r:default", "covetest-lv2", name,
            "/mnt/v")
        run("start", f"covetest-r:{name}")
        run("exec", f"covetest-r:{name}", "--", "sh", "-c", "echo hi > /mnt/v/x")
        assert (d.root / "storage" / "custom" / "covetest-lv2" / "x").read_text() == "hi\n"
        p = run("storage", "volume", "delete", "covetest-r:default", "covetest-lv2",
                check=False)
        assert p.returncode != 0 and "still in use" in p.stderr
        run("stop", "-f", f"covetest-r:{name}")
        run("storage", "volume", "detach", "covetest-r:default", "covetest-lv2", name)
        assert "covetest-lv2" not in run("config", "device", "show",
                                         f"covetest-r:{name}").stdout
        run("storage", "volume", "delete", "covetest-r:default", "covetest-lv2")
        run("delete", "-f", f"covetest-r:{name}")
        p = run("storage", "create", "covetest-r:covetest-p2", "dir", check=False)
        assert p.returncode != 0 and "one storage pool" in p.stderr
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_hotplug_on_a_running_instance(api: Api, coved: Coved, scratch: Path,
                                       volumes: list[str]) -> None:
    """Disks added to or removed from a running instance are mounted and
    unmounted at once (as LXD), and a symlink the container itself plants at
    the target still resolves inside it."""
    canary = mkroot("canary")
    try:
        (canary / "keep").write_text("host\n")
        (scratch / "d").mkdir()
        (scratch / "d" / "a").write_text("hot\n")
        vol = new_name("hvol")
        volumes.append(vol)
        api.sync("POST", f"{POOL}/volumes/custom", {"name": vol})
        name = new_name("hot")
        api.launch(name)
        api.sh(name, f"mkdir -p {canary} && ln -s {canary} /planted")
        _patch_devices(api, name, {
            "h": {"type": "disk", "source": str(scratch / "d"), "path": "/planted/h",
                  "readonly": "true"},
            "v": {"type": "disk", "pool": "default", "source": vol, "path": "/mnt/v"},
        })
        assert api.sh(name, f"cat {canary}/h/a") == b"hot\n"
        code, _, _ = api.exec(name, ["sh", "-c", f"echo x > {canary}/h/b"])
        assert code != 0 and not (scratch / "d" / "b").exists()  # read-only
        api.sh(name, "echo in-vol > /mnt/v/f")
        assert (coved.root / "storage" / "custom" / vol / "f").read_text() == "in-vol\n"
        assert sorted(os.listdir(canary)) == ["keep"] and _host_mounts_at(canary) == []
        assert _host_mounts_at(scratch) == []

        r = api.request("PUT", f"/1.0/instances/{name}", {
            **{k: api.instance(name)[k] for k in ("config", "profiles", "description")},
            "devices": {"v": {"type": "disk", "pool": "default", "source": vol,
                              "path": "/mnt/v"}}})
        api.wait(r)
        mounts = api.sh(name, "cat /proc/self/mounts").decode()
        assert f"{canary}/h" not in mounts and " /mnt/v " in mounts
        r = api.request("DELETE", f"{POOL}/volumes/custom/{vol}")
        assert r.status == 400
        _patch_devices(api, name, {"v": {"type": "none"}})
        assert " /mnt/v " not in api.sh(name, "cat /proc/self/mounts").decode()
        bad = api.request("PATCH", f"/1.0/instances/{name}", {"devices": {
            "m": {"type": "disk", "source": str(scratch / "missing"), "path": "/m"}}})
        if bad.status == 202:
            op = api.wait(bad)
            assert op["status"] == "Failure" and "missing source" in op["err"]
        else:
            assert bad.status == 400 and "missing source" in bad.json["error"]
        assert "m" not in api.instance(name)["devices"]
    finally:
        shutil.rmtree(canary, ignore_errors=True)
