"""``cove network list|create|show|info|set|unset|delete|list-leases``.

The same words as ``lxc network``; a network's name is its bridge's name on
the host (at most 15 characters).
"""

from __future__ import annotations

import argparse

from cove.cli import render
from cove.cli.context import Context, UsageError, parse_kv

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["LIST_HEADERS", "network_rows", "register"]

_RAW = argparse.RawDescriptionHelpFormatter

LIST_HEADERS = ("NAME", "TYPE", "MANAGED", "IPV4", "IPV6", "DESCRIPTION", "USED BY", "STATE")


def network_rows(nets: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for n in nets:
        c = n.get("config") or {}
        rows.append([str(n.get("name", "")), str(n.get("type", "")),
                     "YES" if n.get("managed") else "NO",
                     "" if c.get("ipv4.address") in (None, "none") else str(c["ipv4.address"]),
                     "" if c.get("ipv6.address") in (None, "none") else str(c["ipv6.address"]),
                     str(n.get("description", "")), str(len(n.get("used_by") or [])),
                     str(n.get("status", "")).upper()])
    return rows


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    nets = ctx.client().networks()
    ctx.out.write(render.render(args.format, LIST_HEADERS, network_rows(nets), nets))
    return 0


def _pairs(items: list[str]) -> dict[str, str]:
    if len(items) == 2 and "=" not in items[0]:
        return {items[0]: items[1]}  # KEY VALUE
    return parse_kv(items, "KEY=VALUE (or KEY VALUE)")


def cmd_create(ctx: Context, args: argparse.Namespace) -> int:
    config = parse_kv(args.items, "KEY=VALUE")
    ctx.client().create_network(args.name, config, description=args.description or "",
                                type=args.type)
    ctx.info(f"Network {args.name} created")
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    net = ctx.client().network(args.name)
    shown = {k: net[k] for k in ("name", "description", "type", "config", "managed", "status",
                                 "used_by") if k in net}
    ctx.out.write(render.yaml_text(shown))
    return 0


def cmd_info(ctx: Context, args: argparse.Namespace) -> int:
    st = ctx.client().network_state(args.name)
    out = [f"Name: {args.name}", f"MAC address: {st.get('hwaddr', '')}",
           f"MTU: {st.get('mtu', '')}", f"State: {str(st.get('state', '')).lower()}",
           f"Type: {st.get('type', '')}", "", "IP addresses:"]
    for a in st.get("addresses") or []:
        out.append(f"  {a.get('family')}\t{a.get('address')}/{a.get('netmask')} "
                   f"({a.get('scope')})")
    c = st.get("counters") or {}
    out += ["", "Network usage:",
            f"  Bytes received: {render.bytes_si(c.get('bytes_received', 0))}",
            f"  Bytes sent: {render.bytes_si(c.get('bytes_sent', 0))}",
            f"  Packets received: {c.get('packets_received', 0)}",
            f"  Packets sent: {c.get('packets_sent', 0)}"]
    ctx.out.write("\n".join(out) + "\n")
    return 0


def cmd_set(ctx: Context, args: argparse.Namespace) -> int:
    changes = _pairs(list(args.items))
    if not changes:
        raise UsageError("give KEY VALUE or KEY=VALUE...")
    ctx.client().update_network(args.name, config=changes)
    return 0


def cmd_unset(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    net = client.network(args.name)
    config = dict(net.get("config") or {})
    if not [k for k in args.keys if config.pop(k, None) is not None]:
        return 0
    client.update_network(args.name, config=config, description=net.get("description"),
                          patch=False)
    return 0


def cmd_delete(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    for name in args.names:
        client.delete_network(name)
        ctx.info(f"Network {name} deleted")
    return 0


def cmd_leases(ctx: Context, args: argparse.Namespace) -> int:
    leases = ctx.client().network_leases(args.name)
    rows = [[str(x.get("hostname", "")), str(x.get("hwaddr", "")), str(x.get("address", "")),
             str(x.get("type", "")).upper()] for x in leases]
    ctx.out.write(render.render(args.format, ("HOSTNAME", "MAC ADDRESS", "IP ADDRESS", "TYPE"),
                                rows, leases))
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser(
        "network", parents=[common], help="Manage networks (bridges, addresses, names)",
        description="Manage networks: bridges with a subnet, NAT and DNS. Every instance "
                    "gets eth0 on the default network unless told otherwise.",
        epilog="commands:\n  list, create, show, info, set, unset, delete, list-leases\n\n"
               "examples:\n"
               "  cove network list\n"
               "  cove network create lab                      a free private /24, NAT, DNS\n"
               "  cove network create lab ipv4.address=10.7.0.1/24 dns.domain=lab\n"
               "  cove launch busybox web --network lab\n"
               "  cove network list-leases lab\n\n"
               "Run 'cove network COMMAND --help' for more.",
        formatter_class=_RAW)
    group.set_defaults(help_parser=group)
    nsub = group.add_subparsers(title="commands", metavar="COMMAND")

    p = nsub.add_parser("list", aliases=["ls"], parents=[common], help="List networks",
                        description="List networks with their subnets and users.",
                        epilog="examples:\n  cove network list\n  cove network list -f json",
                        formatter_class=_RAW)
    p.add_argument("-f", "--format", choices=render.FORMATS, default="table")
    p.set_defaults(func=cmd_list)

    p = nsub.add_parser(
        "create", parents=[common], help="Create a network",
        description="Create a bridge network. Keys: ipv4.address (CIDR, auto, none), "
                    "ipv4.nat, ipv6.address (CIDR, auto, none), ipv6.nat, dns.domain, "
                    "bridge.mtu, user.*. A network of type cni runs a CNI config list "
                    "(plugins from /usr/lib/cni): cni.config (the JSON) or cni.path (a file "
                    "in /etc/cni/net.d, read at each start).",
        epilog="examples:\n"
               "  cove network create lab\n"
               "  cove network create lab ipv4.address=10.7.0.1/24 ipv4.nat=false\n"
               "  cove network create lab6 ipv6.address=auto dns.domain=lab\n"
               "  cove network create mycni --type cni cni.config=\"$(cat lab.conflist)\"\n"
               "  cove network create mycni --type cni cni.path=/etc/cni/net.d/lab.conflist",
        formatter_class=_RAW)
    p.add_argument("name", metavar="NAME", help="network (and bridge) name, 15 characters max")
    p.add_argument("items", metavar="KEY=VALUE", nargs="*")
    p.add_argument("--description", default="")
    p.add_argument("-t", "--type", default="bridge", help="network type: bridge (default) or cni")
    p.set_defaults(func=cmd_create)

    p = nsub.add_parser("show", parents=[common], help="Print a network as YAML",
                        description="Print a network's config and users as YAML.",
                        epilog="examples:\n  cove network show lab", formatter_class=_RAW)
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_show)

    p = nsub.add_parser("info", parents=[common], help="Show a network's runtime state",
                        description="The bridge's addresses, MTU and traffic counters.",
                        epilog="examples:\n  cove network info lab", formatter_class=_RAW)
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_info)

    p = nsub.add_parser("set", parents=[common], help="Set network config keys",
                        description="Set config keys (addresses and the domain change only "
                                    "while no instance runs on the network).",
                        epilog="examples:\n  cove network set lab ipv4.nat false\n"
                               "  cove network set lab dns.domain=lab user.owner=me",
                        formatter_class=_RAW)
    p.add_argument("name", metavar="NAME")
    p.add_argument("items", metavar="KEY=VALUE", nargs="+")
    p.set_defaults(func=cmd_set)

    p = nsub.add_parser("unset", parents=[common], help="Remove network config keys",
                        description="Remove config keys (their defaults apply again).",
                        epilog="examples:\n  cove network unset lab dns.domain",
                        formatter_class=_RAW)
    p.add_argument("name", metavar="NAME")
    p.add_argument("keys", metavar="KEY", nargs="+")
    p.set_defaults(func=cmd_unset)

    p = nsub.add_parser("delete", aliases=["rm"], parents=[common], help="Delete networks",
                        description="Delete networks; one in use (by the default profile or "
                                    "an instance's NIC) is refused.",
                        epilog="examples:\n  cove network delete lab", formatter_class=_RAW)
    p.add_argument("names", metavar="NAME", nargs="+")
    p.set_defaults(func=cmd_delete)

    p = nsub.add_parser("list-leases", parents=[common], help="List the addresses in use",
                        description="The addresses running instances hold on a network.",
                        epilog="examples:\n  cove network list-leases lab", formatter_class=_RAW)
    p.add_argument("name", metavar="NAME")
    p.add_argument("-f", "--format", choices=render.FORMATS, default="table")
    p.set_defaults(func=cmd_leases)
