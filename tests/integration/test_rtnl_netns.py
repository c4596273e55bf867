"""``network._netlink`` on its own netlink messages (``network/_rtnl.py``), in a
private network namespace (``unshare -n``, with its own sysfs): the bridge
(alias, MTU, addresses, IPv6 without DAD), the veth into another namespace
(master, MAC, MTU, address, default route, no link-local), a grown prefix,
the errors, and what the host dumps; read back with iproute2's JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_SCRIPT = r'''
import json, os, subprocess, sys, time
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface
from cove.model.errors import InternalError
from cove.network._netlink import LinkExists, Netlink, NicSetup

def ip(*args, ns=None):
    pre = ["nsenter", "-t", str(ns), "-n"] if ns else []
    return json.loads(subprocess.run([*pre, "ip", "-j", *args], check=True,
                                     capture_output=True, text=True).stdout or "[]")

out = {}
nl = Netlink()
nl.ensure_bridge("covetestbr0", "cove:t:net", IPv4Interface("10.99.0.1/24"),
                 IPv6Interface("fd42:1::1/64"), mtu=1400)
(br,) = ip("-d", "addr", "show", "covetestbr0")
out["bridge"] = [br["ifalias"], br["mtu"], br["linkinfo"]["info_kind"], "UP" in br["flags"],
                 sorted((a["local"], a["prefixlen"], bool(a.get("nodad")))
                        for a in br["addr_info"] if a["scope"] == "global")]
out["links"] = nl.links()
out["used"] = sorted({str(n) for n in nl.used_networks()})
nl.ensure_bridge("covetestbr0", "cove:t:net", IPv4Interface("10.99.0.1/23"), None)
(br,) = ip("addr", "show", "covetestbr0")
out["grown"] = sorted((a["local"], a["prefixlen"]) for a in br["addr_info"]
                      if a["scope"] == "global")
for name in ("lo", "covetestbr0"):
    try:
        nl.ensure_bridge(name, "cove:other:net", None, None)
    except LinkExists:
        out.setdefault("refused", []).append(name)
child = subprocess.Popen(["unshare", "-n", "sleep", "60"])
try:
    deadline = time.monotonic() + 10
    while os.readlink(f"/proc/{child.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
        assert time.monotonic() < deadline and child.poll() is None, "unshare -n failed"
        time.sleep(0.01)
    fd = os.open(f"/proc/{child.pid}/ns/net", os.O_RDONLY)
    nic = NicSetup(host_name="cvtest0", bridge="covetestbr0", name="eth0",
                   hwaddr="00:16:3e:aa:bb:cc", mtu=1400, ipv4=IPv4Interface("10.99.0.5/23"),
                   gateway4=IPv4Address("10.99.0.1"))
    nl.attach(fd, nic)
    (host,) = ip("-d", "link", "show", "cvtest0")
    out["host_end"] = [host["master"], host["mtu"], "UP" in host["flags"]]
    inside = {x["ifname"]: x for x in ip("addr", ns=child.pid)}
    eth0 = inside["eth0"]
    out["eth0"] = [eth0["address"], eth0["mtu"], "UP" in eth0["flags"],
                   "UP" in inside["lo"]["flags"],
                   [(a["family"], a["local"], a["prefixlen"]) for a in eth0["addr_info"]]]
    out["routes"] = [(r["dst"], r.get("gateway")) for r in ip("route", ns=child.pid)]
    out["readdress"] = [nl.readdress(fd, IPv4Address("10.99.0.5"), 22),
                        nl.readdress(fd, IPv4Address("10.99.0.6"), 22)]
    out["after"] = [(a["local"], a["prefixlen"]) for a in ip("addr", "show", "eth0",
                                                              ns=child.pid)[0]["addr_info"]]
    try:
        nl.attach(fd, nic)
    except InternalError as e:
        out["again"] = str(e)
finally:
    child.kill()
out["deleted"] = [nl.delete_link("cvtest0"), nl.delete_link("cvtest0"),
                  nl.delete_link("covetestbr0")]
out["left"] = sorted(nl.links())
print(json.dumps(out))
'''


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"),
                    reason="needs root, unshare and iproute2")
def test_bridge_veth_addresses_and_errors_in_a_private_namespace() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    p = subprocess.run(
        ["unshare", "-nm", "--propagation", "private", "sh", "-c",
         'mount -t sysfs sysfs /sys && ip link set lo up && exec "$0" -c "$1"',
         sys.executable, _SCRIPT], check=False, env=env, capture_output=True, text=True,
        timeout=60)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["bridge"] == ["cove:t:net", 1400, "bridge", True,
                             [["10.99.0.1", 24, False], ["fd42:1::1", 64, True]]]
    assert out["links"] == {"lo": "", "covetestbr0": "cove:t:net"}
    assert {"10.99.0.0/24", "fd42:1::/64", "127.0.0.0/8", "::1/128"} <= set(out["used"])
    assert out["grown"] == [["10.99.0.1", 23]]  # the /24 went, IPv6 too
    assert out["refused"] == ["lo", "covetestbr0"]
    assert out["host_end"] == ["covetestbr0", 1400, True]
    # no IPv6 link-local on eth0: the network has no IPv6
    assert out["eth0"] == ["00:16:3e:aa:bb:cc", 1400, True, True, [["inet", "10.99.0.5", 23]]]
    assert ["default", "10.99.0.1"] in out["routes"]
    assert out["readdress"] == [True, False]
    assert out["after"] == [["10.99.0.5", 22]]
    assert "Cannot create veth cvtest0" in out["again"] and "File exists" in out["again"]
    assert out["deleted"] == [True, False, True]
    assert out["left"] == ["lo"]
