"""Managing networks: create, isolate, update, refuse deleting one in use,
bad and overlapping subnets, a full subnet, static addresses, two NICs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import CovedPool
from covetest import Api, Coved, new_name, rand
from nethost import dnsmasq_pids, links


@pytest.fixture(scope="module")
def netd(workdir, busybox_tar) -> Iterator[Coved]:  # type: ignore[no-untyped-def]
    pool = CovedPool(workdir)
    d = pool.new("mgmt")
    d.api.import_image(busybox_tar, "busybox")
    yield d
    problems = pool.close()
    assert not problems, "teardown found leftovers:\n  " + "\n  ".join(problems)


def _net_name() -> str:
    return f"covetest{rand(6)}"  # 14 characters: a link name


def _launch_on(api: Api, name: str, devices: dict[str, dict[str, str]]) -> Any:
    api.made.append(name)
    r = api.request("POST", "/1.0/instances", {
        "name": name, "source": {"type": "image", "alias": "busybox"},
        "config": {"cove.cmd": "sleep 1000"}, "start": True, "devices": devices})
    return api.wait(r)


def _addr(api: Api, name: str, ifname: str = "eth0") -> str:
    return str(api.state(name)["network"][ifname]["addresses"][0]["address"])


def test_networks_are_isolated_and_deletion_is_guarded(netd: Coved) -> None:
    api = netd.api
    na, nb = _net_name(), _net_name()
    api.sync("POST", "/1.0/networks", {"name": na, "config": {"ipv4.address": "auto"}})
    api.sync("POST", "/1.0/networks", {"name": nb, "description": "b"})
    a, b = new_name("a"), new_name("b")
    try:
        assert {na, nb} <= set(links(netd.root))
        sa = api.sync("GET", f"/1.0/networks/{na}")["config"]["ipv4.address"]
        sb = api.sync("GET", f"/1.0/networks/{nb}")["config"]["ipv4.address"]
        assert sa != sb and sa.endswith("/24")
        for name, net in ((a, na), (b, nb)):
            op = _launch_on(api, name, {"eth0": {"type": "nic", "network": net}})
            assert op["status"] == "Success", op
        ip_a, ip_b = _addr(api, a), _addr(api, b)
        assert ip_a.rsplit(".", 1)[0] == sa.rsplit(".", 1)[0]
        gw_a = sa.split("/")[0]
        assert b"1 packets received" in api.sh(a, f"ping -c1 -W1 {gw_a}")
        code, out, _ = api.exec(a, ["ping", "-c1", "-W1", ip_b])
        assert code != 0 and b"0 packets received" in out
        code, _, _ = api.exec(b, ["ping", "-c1", "-W1", ip_a])
        assert code != 0
        # names are per network: a's dnsmasq does not know b
        code, _, _ = api.exec(a, ["ping", "-c1", "-W1", b])
        assert code != 0
        net = api.sync("GET", f"/1.0/networks/{na}")
        assert net["used_by"] == [f"/1.0/instances/{a}"]
        r = api.request("DELETE", f"/1.0/networks/{na}")
        assert r.status == 400 and f"/1.0/instances/{a}" in r.error
        r = api.request("PATCH", f"/1.0/networks/{na}", {"config": {"dns.domain": "lab"}})
        assert r.status == 400 and "stop them" in r.error
        r = api.request("PATCH", f"/1.0/networks/{na}", {"config": {"ipv4.nat": "false"}})
        assert r.status == 200, r.body
        default = api.sync("GET", "/1.0/profiles/default")["devices"]["eth0"]["network"]
        r = api.request("DELETE", f"/1.0/networks/{default}")
        assert r.status == 400 and "/1.0/profiles/default" in r.error
    finally:
        api.remove(a)
        api.remove(b)
    r = api.request("PATCH", f"/1.0/networks/{na}", {"config": {"dns.domain": "lab"}})
    assert r.status == 200, r.body
    for n in (na, nb):
        assert api.request("DELETE", f"/1.0/networks/{n}").status == 200
    assert not {na, nb} & set(links(netd.root))
    assert api.request("GET", f"/1.0/networks/{na}").status == 404
    assert len(dnsmasq_pids(netd.root)) == 1  # the default network's only


def test_bad_and_overlapping_subnets(netd: Coved) -> None:
    api = netd.api
    default = api.sync("GET", "/1.0/profiles/default")["devices"]["eth0"]["network"]
    used = api.sync("GET", f"/1.0/networks/{default}")["config"]["ipv4.address"]
    prefix = used.rsplit(".", 1)[0]
    name = _net_name()
    for config, status, words in [
        ({"ipv4.address": "10.0.0.0/24"}, 400, "network's or broadcast"),
        ({"ipv4.address": "10.300.0.1/24"}, 400, "CIDR"),
        ({"ipv4.address": f"{prefix}.77/24"}, 409, "overlaps"),
        ({"ipv4.address": "127.0.0.2/24"}, 400, "unicast"),
        ({"ipv4.routes": "x"}, 400, "Unknown network configuration key"),
    ]:
        r = api.request("POST", "/1.0/networks", {"name": name, "config": config})
        assert r.status == status and words in r.error, (config, r.body)
    r = api.request("POST", "/1.0/networks", {"name": default})
    assert r.status == 409
    r = api.request("POST", "/1.0/networks", {"name": "lo"})
    assert r.status == 409 and "already exists on the host" in r.error
    r = api.request("POST", "/1.0/networks", {"name": name, "type": "macvlan"})
    assert r.status == 400
    assert name not in links(netd.root)
    assert api.request("GET", f"/1.0/networks/{name}").status == 404


def test_full_subnet_static_address_and_two_nics(netd: Coved) -> None:
    api = netd.api
    tiny = _net_name()
    # a /30 has one address besides the gateway
    api.sync("POST", "/1.0/networks", {"name": tiny, "config": {"ipv4.address":
                                                               "192.168.251.1/30"}})
    one, two, static = new_name("one"), new_name("two"), new_name("st")
    try:
        op = _launch_on(api, one, {"eth0": {"type": "nic", "network": tiny}})
        assert op["status"] == "Success" and _addr(api, one) == "192.168.251.2"
        op = _launch_on(api, two, {"eth0": {"type": "nic", "network": tiny}})
        assert op["status"] == "Failure" and "is full" in op["err"], op
        assert api.request("GET", f"/1.0/instances/{two}").status == 404
        api.remove(one)
        # a static address, and a second NIC on another network
        default = api.sync("GET", "/1.0/profiles/default")["devices"]["eth0"]["network"]
        op = _launch_on(api, static, {
            "eth1": {"type": "nic", "network": tiny, "ipv4.address": "192.168.251.2"}})
        assert op["status"] == "Success", op
        st = api.state(static)["network"]
        assert set(st) == {"lo", "eth0", "eth1"}
        assert st["eth1"]["addresses"][0]["address"] == "192.168.251.2"
        assert api.sync("GET", f"/1.0/instances/{static}")["expanded_devices"]["eth0"][
            "network"] == default
        out = api.sh(static, "ip -o -4 addr; ip route")
        assert b"eth1" in out and b"192.168.251.2/30" in out
        assert out.count(b"default via") == 1
        r = api.request("POST", "/1.0/instances", {
            "name": new_name("bad"), "source": {"type": "image", "alias": "busybox"},
            "devices": {"eth1": {"type": "nic", "network": tiny,
                                 "ipv4.address": "10.99.99.99"}}})
        assert r.status == 400 and "not a free host address" in r.error
        r = api.request("POST", "/1.0/instances", {
            "name": new_name("bad"), "source": {"type": "image", "alias": "busybox"},
            "devices": {"eth1": {"type": "nic", "network": "covetestnonet"}}})
        assert r.status == 400 and "does not exist" in r.error
    finally:
        for n in (one, two, static):
            api.remove(n)
        api.request("DELETE", f"/1.0/networks/{tiny}")


def test_ipv6_network(netd: Coved) -> None:
    api = netd.api
    n6 = _net_name()
    api.sync("POST", "/1.0/networks", {"name": n6, "config": {"ipv6.address": "auto"}})
    a, b = new_name("a6"), new_name("b6")
    try:
        cfg = api.sync("GET", f"/1.0/networks/{n6}")["config"]
        assert cfg["ipv6.address"].startswith("fd") and cfg["ipv6.address"].endswith("::1/64")
        for name in (a, b):
            assert _launch_on(api, name, {"eth0": {"type": "nic", "network": n6}})[
                "status"] == "Success"
        addrs = api.state(b)["network"]["eth0"]["addresses"]
        v6 = [x["address"] for x in addrs if x["family"] == "inet6"]
        assert len(v6) == 1 and [x["family"] for x in addrs] == ["inet", "inet6"]
        # usable at once (no duplicate address detection), by address and by name
        out = api.sh(a, f"ping -6 -c1 -W1 {v6[0]} && ping -c1 -W1 {b}")
        assert out.count(b"1 packets received") == 2
    finally:
        api.remove(a)
        api.remove(b)
        api.request("DELETE", f"/1.0/networks/{n6}")
