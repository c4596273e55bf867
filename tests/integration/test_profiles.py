"""Profiles on a real coved with real containers: expansion takes effect
(limits in the cgroup, environment in the init and in exec, published ports),
a profile change reaches running instances where the key is live, changes
that would break an instance are refused, ``profiles: []`` gives no NIC, and
pylxd and ``lxc`` drive profiles unchanged."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pylxd
import pytest
from covetest import (
    Api,
    ApiError,
    Coved,
    assert_no_leaks,
    cgroup_parent,
    mkroot,
    new_name,
    wait_until,
)


def _cg(coved: Coved, name: str, controller: str, key: str) -> str:
    return (Path("/sys/fs/cgroup") / controller / cgroup_parent(coved.root) / name / key) \
        .read_text().strip()


@pytest.fixture
def profile(api: Api) -> Iterator[str]:
    """A profile name on the shared coved, deleted after the test."""
    name = new_name("prof")
    yield name
    for inst in list(api.made):  # the profile goes only once nothing uses it
        api.remove(inst)
    api.made.clear()
    with contextlib.suppress(ApiError):
        api.sync("DELETE", f"/1.0/profiles/{name}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_profile_keys_take_effect_and_follow_changes_live(api: Api, coved: Coved,
                                                          profile: str) -> None:
    port = _free_port()
    api.sync("POST", "/1.0/profiles", {
        "name": profile,
        "config": {"limits.memory": "64MiB", "environment.COVETEST_P": "from-profile",
                   "cove.cmd": "sh -c 'echo init sees $COVETEST_P; exec httpd -f -p 80 -h /'"},
        "devices": {"web": {"type": "proxy", "listen": f"tcp:127.0.0.1:{port}",
                            "connect": "tcp:0.0.0.0:80"}}})
    name = new_name("prof")
    api.made.append(name)
    api.run("POST", "/1.0/instances", {"name": name, "source": {"type": "image",
                                                                "alias": "busybox"},
                                       "profiles": ["default", profile], "start": True})
    inst = api.instance(name)
    assert inst["config"].get("limits.memory") is None  # its own config stays its own
    assert inst["expanded_config"]["limits.memory"] == "64MiB"
    assert set(inst["expanded_devices"]) == {"eth0", "web"}
    # the profile's keys really apply: the cgroup limit, the init's environment
    # and command, exec's environment, the published port
    assert int(_cg(coved, name, "memory", "memory.limit_in_bytes")) == 64 * 2**20
    assert api.sh(name, "echo $COVETEST_P") == b"from-profile\n"
    wait_until(lambda: b"init sees from-profile" in api.request(
        "GET", f"/1.0/instances/{name}/logs/console.log").body, 10)
    api.sh(name, f"echo {name} > /covetest-served")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /covetest-served HTTP/1.0\r\n\r\n")
        got = b""
        while chunk := s.recv(4096):
            got += chunk
        assert got.startswith(b"HTTP/1.1 200") and name.encode() in got

    # a change to the profile reaches the running instance where the key is live
    api.sync("PATCH", f"/1.0/profiles/{profile}", {"config": {"limits.memory": "96MiB"}})
    assert int(_cg(coved, name, "memory", "memory.limit_in_bytes")) == 96 * 2**20
    api.sync("PATCH", f"/1.0/profiles/{profile}", {"config": {"limits.processes": "40"}})
    assert _cg(coved, name, "pids", "pids.max") == "40"
    # the instance's own key wins over the profile's, and removing it falls back
    api.sync("PATCH", f"/1.0/instances/{name}", {"config": {"limits.memory": "80MiB"}})
    assert int(_cg(coved, name, "memory", "memory.limit_in_bytes")) == 80 * 2**20
    api.sync("PUT", f"/1.0/profiles/{profile}", {
        "config": {"cove.cmd": "sleep 1000"}, "devices": {}, "description": ""})
    assert _cg(coved, name, "pids", "pids.max") == "max"  # lifted with the profile's key
    with pytest.raises(OSError):  # the port went with the profile's proxy device
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    # dropping the profile from the instance: its keys stop applying at once
    r = api.request("PATCH", f"/1.0/instances/{name}", {"profiles": ["default"]})
    assert r.status == 200, r.body
    assert "cove.cmd" not in api.instance(name)["expanded_config"]


def test_changes_that_would_break_an_instance_are_refused(api: Api, profile: str) -> None:
    api.sync("POST", "/1.0/profiles", {"name": profile, "config": {"user.covetest": "1"}})
    name = new_name("prof")
    api.launch(name)
    r = api.request("PATCH", f"/1.0/instances/{name}", {"profiles": ["default", profile]})
    assert r.status == 200, r.body
    before = api.sync("GET", f"/1.0/profiles/{profile}")
    # a NIC on a running instance cannot appear; a network that does not exist never works
    for change in ({"devices": {"eth1": {"type": "nic", "network": api.instance(name)[
                        "expanded_devices"]["eth0"]["network"], "name": "eth1"}}},
                   {"devices": {"eth1": {"type": "nic", "network": "covetest-none"}}},
                   {"config": {"limits.memory": "lots"}},
                   {"config": {"volatile.eth0.hwaddr": "x"}}):
        r = api.request("PATCH", f"/1.0/profiles/{profile}", change)
        assert r.status == 400, (change, r.body)
    assert api.sync("GET", f"/1.0/profiles/{profile}") == before  # nothing saved
    r = api.request("DELETE", f"/1.0/profiles/{profile}")
    assert r.status == 400 and r.error == "Profile is currently in use"
    assert api.sync("GET", f"/1.0/profiles/{profile}")["used_by"] == [f"/1.0/instances/{name}"]
    # unknown profiles on create and update: 404, nothing made or changed
    r = api.request("POST", "/1.0/instances", {
        "name": new_name("prof"), "source": {"type": "image", "alias": "busybox"},
        "profiles": ["default", "covetest-nope"]})
    assert r.status == 404 and "covetest-nope" in r.error
    r = api.request("PATCH", f"/1.0/instances/{name}", {"profiles": ["covetest-nope"]})
    assert r.status == 404
    assert api.instance(name)["profiles"] == ["default", profile]


def test_no_profiles_means_no_nic(api: Api) -> None:
    name = new_name("bare")
    api.made.append(name)
    api.run("POST", "/1.0/instances", {
        "name": name, "source": {"type": "image", "alias": "busybox"}, "profiles": [],
        "config": {"cove.cmd": "sleep 1000"}, "start": True})
    inst = api.instance(name)
    assert inst["profiles"] == [] and inst["expanded_devices"] == {}
    links = api.sh(name, "ls /sys/class/net").split()
    assert links == [b"lo"]
    assert api.state(name)["network"].keys() == {"lo"}


def test_rename_follows_and_default_is_protected(api: Api, profile: str) -> None:
    api.sync("POST", "/1.0/profiles", {"name": profile})
    name = new_name("prof")
    api.made.append(name)
    api.run("POST", "/1.0/instances", {"name": name, "source": {"type": "image",
                                                                "alias": "busybox"},
                                       "profiles": ["default", profile]})
    renamed = profile + "-r"
    r = api.request("POST", f"/1.0/profiles/{profile}", {"name": renamed})
    assert r.status == 201 and r.headers["location"] == f"/1.0/profiles/{renamed}"
    try:
        assert api.instance(name)["profiles"] == ["default", renamed]
        assert api.request("GET", f"/1.0/profiles/{profile}").status == 404
    finally:
        api.remove(name)
        api.request("DELETE", f"/1.0/profiles/{renamed}")
    assert api.request("DELETE", "/1.0/profiles/default").status == 403
    assert api.request("POST", "/1.0/profiles/default", {"name": "x"}).status == 403


def test_pylxd_profiles(coved: Coved) -> None:
    client = pylxd.Client(endpoint="http+unix://" + urllib.parse.quote(str(coved.socket),
                                                                        safe=""))
    name = new_name("pylxd")
    inst_name = new_name("pylxd")
    try:
        prof = client.profiles.create(name, config={"environment.COVETEST": "pylxd"},
                                      devices={"hide": {"type": "none"}},
                                      description="from pylxd")
        assert prof.name == name and prof.description == "from pylxd"
        assert client.profiles.exists(name)
        assert name in [p.name for p in client.profiles.all()]
        got = client.profiles.get(name)
        assert got.config == {"environment.COVETEST": "pylxd"}
        got.config["limits.processes"] = "30"
        got.description = "saved"
        got.save(wait=True)
        again = client.profiles.get(name)
        assert again.config == {"environment.COVETEST": "pylxd", "limits.processes": "30"}
        assert again.description == "saved" and again.devices == {"hide": {"type": "none"}}
        inst = client.instances.create({
            "name": inst_name, "source": {"type": "image", "alias": "busybox"},
            "profiles": ["default", name], "config": {"cove.cmd": "sleep 1000"}}, wait=True)
        assert inst.profiles == ["default", name]
        assert inst.expanded_config["environment.COVETEST"] == "pylxd"
        inst.start(wait=True)
        assert inst.execute(["sh", "-c", "echo $COVETEST"]).stdout == "pylxd\n"
        assert client.profiles.get(name).used_by == [f"/1.0/instances/{inst_name}"]
        with pytest.raises(pylxd.exceptions.LXDAPIException, match="in use"):
            client.profiles.get(name).delete()
        inst.stop(wait=True)
        inst.delete(wait=True)
        client.profiles.get(name).delete()
        assert not client.profiles.exists(name)
    finally:
        Api(str(coved.socket)).remove(inst_name)
        with contextlib.suppress(pylxd.exceptions.LXDAPIException, pylxd.exceptions.NotFound):
            client.profiles.get(name).delete()
    assert_no_leaks(coved.root, [inst_name])


LXC = shutil.which("lxc")


@pytest.mark.skipif(LXC is None, reason="lxc (Debian package lxd-client) missing")
def test_lxc_profiles(coved: Coved) -> None:
    assert LXC is not None
    home = mkroot("lxchome")
    (home / "lxdconf").mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "LXD_CONF": str(home / "lxdconf"), "LANG": "C.UTF-8"}

    def lxc(*args: str, check: bool = True, input: bytes | None = None
            ) -> subprocess.CompletedProcess[bytes]:
        p = subprocess.run([LXC, *args], env=env, capture_output=True, input=input,
                           stdin=None if input is not None else subprocess.DEVNULL,
                           timeout=60, check=False)
        if check and p.returncode != 0:
            raise AssertionError(f"lxc {' '.join(args)}: {p.stderr.decode(errors='replace')}")
        return p

    prof, inst, bare = new_name("lxc"), new_name("lxc"), new_name("lxc")
    try:
        lxc("remote", "add", "covetest-r", f"unix://{coved.socket}")
        lxc("profile", "create", f"covetest-r:{prof}")
        lxc("profile", "set", f"covetest-r:{prof}", "environment.COVETEST=lxc")
        lxc("profile", "device", "add", f"covetest-r:{prof}", "hide", "none")
        shown = lxc("profile", "show", f"covetest-r:{prof}").stdout.decode()
        assert "environment.COVETEST: lxc" in shown and "hide:" in shown
        assert prof in lxc("profile", "list", "covetest-r:", "--format", "csv").stdout.decode()
        lxc("profile", "edit", f"covetest-r:{prof}",
            input=b"description: edited\nconfig:\n  environment.COVETEST: edited\ndevices: {}\n")
        assert "description: edited" in lxc("profile", "show", f"covetest-r:{prof}"
                                             ).stdout.decode()
        lxc("launch", "covetest-r:busybox", f"covetest-r:{inst}", "-p", "default", "-p", prof,
            "-c", "cove.cmd=sleep 1000")
        out = lxc("exec", f"covetest-r:{inst}", "--", "sh", "-c", "echo $COVETEST").stdout
        assert out == b"edited\n"
        p = lxc("profile", "delete", f"covetest-r:{prof}", check=False)
        assert p.returncode != 0 and b"in use" in p.stderr
        lxc("profile", "remove", f"covetest-r:{inst}", prof)
        lxc("profile", "delete", f"covetest-r:{prof}")
        assert prof not in lxc("profile", "list", "covetest-r:", "--format", "csv"
                               ).stdout.decode()
        # --no-profiles: no profile, so no NIC
        lxc("launch", "covetest-r:busybox", f"covetest-r:{bare}", "--no-profiles",
            "-c", "cove.cmd=sleep 1000")
        assert lxc("exec", f"covetest-r:{bare}", "--", "ls", "/sys/class/net"
                   ).stdout.split() == [b"lo"]
    finally:
        api = Api(str(coved.socket))
        for n in (inst, bare):
            api.remove(n)
        api.request("DELETE", f"/1.0/profiles/{prof}")
        shutil.rmtree(home, ignore_errors=True)


def test_a_root_from_before_stored_profiles(make_coved, busybox_tar: Path) -> None:  # type: ignore[no-untyped-def]
    """A root made before profiles were stored (no ``profiles`` table) gets a
    default profile with what it had: eth0 on its default network."""
    import sqlite3

    d = make_coved("oldroot")
    net = d.api.sync("GET", "/1.0/profiles/default")["devices"]["eth0"]["network"]
    d.stop()
    db = sqlite3.connect(d.root / "cove.db")
    db.execute("DROP TABLE profiles")
    db.commit()
    db.close()
    d.start()
    assert d.api.sync("GET", "/1.0/profiles/default")["devices"] == {
        "eth0": {"type": "nic", "network": net, "name": "eth0"}}
    d.api.import_image(busybox_tar, "busybox")
    name = new_name("old")
    d.api.launch(name)
    assert "eth0" in d.api.state(name)["network"]
    d.api.remove(name)
