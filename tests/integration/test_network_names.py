"""Instances on the default network: addresses in the state API, each other by
name (bare and under dns.domain) within a second of starting, names gone when
deleted, the host resolving through the bridge's dnsmasq, no NIC when asked."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from conftest import CovedPool
from covetest import Api, Coved, new_name, wait_until
from nethost import dns_query, links, network_leaks


@pytest.fixture(scope="module")
def netd(workdir, busybox_tar) -> Iterator[Coved]:  # type: ignore[no-untyped-def]
    pool = CovedPool(workdir)
    d = pool.new("net")
    d.api.import_image(busybox_tar, "busybox")
    yield d
    problems = pool.close()
    assert not problems, "teardown found leftovers:\n  " + "\n  ".join(problems)


def _default(api: Api) -> dict:  # type: ignore[type-arg]
    (net,) = api.sync("GET", "/1.0/networks?recursion=1")
    return net  # type: ignore[no-any-return]


def test_default_network_and_state(netd: Coved) -> None:
    api = netd.api
    net = _default(api)
    assert net["type"] == "bridge" and net["managed"] and net["status"] == "Created"
    assert net["config"]["ipv4.nat"] == "true" and net["config"]["dns.domain"] == "cove"
    assert "/" in net["config"]["ipv4.address"]
    prof = api.sync("GET", "/1.0/profiles/default")
    assert prof["devices"] == {"eth0": {"type": "nic", "network": net["name"], "name": "eth0"}}
    name = new_name("st")
    api.launch(name)
    try:
        inst = api.sync("GET", f"/1.0/instances/{name}")
        assert inst["devices"] == {} and inst["expanded_devices"]["eth0"]["type"] == "nic"
        st = api.state(name)["network"]
        assert set(st) == {"lo", "eth0"}
        eth0 = st["eth0"]
        (addr,) = eth0["addresses"]
        # a root's default network is a /22 (issue 14: it holds a thousand)
        assert addr["family"] == "inet" and addr["netmask"] == "22" and addr["scope"] == "global"
        assert eth0["host_name"] in links(netd.root)
        assert eth0["hwaddr"].startswith("00:16:3e:") and eth0["state"] == "up"
        assert eth0["type"] == "broadcast" and eth0["mtu"] == 1500
        assert set(eth0["counters"]) >= {"bytes_received", "bytes_sent", "packets_received",
                                         "packets_sent"}
        out = api.sh(name, "ip -4 addr show eth0; ip route")
        assert addr["address"].encode() in out
        gw = net["config"]["ipv4.address"].split("/")[0]
        assert f"default via {gw}".encode() in out
        leases = api.sync("GET", f"/1.0/networks/{net['name']}/leases")
        assert {"hostname": name, "address": addr["address"], "hwaddr": eth0["hwaddr"],
                "type": "dynamic", "location": "none", "project": "default"} in leases
        nstate = api.sync("GET", f"/1.0/networks/{net['name']}/state")
        assert nstate["addresses"][0]["address"] == gw
    finally:
        api.remove(name)
    assert api.state  # the instance is gone; its veth goes with its namespace
    wait_until(lambda: not network_leaks(netd.root, bridges_ok=True), 5, what="veth gone")


def test_instances_reach_each_other_by_name(netd: Coved) -> None:
    api = netd.api
    net = _default(api)
    gw = net["config"]["ipv4.address"].split("/")[0]
    web, db = new_name("web"), new_name("db")
    api.launch(web)
    try:
        t0 = time.monotonic()
        api.launch(db)
        db_ip = api.state(db)["network"]["eth0"]["addresses"][0]["address"]
        # within a second of db starting, by bare name and under the domain
        out = api.sh(web, f"ping -c1 -W1 {db} && ping -c1 -W1 {db}.cove")
        assert time.monotonic() - t0 < 5  # the launch itself included
        assert f"({db_ip})".encode() in out and b"1 packets received" in out
        # the host resolves them through the bridge's dnsmasq
        assert dns_query(gw, f"{db}.cove") == db_ip
        assert dns_query(gw, db) == db_ip
        # the container's own files
        hosts = api.sh(web, "cat /etc/hosts /etc/resolv.conf")
        assert f"{web}.cove {web}".encode() in hosts
        assert f"nameserver {gw}".encode() in hosts and b"search cove" in hosts
        api.remove(db)
        assert dns_query(gw, f"{db}.cove") is None
        # busybox's own DNS client: the C library's resolver (ping's) sends A
        # and AAAA at once and, now and then, waits out 5 s timeouts for a
        # name the server has already answered NXDOMAIN for (20 s in all)
        code, _, _ = api.exec(web, ["nslookup", db])
        assert code != 0
    finally:
        api.remove(web)
        api.remove(db)


def test_stop_frees_the_name_and_the_lease(netd: Coved) -> None:
    api = netd.api
    net = _default(api)
    gw = net["config"]["ipv4.address"].split("/")[0]
    name = new_name("stop")
    api.launch(name)
    try:
        ip = api.state(name)["network"]["eth0"]["addresses"][0]["address"]
        assert dns_query(gw, f"{name}.cove") == ip
        api.action(name, "stop", force=True)
        assert api.state(name)["network"] is None
        assert dns_query(gw, f"{name}.cove") is None
        assert all(x["hostname"] != name
                   for x in api.sync("GET", f"/1.0/networks/{net['name']}/leases"))
        api.action(name, "start")
        assert api.state(name)["network"]["eth0"]["addresses"]
        assert dns_query(gw, f"{name}.cove") is not None
    finally:
        api.remove(name)


def test_no_nic_means_loopback_only(netd: Coved) -> None:
    api = netd.api
    name = new_name("nonic")
    api.made.append(name)
    api.run("POST", "/1.0/instances", {
        "name": name, "source": {"type": "image", "alias": "busybox"},
        "config": {"cove.cmd": "sleep 1000"}, "start": True,
        "devices": {"eth0": {"type": "none"}}})
    try:
        assert set(api.state(name)["network"]) == {"lo"}
        out = api.sh(name, "ip -o link")
        assert b"eth0" not in out and b"lo" in out
        assert "eth0" not in api.sync("GET", f"/1.0/instances/{name}")["expanded_devices"]
    finally:
        api.remove(name)
