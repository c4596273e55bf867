"""Nothing of an instance's networking outlives it: 50 launched and deleted
(half with published ports) leave the host as it was (links, addresses,
nftables elements, leases, names); a coved killed while instances run and
then losing them finds and removes what they held when it starts again; a
coved stopped with nothing running takes its bridges, dnsmasqs and table
with it, and gets the same subnet back at the next start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from covetest import Api, Coved, new_name, wait_until
from nethost import dnsmasq_pids, links, nft_tables, root_id


def _host(d: Coved) -> dict[str, Any]:
    """The host's view of the root's networking, read without cove."""
    rid = root_id(d.root)
    addrs = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, check=True,
                                      timeout=30).stdout)
    mine = set(links(d.root))
    table = subprocess.run(["nft", "-j", "list", "table", "inet", f"cove_{rid}"],
                           capture_output=True, timeout=30, check=False).stdout
    elements: dict[str, int] = {}
    for item in json.loads(table or b'{"nftables": []}').get("nftables", []):
        for kind in ("set", "map"):
            if kind in item:
                elements[item[kind]["name"]] = len(item[kind].get("elem", []))
    hosts = sorted(p for n in (d.root / "networks").iterdir()
                   for p in os.listdir(n / "hosts.d")) if (d.root / "networks").exists() else []
    return {
        "links": sorted(mine),
        "addresses": sorted((a["ifname"], i["local"]) for a in addrs if a["ifname"] in mine
                            for i in a.get("addr_info", []) if i["family"] == "inet"),
        "elements": elements,
        "hosts": hosts,
        "dnsmasq": len(dnsmasq_pids(d.root)),
    }


def _leases(api: Api) -> list[Any]:
    out = []
    for net in api.sync("GET", "/1.0/networks"):
        out += api.sync("GET", f"{net}/leases")
    return out


def _launch(api: Api, name: str, port: int | None) -> None:
    devices = {} if port is None else {"p": {"type": "proxy", "listen": f"tcp:127.0.0.1:{port}",
                                              "connect": "tcp:0.0.0.0:80", "nat": "true"}}
    api.run("POST", "/1.0/instances", {
        "name": name, "source": {"type": "image", "alias": "busybox"},
        "config": {"cove.cmd": "sleep 1000"}, "start": True, "devices": devices})


def test_fifty_launched_and_deleted_leave_nothing(make_coved, busybox_tar) -> None:  # type: ignore[no-untyped-def]
    d = make_coved("netleak")
    api = d.api
    api.import_image(busybox_tar, "busybox")
    before = _host(d)
    assert before["links"] and not before["hosts"] and before["dnsmasq"] == 1
    names = [new_name(f"n{i}") for i in range(50)]
    api.made += names
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: _launch(api, names[i], 31000 + i if i % 2 else None),
                      range(50)))
    during = _host(d)
    assert len(during["links"]) == len(before["links"]) + 50
    assert during["elements"]["pub_addr"] == 25 and during["elements"]["hairpin"] == 25
    assert len(during["hosts"]) == 50 and len(_leases(api)) == 50
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(api.remove, names))
    wait_until(lambda: _host(d) == before, 10, what="the host as before")
    assert _leases(api) == []


def test_killed_coved_cleans_up_what_died_meanwhile(make_coved, busybox_tar) -> None:  # type: ignore[no-untyped-def]
    d = make_coved("netkill")
    api = d.api
    api.import_image(busybox_tar, "busybox")
    before = _host(d)
    keep, lost = new_name("keep"), new_name("lost")
    api.made += [keep, lost]
    _launch(api, keep, 31101)
    _launch(api, lost, 31102)
    d.kill()  # SIGKILL: containers, bridge, dnsmasq and rules stay
    # the instance dies while coved is away
    subprocess.run(["runc", "--root", str(d.root / "run" / "runc"), "kill", lost, "KILL"],
                   capture_output=True, timeout=30, check=False)
    d.start()
    now = _host(d)
    assert len(now["links"]) == len(before["links"]) + 1
    assert now["elements"]["pub_addr"] == 1 and len(now["hosts"]) == 1
    assert [x["hostname"] for x in _leases(api)] == [keep]
    api.remove(keep)
    api.remove(lost)
    wait_until(lambda: _host(d) == before, 10, what="the host as before")


def test_stopped_coved_takes_its_network_along(make_coved, busybox_tar) -> None:  # type: ignore[no-untyped-def]
    d = make_coved("netstop")
    first = d.api.sync("GET", "/1.0/networks?recursion=1")
    assert _host(d)["links"]
    d.stop()
    assert _host(d)["links"] == [] and _host(d)["dnsmasq"] == 0
    assert nft_tables(d.root) == []
    d.start()
    assert d.api.sync("GET", "/1.0/networks?recursion=1") == first
    assert _host(d)["links"] and _host(d)["dnsmasq"] == 1
    # killed with nothing running: the next start adopts what is there
    pid = d.proc.pid if d.proc else 0
    os.kill(pid, signal.SIGKILL)
    d.proc.wait(10) if d.proc else None
    d.start()
    assert d.api.sync("GET", "/1.0/networks?recursion=1") == first
    assert _host(d)["dnsmasq"] == 1


def test_a_network_gone_from_the_database_is_swept(make_coved) -> None:  # type: ignore[no-untyped-def]
    """coved killed after making a network whose row then vanished (a crash
    between the host changes and the commit): the next start removes its
    bridge, dnsmasq, files and rules."""
    import sqlite3

    from covetest import rand

    d = make_coved("netsweep")
    name = f"covetest{rand(6)}"
    d.api.sync("POST", "/1.0/networks", {"name": name})
    assert name in links(d.root) and _host(d)["dnsmasq"] == 2
    d.kill()
    with sqlite3.connect(d.root / "cove.db") as db:
        db.execute("DELETE FROM networks WHERE name=?", (name,))
    d.start()
    assert name not in links(d.root)
    assert _host(d)["dnsmasq"] == 1
    assert not (d.root / "networks" / name).exists()
    assert d.api.request("GET", f"/1.0/networks/{name}").status == 404
