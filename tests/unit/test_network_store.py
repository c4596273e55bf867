"""Networks and address leases in the store: one transaction per lease,
no address handed out twice even from many threads, a full subnet is an error."""

from __future__ import annotations

import threading
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from cove.model.errors import Conflict, NotFound
from cove.model.records import Network
from cove.network.subnets import free_address
from cove.store import Store

NET = IPv4Network("10.5.0.0/24")
GW = IPv4Address("10.5.0.1")


def _chooser(net: IPv4Network = NET):  # type: ignore[no-untyped-def]
    def choose(taken4: set[str], taken6: set[str]) -> tuple[str, str]:
        return str(free_address(net, [GW, *map(IPv4Address, taken4)])), ""
    return choose


def test_network_rows(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    s.add_network(Network(name="br0", config={"ipv4.address": "10.5.0.1/24"}, created_at=1))
    with pytest.raises(Conflict):
        s.add_network(Network(name="br0"))
    net = s.get_network("br0")
    net.config["dns.domain"] = "lab"
    net.description = "d"
    s.update_network(net)
    assert s.get_network("br0").config["dns.domain"] == "lab"
    assert [n.name for n in s.list_networks()] == ["br0"]
    s.delete_network("br0")
    with pytest.raises(NotFound):
        s.get_network("br0")
    with pytest.raises(NotFound):
        s.delete_network("br0")


def test_leases(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    s.add_network(Network(name="br0"))
    a = s.add_lease("br0", "web", "eth0", "00:16:3e:00:00:01", _chooser())
    b = s.add_lease("br0", "db", "eth0", "00:16:3e:00:00:02", _chooser())
    assert (a.address, b.address) == ("10.5.0.2", "10.5.0.3")
    assert a.id and b.id > a.id
    with pytest.raises(Conflict, match="already holds"):
        s.add_lease("br0", "web", "eth0", "x", _chooser())
    with pytest.raises(Conflict, match="already leased"):
        s.add_lease("br0", "c", "eth0", "x", lambda t4, t6: ("10.5.0.2", ""))
    with pytest.raises(NotFound):
        s.add_lease("nope", "c", "eth0", "x", _chooser())
    with pytest.raises(Conflict, match="still has address leases"):
        s.delete_network("br0")
    assert [x.instance for x in s.list_leases(network="br0")] == ["web", "db"]
    assert s.list_leases(instance="db") == [b]
    s.delete_lease(a.id)
    c = s.add_lease("br0", "c", "eth0", "x", _chooser())
    assert c.address == "10.5.0.2"  # freed addresses are handed out again


def test_full_subnet_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    s.add_network(Network(name="tiny"))
    small = IPv4Network("10.5.0.0/29")
    for i in range(5):
        s.add_lease("tiny", f"i{i}", "eth0", "x", _chooser(small))
    with pytest.raises(Conflict, match="is full"):
        s.add_lease("tiny", "late", "eth0", "x", _chooser(small))
    assert len(s.list_leases(network="tiny")) == 5


def test_no_address_twice_from_threads(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    s.add_network(Network(name="br0"))
    got: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for j in range(10):
            lease = s.add_lease("br0", f"w{n}-{j}", "eth0", "x", _chooser())
            with lock:
                got.append(lease.address)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 80 and len(set(got)) == 80
