"""Networks of type cni: a bridge + host-local (+ tuning, to chain a
prevResult) config list from Debian's containernetworking-plugins, on a
covetest bridge and a 10.222.x.0/24 no route of the host uses. Two
instances get addresses and reach each other; the network refuses deletion
while in use; after delete no veth, no host-local reservation and no
pinned namespace is left, also when an instance died while coved was
killed. Bad conflists are clear 400s.

The test removes what CNI itself keeps outside cove: the bridge the plugin
made and host-local's directory of this network's name."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CovedPool
from covetest import Api, Coved, assert_no_leaks, mounts_under, new_name, rand, wait_until

PLUGINS = Path("/usr/lib/cni")
HOST_LOCAL = Path("/var/lib/cni/networks")

pytestmark = pytest.mark.skipif(not (PLUGINS / "bridge").exists(),
                                reason="needs containernetworking-plugins (/usr/lib/cni)")


def _host_subnets() -> list[ipaddress.IPv4Network]:
    out = []
    routes = json.loads(subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"],
                                       capture_output=True, check=True, timeout=30).stdout)
    for r in routes:
        dst = r.get("dst", "")
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                out.append(ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32",
                                                 strict=False))
    addrs = json.loads(subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True,
                                      check=True, timeout=30).stdout)
    for a in addrs:
        for i in a.get("addr_info", []):
            out.append(ipaddress.IPv4Network(f"{i['local']}/{i['prefixlen']}", strict=False))
    return out


def _free_subnet() -> ipaddress.IPv4Network:
    used = _host_subnets()
    start = int(rand(2), 16)
    for k in range(256):
        net = ipaddress.IPv4Network(f"10.222.{(start + k) % 256}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise AssertionError("no free 10.222.x.0/24 on this host")


def _veths() -> set[str]:
    return {n for n in os.listdir("/sys/class/net") if Path(f"/sys/class/net/{n}").is_symlink()}


class CniSetup:
    def __init__(self) -> None:
        self.bridge = f"covetest{rand(6)}"
        self.cni_name = f"covetest-cni-{rand(6)}"
        self.subnet = _free_subnet()
        self.had_var_lib_cni = Path("/var/lib/cni").exists()

    def conflist(self, *, extra: list[dict[str, Any]] | None = None) -> str:
        return json.dumps({
            "cniVersion": "1.0.0", "name": self.cni_name,
            "plugins": [
                # no gateway: the bridge gets no address, so the host gets no route
                # and its forwarding switch is left alone
                {"type": "bridge", "bridge": self.bridge, "isGateway": False,
                 "ipMasq": False,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": str(self.subnet)}]]}},
                {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}},
                *(extra or []),
            ]})

    def reservations(self) -> list[str]:
        d = HOST_LOCAL / self.cni_name
        try:
            return sorted(n for n in os.listdir(d) if n[0].isdigit() and "." in n
                          and not n.startswith("last_reserved_ip"))
        except OSError:
            return []

    def cleanup(self) -> None:
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False,
                       timeout=30)
        shutil.rmtree(HOST_LOCAL / self.cni_name, ignore_errors=True)
        if not self.had_var_lib_cni:  # made by this test's plugins: gone if empty
            with contextlib.suppress(OSError):
                HOST_LOCAL.rmdir()
            with contextlib.suppress(OSError):
                HOST_LOCAL.parent.rmdir()


@pytest.fixture(scope="module")
def cnid(workdir, busybox_tar) -> Iterator[tuple[Coved, CniSetup]]:  # type: ignore[no-untyped-def]
    pool = CovedPool(workdir)
    setup = CniSetup()
    try:
        d = pool.new("cni")
        d.api.import_image(busybox_tar, "busybox")
        yield d, setup
    finally:
        problems = pool.close()
        setup.cleanup()
    assert not problems, "teardown found leftovers:\n  " + "\n  ".join(problems)


def _launch(api: Api, name: str, net: str) -> dict[str, Any]:
    api.made.append(name)
    r = api.request("POST", "/1.0/instances", {
        "name": name, "source": {"type": "image", "alias": "busybox"},
        "config": {"cove.cmd": "sleep 1000"}, "start": True,
        "devices": {"eth0": {"type": "nic", "network": net, "name": "eth0"}}})
    return api.wait(r)


def _eth0(api: Api, name: str) -> dict[str, Any]:
    return dict(api.state(name)["network"]["eth0"])


@pytest.mark.parametrize("config, words", [
    ({}, "exactly one of cni.config"),
    ({"cni.config": "{nope"}, "not JSON"),
    ({"cni.config": json.dumps({"cniVersion": "0.2.0", "name": "x",
                                "plugins": [{"type": "bridge"}]})}, "cniVersion '0.2.0'"),
    ({"cni.config": json.dumps({"cniVersion": "1.0.0", "name": "x", "plugins": []})},
     "non-empty list"),
    ({"cni.config": json.dumps({"cniVersion": "1.0.0", "name": "x",
                                "plugins": [{"type": "../bin/sh"}]})}, "naming a plugin"),
    ({"cni.config": json.dumps({"cniVersion": "1.0.0", "name": "x",
                                "plugins": [{"type": "covetest-nosuchplugin"}]})},
     "covetest-nosuchplugin not found"),
    ({"cni.path": "/etc/passwd"}, "directly in /etc/cni/net.d"),
    ({"cni.path": "/etc/cni/net.d/covetest-missing.conflist"}, "cannot read"),
    ({"cni.config": json.dumps({"cniVersion": "1.0.0", "name": "x",
                                "plugins": [{"type": "bridge"}]}),
      "ipv4.address": "10.0.0.1/24"}, "Unknown configuration key"),
])
def test_bad_cni_networks_are_400(cnid: tuple[Coved, CniSetup], config: dict[str, str],
                                  words: str) -> None:
    d, _ = cnid
    r = d.api.request("POST", "/1.0/networks", {"name": f"ctbad{rand(6)}", "type": "cni",
                                                 "config": config})
    assert r.status == 400 and words in r.error, (r.status, r.error)


def test_cni_network_end_to_end(cnid: tuple[Coved, CniSetup]) -> None:
    d, setup = cnid
    api = d.api
    net = f"ctcni{rand(6)}"
    api.sync("POST", "/1.0/networks", {"name": net, "type": "cni",
                                       "config": {"cni.config": setup.conflist()}})
    a, b = new_name("cnia"), new_name("cnib")
    peers: list[str] = []
    try:
        got = api.sync("GET", f"/1.0/networks/{net}")
        assert got["type"] == "cni" and got["used_by"] == []
        for name in (a, b):
            op = _launch(api, name, net)
            assert op["status"] == "Success", op
        ea, eb = _eth0(api, a), _eth0(api, b)
        peers += [ea["host_name"], eb["host_name"]]
        # the list's state (every instance in one pass) says the same of them
        listed = {i["name"]: i["state"]["network"]["eth0"]
                  for i in api.sync("GET", "/1.0/instances?recursion=2") if i["name"] in (a, b)}
        for name, one in ((a, ea), (b, eb)):
            assert {k: v for k, v in listed[name].items() if k != "counters"} == \
                {k: v for k, v in one.items() if k != "counters"}, name
        assert sorted(os.listdir(f"/sys/class/net/{setup.bridge}/brif")) == sorted(peers)
        ip_a, ip_b = ea["addresses"][0]["address"], eb["addresses"][0]["address"]
        assert ipaddress.IPv4Address(ip_a) in setup.subnet
        assert ipaddress.IPv4Address(ip_b) in setup.subnet and ip_a != ip_b
        assert ea["host_name"] in _veths() and ea["hwaddr"]
        assert sorted(setup.reservations()) == sorted([ip_a, ip_b])
        assert b"1 packets received" in api.sh(a, f"ping -c1 -W2 {ip_b}")
        assert ip_a.encode() in api.sh(a, "cat /etc/hosts")
        # the chained plugin ran with the bridge's result in the namespace
        assert api.sh(a, "cat /proc/sys/net/ipv4/conf/eth0/arp_notify").strip() == b"1"
        # in use: refused
        r = api.request("DELETE", f"/1.0/networks/{net}")
        assert r.status == 400 and f"/1.0/instances/{a}" in r.error
        # NAT proxy devices need a cove bridge (a forwarder, nat unset, needs none)
        r = api.request("PATCH", f"/1.0/instances/{a}", {"devices": {
            "eth0": {"type": "nic", "network": net, "name": "eth0"},
            "p": {"type": "proxy", "listen": "tcp:127.0.0.1:18080",
                  "connect": "tcp:0.0.0.0:80", "nat": "true"}}})
        assert r.status == 400 and "cove bridge" in r.error
        # stopped and started again: released, attached again
        api.action(b, "stop", force=True, timeout=0)
        wait_until(lambda: setup.reservations() == [ip_a], 5, what="b's reservation released")
        # exec --stopped (issue 11): its cni NIC too, DEL'd when the command ends
        op = api.wait(api.request("POST", f"/1.0/instances/{b}/exec", {
            "command": ["ip", "-4", "-o", "addr", "show", "eth0"], "stopped": True,
            "wait-for-websocket": False, "record-output": True}))
        assert op["status"] == "Success" and op["metadata"]["return"] == 0, op
        shown = api.request("GET", op["metadata"]["output"]["1"]).body.decode()
        assert ipaddress.IPv4Address(shown.split(" inet ")[1].split("/")[0]) in setup.subnet
        wait_until(lambda: setup.reservations() == [ip_a], 5, what="the exec's NIC DEL'd")
        assert not (d.root / "run" / "cni" / b).exists()
        api.action(b, "start")
        assert _eth0(api, b)["addresses"]
        peers.append(_eth0(api, b)["host_name"])
        # coved killed, then b dies behind its back: the next coved DELs b's NIC
        b_peer, b_pid = _eth0(api, b)["host_name"], api.state(b)["pid"]
        d.kill()
        os.kill(b_pid, signal.SIGKILL)
        d.start()
        wait_until(lambda: api.status(b) == "Stopped", 10, what="b recorded as stopped")
        assert b_peer not in _veths()
        assert setup.reservations() == [ip_a]
        assert not (d.root / "run" / "cni" / b).exists()
        # the network can be changed in use (applies at the next start)
        api.sync("PATCH", f"/1.0/networks/{net}", {"config": {"user.note": "x"}})
    finally:
        api.remove(a)
        api.remove(b)
    assert_no_leaks(d.root, [a, b])
    wait_until(lambda: not set(peers) & _veths(), 5, what="the veths to go")
    assert os.listdir(f"/sys/class/net/{setup.bridge}/brif") == []
    assert setup.reservations() == []
    assert not [m for m in mounts_under(d.root) if "/run/cni/" in m]
    assert not os.listdir(d.root / "run" / "cni")
    api.sync("DELETE", f"/1.0/networks/{net}")


def test_cni_path_file_and_failed_add_leaves_nothing(cnid: tuple[Coved, CniSetup]) -> None:
    """A conflist from /etc/cni/net.d; a plugin failing half-way through
    ADD makes the start fail and every plugin DEL (nothing kept)."""
    d, setup = cnid
    api = d.api
    # Debian's containernetworking-plugins does not make /etc/cni/net.d (podman
    # does): make what is missing, and remove exactly that afterwards.
    confdir = Path("/etc/cni/net.d")
    made = [p for p in (confdir.parent, confdir) if not p.exists()]
    confdir.mkdir(parents=True, exist_ok=True)
    path = confdir / f"covetest-{rand(6)}.conflist"
    net = f"ctcni{rand(6)}"
    name = new_name("cnibad")
    # tuning refuses a sysctl outside the interface's namespace: ADD fails after bridge
    path.write_text(setup.conflist(extra=[{"type": "tuning",
                                           "sysctl": {"kernel.covetest": "1"}}]))
    try:
        api.sync("POST", "/1.0/networks", {"name": net, "type": "cni",
                                           "config": {"cni.path": str(path)}})
        api.made.append(name)
        api.run("POST", "/1.0/instances", {
            "name": name, "source": {"type": "image", "alias": "busybox"},
            "config": {"cove.cmd": "sleep 1000"},
            "devices": {"eth0": {"type": "nic", "network": net, "name": "eth0"}}})
        op = api.wait(api.request("PUT", f"/1.0/instances/{name}/state", {"action": "start"}))
        assert op["status"] == "Failure" and "tuning" in op["err"], op
        assert api.status(name) == "Stopped"
        assert setup.reservations() == []
        assert not (d.root / "run" / "cni" / name).exists()
        # the file changed: the next start reads it again
        path.write_text(setup.conflist())
        api.action(name, "start")
        assert _eth0(api, name)["addresses"]
    finally:
        api.remove(name)
        path.unlink(missing_ok=True)
        for p in reversed(made):
            p.rmdir()
    assert_no_leaks(d.root, [name])
    assert setup.reservations() == []
    api.sync("DELETE", f"/1.0/networks/{net}")
