"""Launches and deletes at scale leave the host and coved as they were
(issue 14): 40 at a time, half with a NIC on the default network and half
with none, twice on one coved. While they run, the host's mounts under the
root are as before (no rootfs overlay there); after each round those mounts,
the root's links and nftables elements, its cgroups, conmon and runc
processes and coved's fds are what they were before the first. With them
running, the listing with state (``recursion=2``) answers for all of them, and LXD's
selective recursion (``fields``) leaves the network part out only when asked.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pylxd
from covetest import (
    Coved,
    cgroup_dirs,
    conmon_pids,
    monitors_of,
    mounts_under,
    new_name,
    runc_ids,
    wait_until,
)
from nethost import links, root_id

N = 40  # per round; half with a NIC

# fds that only the GC releases (per-thread SQLite connections, pyroute2
# sockets): bounded, not compared exactly (as test_many.py)
_GC_LAZY = ("cove.db", "socket", "anon_inode:[eventpoll]")


def _nft_elements(root: Path) -> dict[str, int]:
    out = subprocess.run(["nft", "-j", "list", "table", "inet", f"cove_{root_id(root)}"],
                         capture_output=True, timeout=30, check=False).stdout
    elements: dict[str, int] = {}
    for item in json.loads(out or b'{"nftables": []}').get("nftables", []):
        for kind in ("set", "map"):
            if kind in item:
                elements[item[kind]["name"]] = len(item[kind].get("elem", []))
    return elements


def _fds(pid: int) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kind = target if target.startswith("anon_inode") else target.split(":")[0]
        if os.path.basename(kind).startswith("cove.db"):
            kind = "cove.db"
        if kind not in _GC_LAZY:
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def _scratch(d: Coved) -> list[str]:
    """The instances with directories on coved's shared tmpfs (/dev, /run;
    mounted in its base namespace only), read through the fd coved keeps."""
    assert d.proc is not None
    want = str(d.root / "run" / "scratch")
    for fd in os.listdir(f"/proc/{d.proc.pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{d.proc.pid}/fd/{fd}") == want:
                # an instance's directories; not the /sys/fs/cgroup skeleton (.cgroupfs)
                return sorted(n for n in os.listdir(f"/proc/{d.proc.pid}/fd/{fd}")
                              if not n.startswith("."))
    return []


def _host(d: Coved) -> dict[str, Any]:
    """What the root holds on the host, read without cove."""
    # Mounts under the root only: other jobs on the host mount and unmount
    # meanwhile, so the host's whole table is no fixed point to compare with.
    return {"mounts": mounts_under(d.root),
            "links": links(d.root), "nft": _nft_elements(d.root),
            "cgroups": cgroup_dirs(d.root), "conmon": len(conmon_pids(d.root)),
            "runc": runc_ids(d.root), "scratch": _scratch(d)}


def _launch(d: Coved, name: str, nic: bool) -> None:
    devices = {} if nic else {"eth0": {"type": "none"}}
    d.api.run("POST", "/1.0/instances", {
        "name": name, "source": {"type": "image", "alias": "busybox"},
        "config": {"cove.cmd": "sleep 1000"}, "devices": devices, "start": True}, timeout=180)


def _listed(d: Coved, query: str) -> dict[str, Any]:
    return {i["name"]: i for i in d.api.sync("GET", f"/1.0/instances?{query}")}


def _round(d: Coved, before: dict[str, Any]) -> None:
    names = [new_name(f"sc{i}") for i in range(N)]
    with_nic = set(names[::2])
    d.api.made += names
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: _launch(d, n, n in with_nic), names))
    during = _host(d)
    # each rootfs is mounted in its own container's namespace only: N running
    # add nothing to the host's table
    assert during["mounts"] == before["mounts"]
    assert len(during["links"]) == len(before["links"]) + len(with_nic)
    # the monitors that serve them (one per 32 containers; conmon: one each), no others
    serving = set(monitors_of(d.root, names).values())
    assert len(during["runc"]) == N and during["conmon"] == len(serving)
    assert sorted(serving) == sorted(conmon_pids(d.root))
    assert during["scratch"] == sorted(names)  # the read above reads something

    full = _listed(d, "recursion=2")
    assert set(full) == set(names)
    for n, inst in full.items():
        state = inst["state"]
        assert state["status"] == "Running" and state["pid"] > 0 and state["processes"] >= 1
        assert state["memory"]["usage"] > 0, n
        assert ("eth0" in state["network"]) is (n in with_nic), n
        addrs = [a["address"] for a in state["network"].get("eth0", {}).get("addresses", [])
                 if a["family"] == "inet"]
        assert (len(addrs) == 1) is (n in with_nic), n
    for n in sorted(with_nic)[:5]:  # the list's batched NIC state is the one-by-one state
        one = d.api.state(n)["network"]["eth0"]
        listed = full[n]["state"]["network"]["eth0"]
        assert listed["state"] == one["state"] == "up", n
        assert {k: listed[k] for k in ("host_name", "hwaddr", "mtu", "addresses")} == \
            {k: one[k] for k in ("host_name", "hwaddr", "mtu", "addresses")}, n
        assert all(listed["counters"][k] <= one["counters"][k] for k in one["counters"]), n
    only_net = _listed(d, "recursion=2%3Bfields%3Dstate.network")
    for n in names:  # the same interfaces and addresses (counters move)
        got, want = only_net[n]["state"]["network"], full[n]["state"]["network"]
        assert {k: v["addresses"] for k, v in got.items()} == \
            {k: v["addresses"] for k, v in want.items()}, n
    none = _listed(d, "recursion=2;fields=")
    assert all(i["state"]["network"] is None and i["state"]["pid"] > 0 for i in none.values())
    # pylxd (instances.all(recursion=2, fields=...)) sends the fields inside the
    # recursion value, encoded by requests, once the server lists the extension
    client = pylxd.Client(endpoint="http+unix://" + urllib.parse.quote(str(d.socket), safe=""))
    assert client.has_api_extension("instances_state_selective_recursion")
    got = client.api.instances.get(params={"recursion": "2;fields="}).json()["metadata"]
    assert {i["name"] for i in got} == set(names)
    assert all(i["state"]["network"] is None and i["state"]["status"] == "Running" for i in got)
    assert len(client.instances.all(recursion=2, fields=["state.network"])) == N

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(d.api.remove, names))
    d.api.made.clear()
    wait_until(lambda: _host(d) == before, 15,
               what=f"the host as before: {before}, not {_host(d)}")


def test_launches_and_deletes_at_scale_leave_nothing(make_coved, busybox_tar: Path) -> None:  # type: ignore[no-untyped-def]
    d = make_coved("scaleleak")
    d.api.import_image(busybox_tar, "busybox")
    pid = d.proc.pid
    before = _host(d)
    assert before["links"] and not before["runc"] and before["conmon"] == 0
    _round(d, before)  # warm-up: pools, caches, lazily made threads
    fds = _fds(pid)
    assert "anon_inode:[pidfd]" not in fds  # nothing runs, nothing is watched
    _round(d, before)
    wait_until(lambda: _fds(pid) == fds, 10, what=f"coved's fds to be {fds}, not {_fds(pid)}")
    assert sorted(os.listdir(d.root / "instances")) == []
