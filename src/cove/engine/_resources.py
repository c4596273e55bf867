"""``GET /1.0/resources``: the host's CPUs, memory, network cards and disks in
LXD's ``Resources`` shape, read from ``/proc`` and ``/sys`` (no subprocess).

Design note: the shape and the field names are LXD's (``shared/api/resource.go``,
extension ``resources_v2``), with every field ``lxc info --resources`` and
pylxd's ``client.resources`` read present and typed as Go wants it. What
LXD learns from udev, ethtool ioctls, PCI databases or systemd (disk models,
port types, vendor names, GPUs, USB and PCI device lists) is left empty:
cove reads files only. Every path is taken under ``sys_root`` so a unit
test can hand a fake tree. Nothing here is cached: the call is rare and
hardware can change (hot-plugged CPUs and disks).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["Resources", "host_resources"]


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def _int(path: Path, default: int = 0) -> int:
    try:
        return int(_read(path))
    except ValueError:
        return default


def _numa_node(path: Path) -> int:
    """A device's NUMA node (``-1`` in sysfs means none: LXD says 0)."""
    return max(_int(path / "numa_node", 0), 0)


def _cpuinfo(root: Path) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = [{}]
    for line in _read(root / "proc/cpuinfo").splitlines():
        if not line.strip():
            if blocks[-1]:
                blocks.append({})
            continue
        key, _, value = line.partition(":")
        blocks[-1][key.strip()] = value.strip()
    return [b for b in blocks if b]


def _size(text: str) -> int:
    text = text.strip()
    units = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]] if text[:-1].isdigit() else 0
    return int(text) if text.isdigit() else 0


def _caches(cpu_dir: Path) -> list[dict[str, Any]]:
    out = []
    for idx in sorted((cpu_dir / "cache").glob("index*")):
        kind = _read(idx / "type")
        out.append({"level": _int(idx / "level"),
                     "type": kind, "size": _size(_read(idx / "size"))})
    return out


def _cpu(root: Path) -> dict[str, Any]:
    base = root / "sys/devices/system/cpu"
    info = {int(b["processor"]): b for b in _cpuinfo(root) if b.get("processor", "").isdigit()}
    ids = sorted(int(p.name[3:]) for p in base.glob("cpu[0-9]*") if p.name[3:].isdigit())
    if not ids:
        ids = sorted(info)
    sockets: dict[int, dict[str, Any]] = {}
    for cpu_id in ids:
        d = base / f"cpu{cpu_id}"
        topo = d / "topology"
        sock_id = _int(topo / "physical_package_id", 0)
        core_id = _int(topo / "core_id", cpu_id)
        die_id = _int(topo / "die_id", 0)
        online = cpu_id == 0 or _read(d / "online") != "0"
        node = next((int(p.name[4:]) for p in d.glob("node[0-9]*")), 0)
        ci = info.get(cpu_id, {})
        sock = sockets.get(sock_id)
        if sock is None:
            sock = sockets[sock_id] = {
                "name": ci.get("model name", ""), "vendor": ci.get("vendor_id", ""),
                "socket": sock_id, "cache": _caches(d), "cores": [], "frequency": 0,
                "frequency_minimum": _int(d / "cpufreq/cpuinfo_min_freq") // 1000,
                "frequency_turbo": _int(d / "cpufreq/cpuinfo_max_freq") // 1000}
        core = next((c for c in sock["cores"] if c["core"] == core_id and c["die"] == die_id),
                    None)
        if core is None:
            core = {"core": core_id, "die": die_id, "threads": [],
                    "frequency": _int(d / "cpufreq/scaling_cur_freq") // 1000}
            sock["cores"].append(core)
        core["threads"].append({"id": cpu_id, "numa_node": node,
                                "thread": len(core["threads"]), "online": online,
                                "isolated": False})
    for sock in sockets.values():
        freqs = [c["frequency"] for c in sock["cores"] if c["frequency"]]
        sock["frequency"] = sum(freqs) // len(freqs) if freqs else 0
    return {"architecture": platform.machine(),
            "sockets": [sockets[k] for k in sorted(sockets)], "total": len(ids)}


def _meminfo(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        f = rest.split()
        if f and f[0].isdigit():
            # per-node files say "Node 0 MemTotal:"; keep the last word of the key
            out[key.split()[-1] if key.split() else key] = \
                int(f[0]) * (1024 if len(f) > 1 and f[1] == "kB" else 1)
    return out


def _physical_memory(root: Path) -> int:
    """Online memory blocks times their size (LXD's total: the RAM the host
    has, not the part of it the kernel left after reserving its own); 0 when
    sysfs does not say."""
    base = root / "sys/devices/system/memory"
    try:
        block = int(_read(base / "block_size_bytes"), 16)
    except ValueError:
        return 0
    return block * sum(1 for d in base.glob("memory[0-9]*") if _read(d / "online") == "1")


def _memory(root: Path) -> dict[str, Any]:
    mi = _meminfo(_read(root / "proc/meminfo"))
    huge_size = mi.get("Hugepagesize", 0)
    kernel_total = mi.get("MemTotal", 0)
    total = max(_physical_memory(root), kernel_total)
    nodes = []
    for nd in sorted((root / "sys/devices/system/node").glob("node[0-9]*"),
                     key=lambda p: int(p.name[4:])):
        ni = _meminfo(_read(nd / "meminfo"))
        nodes.append({
            "numa_node": int(nd.name[4:]),
            "hugepages_used": (ni.get("HugePages_Total", 0) - ni.get("HugePages_Free", 0))
            * huge_size,
            "hugepages_total": ni.get("HugePages_Total", 0) * huge_size,
            "used": ni.get("MemUsed", 0), "total": ni.get("MemTotal", 0)})
    return {
        "nodes": nodes,
        "hugepages_total": mi.get("HugePages_Total", 0) * huge_size,
        "hugepages_used": (mi.get("HugePages_Total", 0) - mi.get("HugePages_Free", 0))
        * huge_size,
        "hugepages_size": huge_size,
        # LXD's figure: what is neither free nor page cache nor buffers
        "used": max(kernel_total - mi.get("MemFree", 0) - mi.get("Cached", 0)
                    - mi.get("Buffers", 0), 0),
        "total": total}


def _hex_id(path: Path) -> str:
    return _read(path).removeprefix("0x")


def _network(root: Path) -> dict[str, Any]:
    cards: dict[str, dict[str, Any]] = {}
    net = root / "sys/class/net"
    for iface in sorted(net.iterdir()) if net.is_dir() else []:
        dev = iface / "device"
        if not dev.exists():
            continue  # virtual: bridges, veths, loopback
        real = dev.resolve()
        key = str(real)
        card = cards.get(key)
        if card is None:
            driver = os.path.basename(os.readlink(dev / "driver")) \
                if (dev / "driver").is_symlink() else ""
            pci = real.name if ":" in real.name and "." in real.name else ""
            if not pci and ":" in real.parent.name:  # virtio: the PCI device is the parent
                pci = real.parent.name
            version = _read(root / "sys/module" / driver / "version") if driver else ""
            card = cards[key] = {
                "driver": driver, "driver_version": version or platform.release(),
                "ports": [], "numa_node": _numa_node(real if pci == real.name else real.parent),
                "pci_address": pci,
                "vendor_id": _hex_id(real / "vendor") or _hex_id(real.parent / "vendor"),
                "product_id": _hex_id(real / "device") or _hex_id(real.parent / "device")}
        card["ports"].append({
            "id": iface.name, "address": _read(iface / "address"),
            "port": _int(iface / "dev_port", len(card["ports"])),
            "protocol": "ethernet" if _read(iface / "type") == "1" else "infiniband",
            "auto_negotiation": False,
            "link_detected": _read(iface / "carrier") == "1"})
    return {"cards": list(cards.values()), "total": len(cards)}


def _disk_type(dev: Path) -> str:
    for d in (dev, dev.parent):
        sub = d / "subsystem"
        if sub.is_symlink():
            name = os.path.basename(os.readlink(sub))
            if name not in ("pci", "platform"):
                return name
    return ""


def _storage(root: Path) -> dict[str, Any]:
    disks = []
    block = root / "sys/class/block"
    for entry in sorted(block.iterdir()) if block.is_dir() else []:
        dev = entry / "device"
        if not dev.exists() or (entry / "partition").exists():
            continue  # partitions are listed under their disk; loop, dm, ram have no device
        removable = _read(entry / "removable") == "1"
        if entry.name.startswith("sr") and removable:
            continue  # an empty optical drive (LXD skips it too)
        parts = []
        for sub in sorted(entry.iterdir()):
            if sub.name.startswith(entry.name) and (sub / "partition").exists():
                parts.append({"id": sub.name, "device": _read(sub / "dev"),
                              "read_only": _read(sub / "ro") == "1",
                              "size": _int(sub / "size") * 512,
                              "partition": _int(sub / "partition")})
        real = dev.resolve()
        pci = next((p.name for p in (real, *real.parents)
                    if p.name.count(":") == 2 and "." in p.name), "")
        disks.append({
            "id": entry.name, "device": _read(entry / "dev"),
            "model": _read(dev / "model"), "type": _disk_type(real),
            "read_only": _read(entry / "ro") == "1", "size": _int(entry / "size") * 512,
            "removable": removable, "wwn": _read(entry / "wwid"),
            "numa_node": _numa_node(real), "device_path": "",
            "block_size": _int(entry / "queue/logical_block_size"),
            "firmware_version": _read(dev / "firmware_rev"),
            "rpm": 1 if _read(entry / "queue/rotational") == "1" else 0,
            "serial": _read(dev / "serial"), "device_id": "", "partitions": parts,
            "pci_address": pci, "usb_address": ""})
    return {"disks": disks, "total": len(disks)}


def _system_type(root: Path) -> str:
    environ = b""
    try:
        environ = (root / "proc/1/environ").read_bytes()
    except OSError:
        pass
    if b"container=" in environ or (root / "run/.containerenv").exists() \
            or (root / ".dockerenv").exists():
        return "container"
    flags = next((b.get("flags", "") for b in _cpuinfo(root)), "")
    return "virtual-machine" if "hypervisor" in flags.split() else "physical"


def _system(root: Path) -> dict[str, Any]:
    dmi = root / "sys/class/dmi/id"
    return {
        "uuid": _read(dmi / "product_uuid"), "vendor": _read(dmi / "sys_vendor"),
        "product": _read(dmi / "product_name"), "family": _read(dmi / "product_family"),
        "version": _read(dmi / "product_version"), "sku": _read(dmi / "product_sku"),
        "serial": _read(dmi / "product_serial"), "type": _system_type(root),
        "firmware": {"vendor": _read(dmi / "bios_vendor"), "date": _read(dmi / "bios_date"),
                     "version": _read(dmi / "bios_version")} if dmi.is_dir() else None,
        "chassis": {"vendor": _read(dmi / "chassis_vendor"), "type": _read(dmi / "chassis_type"),
                    "serial": _read(dmi / "chassis_serial"),
                    "version": _read(dmi / "chassis_version")} if dmi.is_dir() else None,
        "motherboard": {"vendor": _read(dmi / "board_vendor"),
                        "product": _read(dmi / "board_name"),
                        "serial": _read(dmi / "board_serial"),
                        "version": _read(dmi / "board_version")} if dmi.is_dir() else None,
    }


def host_resources(sys_root: Path | str = "/") -> dict[str, Any]:
    """LXD's ``Resources`` of the host whose ``/proc`` and ``/sys`` are under
    ``sys_root``. Never raises for a missing file (its fields stay empty)."""
    root = Path(sys_root)
    return {
        "cpu": _cpu(root),
        "memory": _memory(root),
        "gpu": {"cards": [], "total": 0},
        "network": _network(root),
        "storage": _storage(root),
        "usb": {"devices": [], "total": 0},
        "pci": {"devices": [], "total": 0},
        "system": _system(root),
    }


class Resources:
    """The engine's ``resources`` service: the host's hardware, as LXD reports it."""

    def __init__(self, sys_root: Path | str = "/") -> None:
        self._root = Path(sys_root)

    def get(self) -> dict[str, Any]:
        """``GET /1.0/resources``'s metadata (read now; never cached)."""
        return host_resources(self._root)
