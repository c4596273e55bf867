"""``cove metrics`` (the Prometheus text of ``/1.0/metrics``) and the text of
``cove info --resources`` (the host's hardware, laid out as ``lxc info
--resources`` prints it)."""

from __future__ import annotations

import argparse

from cove.cli import render
from cove.cli.context import Context

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["register", "resources_text"]

_RAW = argparse.RawDescriptionHelpFormatter


def cmd_metrics(ctx: Context, args: argparse.Namespace) -> int:
    # --project given: that project's instances only; else every project's
    # (the client still scopes to a switched-to project that is not default)
    text = ctx.client().metrics(project=getattr(args, "project", None))
    if args.name:
        # only the daemon's samples and those of the named instances
        keep = [f'name="{n}"' for n in args.name]
        text = "".join(line + "\n" for line in text.splitlines()
                       if line.startswith("#") or "name=" not in line
                       or any(k in line for k in keep))
    ctx.out.write(text)
    return 0


def _cpu_lines(sock: dict[str, Any], p: str) -> list[str]:
    out = []
    if sock.get("vendor"):
        out.append(f"{p}Vendor: {sock['vendor']}")
    if sock.get("name"):
        out.append(f"{p}Name: {sock['name']}")
    if sock.get("cache"):
        out.append(f"{p}Caches:")
        out += [f"{p}  - Level {c.get('level', 0)} (type: {c.get('type', '')}): "
                f"{render.bytes_iec(c.get('size', 0)).replace('.00', '')}"
                for c in sock["cache"]]
    out.append(f"{p}Cores:")
    for core in sock.get("cores") or []:
        out += [f"{p}  - Core {core.get('core', 0)}",
                f"{p}    Frequency: {core.get('frequency', 0)}Mhz", f"{p}    Threads:"]
        out += [f"{p}      - {t.get('thread', 0)} (id: {t.get('id', 0)}, online: "
                f"{str(bool(t.get('online'))).lower()}, NUMA node: {t.get('numa_node', 0)})"
                for t in core.get("threads") or []]
    if sock.get("frequency"):
        if sock.get("frequency_turbo") and sock.get("frequency_minimum"):
            out.append(f"{p}Frequency: {sock['frequency']}Mhz (min: "
                       f"{sock['frequency_minimum']}Mhz, max: {sock['frequency_turbo']}Mhz)")
        else:
            out.append(f"{p}Frequency: {sock['frequency']}Mhz")
    return out


def _nic_lines(card: dict[str, Any], p: str) -> list[str]:
    out = [f"{p}NUMA node: {card.get('numa_node', 0)}"]
    if card.get("pci_address"):
        out.append(f"{p}PCI address: {card['pci_address']}")
    if card.get("driver"):
        out.append(f"{p}Driver: {card['driver']} ({card.get('driver_version', '')})")
    if card.get("ports"):
        out.append(f"{p}Ports:")
        for port in card["ports"]:
            out += [f"{p}  - Port {port.get('port', 0)} ({port.get('protocol', '')})",
                    f"{p}    ID: {port.get('id', '')}"]
            if port.get("address"):
                out.append(f"{p}    Address: {port['address']}")
            out += [f"{p}    Auto negotiation: {str(bool(port.get('auto_negotiation'))).lower()}",
                    f"{p}    Link detected: {str(bool(port.get('link_detected'))).lower()}"]
    return out


def _disk_lines(disk: dict[str, Any], p: str) -> list[str]:
    out = [f"{p}NUMA node: {disk.get('numa_node', 0)}", f"{p}ID: {disk.get('id', '')}",
           f"{p}Device: {disk.get('device', '')}"]
    if disk.get("model"):
        out.append(f"{p}Model: {disk['model']}")
    if disk.get("type"):
        out.append(f"{p}Type: {disk['type']}")
    out += [f"{p}Size: {render.bytes_iec(disk.get('size', 0))}",
            f"{p}Read-Only: {str(bool(disk.get('read_only'))).lower()}",
            f"{p}Removable: {str(bool(disk.get('removable'))).lower()}"]
    if disk.get("partitions"):
        out.append(f"{p}Partitions:")
        out += [f"{p}  - Partition {part.get('partition', 0)}" for part in disk["partitions"]]
    return out


def _group(items: list[dict[str, Any]], one: str, many: str, item: str,
           lines: Any) -> list[str]:
    if len(items) == 1:
        return ["", f"{one}:", *lines(items[0], "  ")]
    out = ["", f"{many}:"] if items else []
    for i, x in enumerate(items):
        out += [f"  {item} {i}:", *lines(x, "    ")]
    return out


def resources_text(res: dict[str, Any]) -> str:
    """``cove info --resources``: ``GET /1.0/resources`` as ``lxc info --resources`` shows it."""
    cpu = res.get("cpu") or {}
    sockets = cpu.get("sockets") or []
    lines: list[str] = []
    if len(sockets) == 1:
        lines += [f"CPU ({cpu.get('architecture', '')}):", *_cpu_lines(sockets[0], "  ")]
    elif sockets:
        lines.append(f"CPUs ({cpu.get('architecture', '')}):")
        for s in sockets:
            lines += [f"  Socket {s.get('socket', 0)}:", *_cpu_lines(s, "    ")]
    mem = res.get("memory") or {}
    total, used = int(mem.get("total", 0)), int(mem.get("used", 0))
    lines += ["", "Memory:", f"  Free: {render.bytes_iec(total - used)}",
              f"  Used: {render.bytes_iec(used)}", f"  Total: {render.bytes_iec(total)}"]
    lines += _group((res.get("network") or {}).get("cards") or [], "NIC", "NICs", "Card",
                    _nic_lines)
    lines += _group((res.get("storage") or {}).get("disks") or [], "Disk", "Disks", "Disk",
                    _disk_lines)
    return "\n".join(lines) + "\n"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("metrics", parents=[common], help="Print the metrics (Prometheus text)",
                       description="Print LXD's metrics of the running instances and of "
                                   "coved, as Prometheus scrapes them from /1.0/metrics.",
                       epilog="examples:\n  cove metrics\n  cove metrics c1        only c1's "
                              "samples (and coved's own)\n"
                              "  cove config set core.metrics_address 127.0.0.1:9100\n"
                              "                        serve them over HTTPS for Prometheus",
                       formatter_class=_RAW)
    p.add_argument("name", metavar="NAME", nargs="*", help="only these instances")
    p.set_defaults(func=cmd_metrics)
