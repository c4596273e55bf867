"""cove's nftables ruleset and its per-instance changes (pure text builders).

Design note: cove writes only its own table, ``table inet cove_<root id>``,
and replaces it whole in one transaction (``add table; delete table; table
{...}``) when networks change, so it never flushes or edits anyone else's
rules. Per-instance changes never add or rewrite rules: published ports are
elements of maps keyed by (address, protocol, port), so a launch with a
published port is one ``add element`` whatever the number of containers,
and a launch without one touches nftables not at all.

The chains:

* ``guard`` (prerouting, raw): drop packets from a cove bridge to
  127.0.0.0/8. The bridges have ``route_localnet`` on (so that DNAT from
  127.0.0.1 can leave through them); without this guard a container could
  reach the host's loopback-only services through its gateway.
* ``prerouting`` / ``output`` (nat): a packet to any local address (``fib
  daddr type local``) whose (address, protocol, port) or (protocol, port) is
  published is DNATed to the container. ``output`` covers the host's own
  clients, including 127.0.0.1.
* ``postrouting`` (nat): SNAT to the bridge address what came from
  127.0.0.0/8 (the container could not answer 127.0.0.1), and the rare
  connection a container makes to its own published port (``hairpin``);
  masquerade what leaves a NATed subnet for anything but a cove bridge.
  Clients on the same bridge keep their address: with ``br_netfilter``
  loaded, the bridged reply passes conntrack and is un-NATed; without it,
  same-subnet DNATed traffic is masqueraded too (``hairpin_all``).
* ``forward`` (filter): a cove network's traffic may not be routed to
  another cove network.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Network

__all__ = ["NetRules", "PortRule", "delete_table", "ports_command", "ruleset"]


@dataclass(frozen=True)
class NetRules:
    """What the ruleset needs to know of one network."""

    bridge: str
    subnet4: IPv4Network | None
    nat4: bool
    subnet6: IPv6Network | None = None
    nat6: bool = False


@dataclass(frozen=True)
class PortRule:
    """One published port: ``listen`` None means every local address."""

    proto: str
    listen: IPv4Address | None
    port: int
    target: IPv4Address
    target_port: int


def _order(p: PortRule) -> tuple[str, int, int, int, int]:
    """Sort key (``listen`` None, every address, sorts first)."""
    return (p.proto, int(p.listen) if p.listen is not None else -1, p.port, int(p.target),
            p.target_port)


def _q(name: str) -> str:
    return '"' + name + '"'


def _elements(items: list[str]) -> list[str]:
    return ["elements = { " + ", ".join(items) + " }"] if items else []


def _port_key(p: PortRule) -> str:
    if p.listen is None:
        return f"{p.proto} . {p.port}"
    return f"{p.listen} . {p.proto} . {p.port}"


def _port_elem(p: PortRule) -> str:
    return f"{_port_key(p)} : {p.target} . {p.target_port}"


def ruleset(table: str, nets: Iterable[NetRules], ports: Iterable[PortRule] = (),
            hairpins: Iterable[IPv4Address] = (), *, hairpin_all: bool = False) -> str:
    """The whole table as one transaction that replaces any previous one.

    ``hairpins``: instances with published ports (a connection to their own
    published port is masqueraded). ``hairpin_all``: no ``br_netfilter``, so
    same-subnet DNATed traffic is masqueraded too.
    """
    nets = sorted(nets, key=lambda n: n.bridge)
    ports = sorted(set(ports), key=_order)
    t = "\t"
    out = [f"add table inet {table}", f"delete table inet {table}", f"table inet {table} {{"]

    def block(kind: str, name: str, body: list[str]) -> None:
        out.append(f"{t}{kind} {name} {{")
        out.extend(f"{t}{t}{line}" for line in body)
        out.append(f"{t}}}")

    bridges = [_q(n.bridge) for n in nets]
    block("set", "bridges", ["type ifname", *_elements(bridges)])
    block("set", "nat4", ["type ipv4_addr", "flags interval",
                          *_elements([str(n.subnet4) for n in nets if n.nat4 and n.subnet4])])
    block("set", "nat6", ["type ipv6_addr", "flags interval",
                          *_elements([str(n.subnet6) for n in nets if n.nat6 and n.subnet6])])
    block("map", "pub_any", ["type inet_proto . inet_service : ipv4_addr . inet_service",
                             *_elements([_port_elem(p) for p in ports if p.listen is None])])
    block("map", "pub_addr", [
        "type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service",
        *_elements([_port_elem(p) for p in ports if p.listen is not None])])
    block("set", "hairpin", ["type ipv4_addr . ipv4_addr",
                             *_elements([f"{a} . {a}" for a in sorted(set(hairpins))])])
    block("chain", "guard", [
        "type filter hook prerouting priority raw; policy accept;",
        "iifname @bridges ip daddr 127.0.0.0/8 drop",
        "iifname @bridges ip saddr 127.0.0.0/8 drop",
    ])
    block("chain", "published", [
        "dnat ip to ip daddr . meta l4proto . th dport map @pub_addr",
        "dnat ip to meta l4proto . th dport map @pub_any",
    ])
    block("chain", "prerouting", [
        "type nat hook prerouting priority dstnat; policy accept;",
        "fib daddr type local meta l4proto { tcp, udp } jump published",
    ])
    block("chain", "output", [
        "type nat hook output priority -100; policy accept;",
        "fib daddr type local meta l4proto { tcp, udp } jump published",
    ])
    post = [
        "type nat hook postrouting priority srcnat; policy accept;",
        "oifname @bridges ip saddr 127.0.0.0/8 masquerade",
        "ct status dnat ip saddr . ip daddr @hairpin masquerade",
    ]
    if hairpin_all:
        post += [f"ct status dnat ip saddr {n.subnet4} ip daddr {n.subnet4} masquerade"
                 for n in nets if n.subnet4]
    post += [
        "ip saddr @nat4 oifname != @bridges masquerade",
        "ip6 saddr @nat6 oifname != @bridges masquerade",
    ]
    block("chain", "postrouting", post)
    block("chain", "forward", [
        "type filter hook forward priority filter; policy accept;",
        *[f"iifname {_q(n.bridge)} oifname @bridges oifname != {_q(n.bridge)} drop"
          for n in nets],
    ])
    out.append("}")
    return "\n".join(out) + "\n"


def delete_table(table: str) -> str:
    """Remove the table if it exists (one transaction, never an error)."""
    return f"add table inet {table}\ndelete table inet {table}\n"


def ports_command(table: str, verb: str, ports: Iterable[PortRule],
                  hairpins: Iterable[IPv4Address] = ()) -> str:
    """``add`` or ``delete`` the elements of some published ports (one
    transaction when run as one buffer)."""
    assert verb in ("add", "delete")
    ports = sorted(set(ports), key=_order)
    lines = []
    anyp = [p for p in ports if p.listen is None]
    addrp = [p for p in ports if p.listen is not None]
    fmt = _port_elem if verb == "add" else _port_key
    if anyp:
        lines.append(f"{verb} element inet {table} pub_any {{ "
                     + ", ".join(fmt(p) for p in anyp) + " }")
    if addrp:
        lines.append(f"{verb} element inet {table} pub_addr {{ "
                     + ", ".join(fmt(p) for p in addrp) + " }")
    hp = sorted(set(hairpins))
    if hp:
        lines.append(f"{verb} element inet {table} hairpin {{ "
                     + ", ".join(f"{a} . {a}" for a in hp) + " }")
    return "\n".join(lines) + ("\n" if lines else "")
