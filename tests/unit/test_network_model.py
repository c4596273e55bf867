"""Network model: names, config keys, nic and proxy devices, -p shorthand, subnets."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, ip_network
from pathlib import Path

import pytest

from cove.model.errors import BadRequest, Conflict, InternalError
from cove.network import model as m
from cove.network.subnets import free_address, pick_subnet

# -- names --------------------------------------------------------------------------

def test_default_network_name_depends_on_root() -> None:
    assert m.default_network_name(Path("/var/lib/cove")) == "covebr0"
    a = m.default_network_name(Path("/tmp/covetest-a"))
    b = m.default_network_name(Path("/tmp/covetest-b"))
    assert a != b and a.startswith("cove") and len(a) <= m.IFNAMSIZ
    assert a == m.default_network_name("/tmp/covetest-a")


def test_veth_and_table_names_fit() -> None:
    rid = m.root_id("/x")
    assert len(rid) == 6
    assert m.veth_name(rid, 1) == f"cv{rid}1"
    assert len(m.veth_name(rid, 0xfffffff)) == 15
    with pytest.raises(BadRequest):
        m.veth_name(rid, 0x10000000)
    assert m.table_name(rid) == f"cove_{rid}"


@pytest.mark.parametrize("name", ["covebr0", "lab-net", "n.1", "a_b", "x" * 15])
def test_good_network_names(name: str) -> None:
    assert m.validate_network_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 16, "-a", "a/b", "a b", "a:b", "cvabcdef12", None])
def test_bad_network_names(name: object) -> None:
    with pytest.raises(BadRequest):
        m.validate_network_name(name)


# -- network config -----------------------------------------------------------------

def test_network_config_accepts_lxd_keys() -> None:
    got = m.validate_network_config({
        "ipv4.address": "10.0.3.1/24", "ipv4.nat": True, "ipv6.address": "fd42:1::1/64",
        "ipv6.nat": "false", "dns.domain": "lab.example", "bridge.mtu": 1400, "user.x": "y"})
    assert got["ipv4.nat"] == "true" and got["bridge.mtu"] == "1400"
    assert m.validate_network_config({"ipv4.address": "auto", "ipv6.address": "none"})


@pytest.mark.parametrize("config, words", [
    ({"ipv4.address": "10.0.3.0/24"}, "network's or broadcast"),
    ({"ipv4.address": "10.0.3.255/24"}, "network's or broadcast"),
    ({"ipv4.address": "10.0.3.1"}, "prefix length"),
    ({"ipv4.address": "10.0.3.1/31"}, "/8 to /30"),
    ({"ipv4.address": "300.1.1.1/24"}, "CIDR"),
    ({"ipv4.address": "127.0.0.2/8"}, "unicast"),
    ({"ipv6.address": "fd00::1/48"}, "/64 to /120"),
    ({"ipv4.nat": "maybe"}, "true or false"),
    ({"dns.domain": "bad_domain"}, "DNS labels"),
    ({"bridge.mtu": "100"}, "1280"),
    ({"ipv4.dhcp": "true"}, "Unknown network configuration key"),
    ({"ipv4.address": ["x"]}, "must be a string"),
])
def test_network_config_errors(config: dict[str, object], words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        m.validate_network_config(config)


def test_overlap_is_a_conflict() -> None:
    m.check_overlap("a", IPv4Network("10.1.0.0/24"), [("b", IPv4Network("10.2.0.0/16"))])
    with pytest.raises(Conflict, match="overlaps 10.1.0.0/16"):
        m.check_overlap("a", IPv4Network("10.1.2.0/24"), [("b", IPv4Network("10.1.0.0/16"))])


# -- nic devices --------------------------------------------------------------------

def test_nic_device() -> None:
    nic = m.nic_from_device("eth0", {"type": "nic", "network": "covebr0",
                                     "ipv4.address": "10.0.3.5", "hwaddr": "00:16:3e:00:00:01"})
    assert nic.name == "eth0" and nic.network == "covebr0"
    assert nic.ipv4 == IPv4Address("10.0.3.5")
    lxd_style = m.nic_from_device("net1", {"type": "nic", "nictype": "bridged",
                                           "parent": "br1", "name": "eth1"})
    assert lxd_style.network == "br1" and lxd_style.name == "eth1"


@pytest.mark.parametrize("dev, words", [
    ({"type": "nic"}, "needs network"),
    ({"type": "nic", "network": "n", "nictype": "macvlan"}, "not supported"),
    ({"type": "nic", "network": "n", "name": "x" * 16}, "interface name"),
    ({"type": "nic", "network": "n", "name": "lo"}, "interface name"),
    ({"type": "nic", "network": "n", "ipv4.address": "10.0.0"}, "ipv4.address"),
    ({"type": "nic", "network": "n", "hwaddr": "01:00:00:00:00:00"}, "unicast"),
    ({"type": "nic", "network": "n", "mtu": "70000"}, "mtu"),
    ({"type": "nic", "network": "n", "vlan": "3"}, "unknown nic option"),
])
def test_bad_nic_devices(dev: dict[str, str], words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        m.nic_from_device("eth0", dev)


# -- proxy devices ------------------------------------------------------------------

def test_proxy_addr_parsing() -> None:
    a = m.parse_proxy_addr("tcp:0.0.0.0:8080")
    assert (a.proto, a.host, a.ports, a.any_host) == ("tcp", IPv4Address("0.0.0.0"), (8080,), True)
    b = m.parse_proxy_addr("udp:127.0.0.1:5000-5002,6000")
    assert b.ports == (5000, 5001, 5002, 6000) and not b.any_host


@pytest.mark.parametrize("text, words", [
    ("tcp:0.0.0.0", "ADDRESS:PORT"),
    ("0.0.0.0:80", "protocol"),
    ("sctp:0.0.0.0:80", "protocol 'sctp'"),
    ("tcp:[::]:80", "IPv6"),
    ("tcp:localhost:80", "not an IPv4"),
    ("tcp:0.0.0.0:0", "out of 1-65535"),
    ("tcp:0.0.0.0:70000", "out of 1-65535"),
    ("tcp:0.0.0.0:90-80", "backwards"),
    ("tcp:0.0.0.0:80,80", "twice"),
    ("tcp:0.0.0.0:1-2000", "more than"),
    ("tcp:0.0.0.0:http", "bad port"),
])
def test_bad_proxy_addrs(text: str, words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        m.parse_proxy_addr(text)


def test_proxy_device_mappings() -> None:
    p = m.proxy_from_device("web", {"type": "proxy", "listen": "tcp:0.0.0.0:8080-8081",
                                    "connect": "tcp:0.0.0.0:80", "nat": "true"})
    assert p.mappings() == [(8080, 80), (8081, 80)]
    q = m.proxy_from_device("r", {"type": "proxy", "listen": "udp:127.0.0.1:5000-5001",
                                  "connect": "udp:127.0.0.1:6000-6001"})
    assert q.mappings() == [(5000, 6000), (5001, 6001)]
    assert [str(k) for k in q.port_keys()] == ["udp:127.0.0.1:5000", "udp:127.0.0.1:5001"]


def test_proxy_modes_as_lxd() -> None:
    # nat is LXD's default false: a forwarder, connect inside the instance
    p = m.proxy_from_device("d", {"type": "proxy", "listen": "tcp:127.0.0.1:8080",
                                  "connect": "tcp:127.0.0.1:80"})
    assert not p.nat and p.bind == "host" and not p.proxy_protocol
    assert [str(k) for k in p.port_keys()] == ["tcp:127.0.0.1:8080"]
    q = m.proxy_from_device("n", {"type": "proxy", "listen": "tcp:0.0.0.0:8080",
                                  "connect": "tcp:10.0.3.5:80", "nat": "1"})
    assert q.nat
    # unix on either side, abstract too; no host port
    u = m.proxy_from_device("u", {"type": "proxy", "listen": "unix:/run/h.sock",
                                  "connect": "unix:@ctr", "uid": "1000", "mode": "0660",
                                  "proxy_protocol": "false"})
    assert (u.listen.path, u.connect.abstract, u.uid, u.mode) == ("/run/h.sock", True, 1000,
                                                                 0o660)
    assert u.port_keys() == [] and u.mappings() == [] and str(u.listen) == "unix:/run/h.sock"
    # bind=instance (and LXD's legacy names) listen inside: no host port either
    for word in ("instance", "container", "guest"):
        b = m.proxy_from_device("b", {"type": "proxy", "listen": "tcp:127.0.0.1:80",
                                      "connect": "unix:/run/h.sock", "bind": word})
        assert b.bind == "instance" and b.port_keys() == []
    t = m.proxy_from_device("t", {"type": "proxy", "listen": "tcp:0.0.0.0:80,81",
                                  "connect": "tcp:127.0.0.1:8080", "proxy_protocol": "true"})
    assert t.proxy_protocol and t.mappings() == [(80, 8080), (81, 8080)]


_NAT = {"nat": "true"}


@pytest.mark.parametrize("dev, words", [
    ({"listen": "tcp:0.0.0.0:80"}, "needs listen"),
    ({"listen": "tcp:0.0.0.0:80", "connect": "udp:0.0.0.0:80"}, "tcp <-> udp is not supported"),
    ({"listen": "tcp:0.0.0.0:80", "connect": "udp:0.0.0.0:80", **_NAT},
     "not supported when using NAT"),
    ({"listen": "unix:/run/a.sock", "connect": "tcp:0.0.0.0:80", **_NAT},
     "unix <-> tcp is not supported when using NAT"),
    ({"listen": "tcp:0.0.0.0:80-82", "connect": "tcp:0.0.0.0:80-81"}, "as many as listen"),
    ({"listen": "tcp:0.0.0.0:80", "connect": "tcp:0.0.0.0:80", "nat": "maybe"},
     "nat must be true or false"),
    ({"listen": "tcp:0.0.0.0:80", "connect": "tcp:0.0.0.0:80", "bind": "instance", **_NAT},
     "only host-bound proxies can use NAT"),
    ({"listen": "tcp:0.0.0.0:80", "connect": "tcp:0.0.0.0:80", "bind": "both"},
     "invalid bind"),
    ({"listen": "tcp:0.0.0.0:80", "connect": "tcp:0.0.0.0:80", "proxy_protocol": "true",
      **_NAT}, "PROXY header can only be sent to tcp servers in non-nat mode"),
    ({"listen": "tcp:0.0.0.0:80", "connect": "unix:/run/x", "proxy_protocol": "true"},
     "PROXY header"),
    ({"listen": "tcp:0.0.0.0:80", "connect": "tcp:0.0.0.0:80", "uid": "5"},
     "only proxy devices for non-abstract unix sockets"),
    ({"listen": "unix:@abs", "connect": "tcp:0.0.0.0:80", "mode": "0600"},
     "only proxy devices for non-abstract unix sockets"),
    ({"listen": "unix:/run/a.sock", "connect": "tcp:0.0.0.0:80", "mode": "rw"},
     "mode must be octal"),
    ({"listen": "unix:/run/a.sock", "connect": "tcp:0.0.0.0:80", "uid": "-1"},
     "uid must be a user"),
    ({"listen": "unix:run/a.sock", "connect": "tcp:0.0.0.0:80"}, "must be absolute"),
    ({"listen": "unix:/" + "a" * 120, "connect": "tcp:0.0.0.0:80"}, "at most 107"),
    ({"listen": "tcp:0.0.0.0:80", "connect": "tcp:0.0.0.0:80", "security.gid": "x"},
     "security.gid must be"),
    ({"listen": "tcp:127.0.0.2:80", "connect": "tcp:0.0.0.0:80"}, "not supported"),
    ({"listen": "tcp:127.0.0.2:80", "connect": "tcp:0.0.0.0:80", **_NAT}, "not supported"),
    ({"listen": "tcp:0.0.0.0:80", "connect": "tcp:8.8.8.8:80", **_NAT},
     "must be one of the instance's"),
    # LXD's own rule: 127.0.0.1 is not the instance's address for DNAT
    ({"listen": "tcp:127.0.0.1:80", "connect": "tcp:127.0.0.1:80", **_NAT},
     "must be one of the instance's"),
    ({"listen": "tcp:0.0.0.0:80", "connect": "tcp:0.0.0.0:80", "limits.x": "1"},
     "not supported"),
])
def test_bad_proxy_devices(dev: dict[str, str], words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        m.proxy_from_device("p", {"type": "proxy", **dev})


def test_port_clashes() -> None:
    any80 = m.PortKey("tcp", IPv4Address("0.0.0.0"), 80)
    lo80 = m.PortKey("tcp", IPv4Address("127.0.0.1"), 80)
    host80 = m.PortKey("tcp", IPv4Address("192.0.2.2"), 80)
    assert any80.clashes(lo80) and lo80.clashes(any80)
    assert not lo80.clashes(host80)
    assert not any80.clashes(m.PortKey("udp", IPv4Address("0.0.0.0"), 80))
    assert m.port_conflicts([lo80], [("web", any80)]) == [(lo80, "web")]
    assert m.port_conflicts([host80], [("web", lo80)]) == []


@pytest.mark.parametrize("spec, name, listen, connect", [
    ("8080:80", "proxy-tcp-8080", "tcp:0.0.0.0:8080", "tcp:0.0.0.0:80"),
    ("127.0.0.1:5353:53/udp", "proxy-udp-127.0.0.1-5353", "udp:127.0.0.1:5353", "udp:0.0.0.0:53"),
    ("8080-8081:80-81/tcp", "proxy-tcp-8080-8081", "tcp:0.0.0.0:8080-8081", "tcp:0.0.0.0:80-81"),
])
def test_publish_shorthand(spec: str, name: str, listen: str, connect: str) -> None:
    got_name, dev = m.parse_publish(spec)
    assert got_name == name
    assert dev == {"type": "proxy", "listen": listen, "connect": connect, "nat": "true"}


@pytest.mark.parametrize("spec", ["80", "a:b:c:d", "8080:80/sctp", "x:80", "1.2.3.4:80:80:80"])
def test_bad_publish_shorthand(spec: str) -> None:
    with pytest.raises(BadRequest):
        m.parse_publish(spec)


def test_cli_publish_shorthand_is_shape_only_and_light() -> None:
    """The CLI's parser checks the shape; the ports' range is coved's check."""
    import subprocess
    import sys

    from cove.model.publish import publish_device

    assert publish_device("8080:80") == m.parse_publish("8080:80")
    assert publish_device("70000:80")[1]["listen"] == "tcp:0.0.0.0:70000"
    with pytest.raises(BadRequest, match="out of 1-65535"):
        m.parse_publish("70000:80")
    code = ("import sys, cove.cli.main; before = set(sys.modules); import cove.model.publish; "
            "print(sorted(set(sys.modules) - before))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['cove.model.publish']"


# -- subnets and addresses ----------------------------------------------------------

def test_pick_subnet_avoids_host_routes_and_is_stable() -> None:
    used = [ip_network("192.0.2.0/24"), ip_network("0.0.0.0/0")]
    a = pick_subnet(used, "root:covebr0")
    assert a.prefixlen == 24 and a.subnet_of(IPv4Network("10.0.0.0/8"))
    assert pick_subnet(used, "root:covebr0") == a
    assert pick_subnet(used + [a], "root:covebr0") != a
    assert pick_subnet(used, "other:covebr0") != a


def test_pick_subnet_skips_covering_routes_and_falls_back() -> None:
    used = [ip_network("10.0.0.0/8")]  # someone routes all of 10/8
    got = pick_subnet(used, "x")
    assert got.subnet_of(IPv4Network("172.16.0.0/12"))
    full = [ip_network("10.0.0.0/8"), ip_network("172.16.0.0/12"), ip_network("192.168.0.0/16")]
    with pytest.raises(InternalError, match="No free private IPv4 subnet"):
        pick_subnet(full, "x")


def test_free_address_and_a_full_subnet() -> None:
    net = IPv4Network("10.9.0.0/29")  # .1-.6 usable
    gw = IPv4Address("10.9.0.1")
    assert free_address(net, [gw]) == IPv4Address("10.9.0.2")
    assert free_address(net, [gw, IPv4Address("10.9.0.2")]) == IPv4Address("10.9.0.3")
    taken = [IPv4Address(f"10.9.0.{i}") for i in range(1, 7)]
    with pytest.raises(Conflict, match="is full"):
        free_address(net, taken)
    assert free_address(net, taken[1:4], gateway=gw) == IPv4Address("10.9.0.5")
    # five instances and the gateway fill a /29: five instance addresses, not six
    with pytest.raises(Conflict, match=r"^Subnet 10.9.0.0/29 is full: all 5 instance "
                                       r"addresses are leased \(10.9.0.1 is the gateway\)"):
        free_address(net, taken[1:], gateway=gw)
    # a /24 with 253 instances says 253 (the report that found this said 254)
    net24 = IPv4Network("10.8.0.0/24")
    leased = [IPv4Address(f"10.8.0.{i}") for i in range(2, 255)]
    with pytest.raises(Conflict, match="all 253 instance addresses are leased"):
        free_address(net24, leased, gateway=IPv4Address("10.8.0.1"))
