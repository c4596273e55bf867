"""Golden tests of the pure builders: cove's nftables table, a network's
dnsmasq config, a container's /etc/hosts and /etc/resolv.conf."""

from __future__ import annotations

import os
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

from cove.network import dns, nft

GOLDEN = Path(__file__).parent / "golden"


def _golden(name: str, got: str) -> None:
    path = GOLDEN / name
    if os.environ.get("COVE_UPDATE_GOLDEN"):
        path.write_text(got)
    assert got == path.read_text()


def _nets() -> list[nft.NetRules]:
    return [
        nft.NetRules("covebr0", IPv4Network("10.17.3.0/24"), True,
                     IPv6Network("fd42:17:3::/64"), True),
        nft.NetRules("lab", IPv4Network("10.99.0.0/24"), False),
    ]


def _ports() -> list[nft.PortRule]:
    return [
        nft.PortRule("tcp", None, 8080, IPv4Address("10.17.3.2"), 80),
        nft.PortRule("udp", IPv4Address("127.0.0.1"), 5353, IPv4Address("10.17.3.3"), 53),
    ]


def test_ruleset_golden() -> None:
    got = nft.ruleset("cove_abc123", _nets(), _ports(), [IPv4Address("10.17.3.2")])
    _golden("nft_ruleset.nft", got)


def test_ruleset_without_br_netfilter_masquerades_same_subnet_dnat() -> None:
    got = nft.ruleset("cove_abc123", _nets(), hairpin_all=True)
    assert "ct status dnat ip saddr 10.17.3.0/24 ip daddr 10.17.3.0/24 masquerade" in got
    assert "ct status dnat ip saddr 10.17.3.0/24" not in nft.ruleset("cove_abc123", _nets())


def test_ruleset_is_one_replacing_transaction_and_order_free() -> None:
    a = nft.ruleset("t", _nets(), _ports())
    b = nft.ruleset("t", list(reversed(_nets())), list(reversed(_ports())))
    assert a == b
    assert a.startswith("add table inet t\ndelete table inet t\ntable inet t {\n")


def test_empty_ruleset_has_no_elements() -> None:
    got = nft.ruleset("t", [])
    assert "elements" not in got and "iifname \"" not in got


def test_port_commands_golden() -> None:
    add = nft.ports_command("cove_abc123", "add", _ports(), [IPv4Address("10.17.3.2")])
    delete = nft.ports_command("cove_abc123", "delete", _ports(), [IPv4Address("10.17.3.2")])
    _golden("nft_ports.nft", add + delete)
    assert nft.ports_command("t", "add", []) == ""


def test_per_instance_change_does_not_grow_with_instances() -> None:
    one = nft.ports_command("t", "add", [nft.PortRule("tcp", None, 1, IPv4Address("10.0.0.2"), 1)])
    assert one.count("\n") == 1  # one element, whatever else the table holds
    assert nft.delete_table("t") == "add table inet t\ndelete table inet t\n"


def test_dnsmasq_conf_golden() -> None:
    got = dns.dnsmasq_conf(dns.DnsmasqConfig(
        network="covebr0", bridge="covebr0",
        listen=(IPv4Address("10.17.3.1"), IPv6Address("fd42:17:3::1")), domain="cove",
        hosts_dir="/var/lib/cove/networks/covebr0/hosts.d",
        pid_file="/var/lib/cove/networks/covebr0/dnsmasq.pid",
        log_file="/var/lib/cove/networks/covebr0/dnsmasq.log"))
    _golden("dnsmasq_covebr0.conf", got)


def test_container_files() -> None:
    hosts = dns.container_hosts("web", "cove", [IPv4Address("10.17.3.2")])
    assert hosts.splitlines()[0] == "127.0.0.1\tlocalhost"
    assert "10.17.3.2\tweb.cove web" in hosts
    assert "127.0.1.1\tweb" in dns.container_hosts("web", "cove", [])
    resolv = dns.container_resolv([IPv4Address("10.17.3.1"), IPv4Address("10.99.0.1")],
                                  ["cove", "lab", "cove"])
    assert resolv == "nameserver 10.17.3.1\nnameserver 10.99.0.1\nsearch cove lab\n" \
                     "options ndots:1\n"
    assert dns.hosts_entry([IPv4Address("10.17.3.2")], "db", "cove") == "10.17.3.2 db.cove db\n"
    # cove.dns.aliases: more names of the same address (a stack's service name)
    assert dns.hosts_entry([IPv4Address("10.17.3.2")], "app-db", "cove", ["db", "store", "db"]) \
        == "10.17.3.2 app-db.cove app-db db.cove db store.cove store\n"


def test_ports_on_all_and_one_address_of_one_protocol_sort() -> None:
    ports = [nft.PortRule("tcp", IPv4Address("127.0.0.1"), 81, IPv4Address("10.0.0.2"), 80),
             nft.PortRule("tcp", None, 80, IPv4Address("10.0.0.2"), 80)]
    assert "tcp . 80 : 10.0.0.2 . 80" in nft.ruleset("t", [], ports)
    assert nft.ports_command("t", "delete", ports) == (
        "delete element inet t pub_any { tcp . 80 }\n"
        "delete element inet t pub_addr { 127.0.0.1 . tcp . 81 }\n")
