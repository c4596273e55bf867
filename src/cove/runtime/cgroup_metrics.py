"""Everything ``GET /1.0/metrics`` reports of one running container, read from
its cgroup (v1 or v2) and its network namespace, without a subprocess.

Design note: a scrape reads every running container, so the cost per
container is what matters (1,000 of them on one host): each file is read
once, whole, with one ``open``/``read``; nothing is parsed that is not
reported. What is read, and why it is what LXD reports:

* memory: ``memory.stat`` (v1: the ``total_*`` lines, which count the
  cgroup's children too; v2: ``anon``/``file``-named lines), LXD's key
  mapping (``lxd/cgroup/abstraction.go`` ``GetMemoryStats``);
  ``memory.usage_in_bytes``/``memory.current``, the limit, swap where the
  kernel accounts it; OOM kills from ``memory.oom_control`` (v1) or
  ``memory.events`` (v2);
* CPU: ``cpuacct.usage_all`` (v1, per CPU, user and system ns) or
  ``cpu.stat`` (v2, whole: LXD labels it CPU 0); the effective cpuset;
* block I/O: ``blkio.throttle.io_service{_bytes,d}_recursive`` (v1) or
  ``io.stat`` (v2), by device name from ``/proc/partitions``, loop devices
  skipped (as LXD);
* processes: ``pids.current``;
* network: ``/proc/PID/net/dev`` of the container's init, which lists the
  interfaces of its network namespace as the container sees them (``lo``
  and ``eth0``, received and sent from its side, drops and errors
  included): LXD reports the same view (it reads it inside the namespace),
  and one read covers every NIC with no veth name to look up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from cove.runtime.cgroups import _V2, CGROUP_ROOT
from cove.runtime.cgroups import read_text as _read

__all__ = ["ContainerMetrics", "IOStats", "NetStats", "partitions", "read_container_metrics",
           "read_net_dev"]

# memory.stat key -> LXD's name for it (v1 ``total_*`` lines and v2 names).
_MEMORY_KEYS = {
    "total_active_anon": "active_anon", "active_anon": "active_anon",
    "total_active_file": "active_file", "active_file": "active_file",
    "total_inactive_anon": "inactive_anon", "inactive_anon": "inactive_anon",
    "total_inactive_file": "inactive_file", "inactive_file": "inactive_file",
    "total_unevictable": "unevictable", "unevictable": "unevictable",
    "total_writeback": "writeback", "file_writeback": "writeback",
    "total_dirty": "dirty", "file_dirty": "dirty",
    "total_mapped_file": "mapped", "file_mapped": "mapped",
    "total_rss": "rss",
    "total_shmem": "shmem", "shmem": "shmem",
    "total_cache": "cache", "file": "cache",
    "total_slab_reclaimable": "slab_reclaimable", "slab_reclaimable": "slab_reclaimable",
}

#: v1's "no limit": a page-rounded LLONG_MAX.
_NO_LIMIT = 1 << 62


@dataclass
class IOStats:
    read_bytes: int = 0
    reads: int = 0
    written_bytes: int = 0
    writes: int = 0


@dataclass
class NetStats:
    """One interface's counters, as the container sees them."""

    rx_bytes: int = 0
    rx_packets: int = 0
    rx_errs: int = 0
    rx_drop: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_errs: int = 0
    tx_drop: int = 0


@dataclass
class ContainerMetrics:
    """What LXD reports of a running container; absent values are None."""

    memory: dict[str, int] = field(default_factory=dict)  # LXD's memory.stat names
    memory_usage: int = 0
    memory_limit: int | None = None  # None: no limit set
    swap_usage: int | None = None  # None: swap not accounted
    oom_kills: int = 0
    cpu: dict[int, tuple[int, int]] = field(default_factory=dict)  # cpu -> (user, system) ns
    effective_cpus: int | None = None
    disk: dict[str, IOStats] = field(default_factory=dict)
    processes: int = 0
    network: dict[str, NetStats] = field(default_factory=dict)


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.split()[0]) if text.strip() != "max" else None
    except (ValueError, IndexError):
        return None


def partitions(text: str | None = None) -> dict[str, str]:
    """``major:minor`` -> device name, from ``/proc/partitions`` (read once a scrape)."""
    if text is None:
        text = _read("/proc/partitions") or ""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 4 and f[0].isdigit():
            out[f"{f[0]}:{f[1]}"] = f[3]
    return out


def _cpuset_count(text: str | None) -> int | None:
    if text is None:
        return None
    n = 0
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            n += int(hi) - int(lo) + 1 if hi else 1
        except ValueError:
            return None
    return n


def parse_memory_stat(text: str) -> dict[str, int]:
    """LXD's memory figures from a ``memory.stat`` (v1 or v2); ``active`` and
    ``inactive`` are the sums LXD computes."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        name = _MEMORY_KEYS.get(key)
        if name is not None and value.isdigit():
            out[name] = int(value)  # v1: the total_ line comes last and wins, as in LXD
    out["active"] = out.get("active_anon", 0) + out.get("active_file", 0)
    out["inactive"] = out.get("inactive_anon", 0) + out.get("inactive_file", 0)
    return out


def parse_usage_all(text: str) -> dict[int, tuple[int, int]]:
    """v1 ``cpuacct.usage_all``: ``cpu user system`` then one line per CPU (ns)."""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) == 3 and f[0].isdigit():
            out[int(f[0])] = (int(f[1]), int(f[2]))
    return out


def parse_cpu_stat(text: str) -> dict[int, tuple[int, int]]:
    """v2 ``cpu.stat``: user and system of the whole cgroup, as CPU 0 (LXD's way)."""
    vals = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key in ("user_usec", "system_usec") and value.strip().isdigit():
            vals[key] = int(value) * 1000
    return {0: (vals.get("user_usec", 0), vals.get("system_usec", 0))}


def parse_blkio(service_bytes: str, serviced: str, parts: dict[str, str]) -> dict[str, IOStats]:
    """v1 ``blkio.throttle.io_service_bytes_recursive`` and ``io_serviced_recursive``."""
    out: dict[str, IOStats] = {}
    for text, which in ((service_bytes, "bytes"), (serviced, "ios")):
        for line in text.splitlines():
            f = line.split()
            if len(f) != 3 or f[0].startswith("7:") or f[1] not in ("Read", "Write"):
                continue
            st = out.setdefault(parts.get(f[0], f[0]), IOStats())
            value = int(f[2]) if f[2].isdigit() else 0
            if which == "bytes":
                if f[1] == "Read":
                    st.read_bytes = value
                else:
                    st.written_bytes = value
            elif f[1] == "Read":
                st.reads = value
            else:
                st.writes = value
    return out


def parse_io_stat(text: str, parts: dict[str, str]) -> dict[str, IOStats]:
    """v2 ``io.stat``: ``MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. ...``."""
    out: dict[str, IOStats] = {}
    for line in text.splitlines():
        f = line.split()
        if not f or f[0].startswith("7:") or ":" not in f[0]:
            continue
        st = IOStats()
        for part in f[1:]:
            key, _, value = part.partition("=")
            if not value.isdigit():
                continue
            if key == "rbytes":
                st.read_bytes = int(value)
            elif key == "wbytes":
                st.written_bytes = int(value)
            elif key == "rios":
                st.reads = int(value)
            elif key == "wios":
                st.writes = int(value)
        out[parts.get(f[0], f[0])] = st
    return out


def parse_net_dev(text: str) -> dict[str, NetStats]:
    """``/proc/PID/net/dev``: interface -> counters (the namespace's own view)."""
    out = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        f = rest.split()
        if not sep or len(f) < 12:
            continue
        try:
            v = [int(x) for x in f[:12]]
        except ValueError:
            continue
        out[name.strip()] = NetStats(rx_bytes=v[0], rx_packets=v[1], rx_errs=v[2],
                                     rx_drop=v[3], tx_bytes=v[8], tx_packets=v[9],
                                     tx_errs=v[10], tx_drop=v[11])
    return out


def read_net_dev(pid: int) -> dict[str, NetStats]:
    """The interfaces of ``pid``'s network namespace; ``{}`` when it is gone."""
    text = _read(f"/proc/{pid}/net/dev")
    return parse_net_dev(text) if text else {}


def _oom_kills(text: str | None) -> int:
    for line in (text or "").splitlines():
        if line.startswith("oom_kill "):
            return _int(line[9:]) or 0
    return 0


def read_container_metrics(cgroups_path: str, pid: int,
                           parts: dict[str, str]) -> ContainerMetrics:
    """Read one container (cgroup ``cgroups_path`` as in its OCI spec, init
    ``pid``). ``parts`` is ``partitions()``, read once for all containers.
    A file that is missing (a controller the host lacks, or the container
    just stopped) leaves its figures out; this never raises for that."""
    rel = cgroups_path.lstrip("/")
    m = ContainerMetrics()
    if _V2:
        base = os.path.join(CGROUP_ROOT, rel) + "/"
        stat = _read(base + "memory.stat")
        m.memory_usage = _int(_read(base + "memory.current")) or 0
        m.memory_limit = _int(_read(base + "memory.max"))
        m.swap_usage = _int(_read(base + "memory.swap.current"))
        m.oom_kills = _oom_kills(_read(base + "memory.events"))
        cpu = _read(base + "cpu.stat")
        m.cpu = parse_cpu_stat(cpu) if cpu is not None else {}
        m.effective_cpus = _cpuset_count(_read(base + "cpuset.cpus.effective"))
        io = _read(base + "io.stat")
        m.disk = parse_io_stat(io, parts) if io is not None else {}
        m.processes = _int(_read(base + "pids.current")) or 0
    else:
        mem = os.path.join(CGROUP_ROOT, "memory", rel) + "/"
        stat = _read(mem + "memory.stat")
        m.memory_usage = _int(_read(mem + "memory.usage_in_bytes")) or 0
        limit = _int(_read(mem + "memory.limit_in_bytes"))
        m.memory_limit = limit if limit is not None and limit < _NO_LIMIT else None
        memsw = _int(_read(mem + "memory.memsw.usage_in_bytes"))
        m.swap_usage = max(memsw - m.memory_usage, 0) if memsw is not None else None
        m.oom_kills = _oom_kills(_read(mem + "memory.oom_control"))
        usage_all = _read(os.path.join(CGROUP_ROOT, "cpuacct", rel, "cpuacct.usage_all"))
        m.cpu = parse_usage_all(usage_all) if usage_all is not None else {}
        m.effective_cpus = _cpuset_count(
            _read(os.path.join(CGROUP_ROOT, "cpuset", rel, "cpuset.effective_cpus")))
        blk = os.path.join(CGROUP_ROOT, "blkio", rel, "blkio.throttle.")
        sb, sd = _read(blk + "io_service_bytes_recursive"), _read(blk + "io_serviced_recursive")
        m.disk = parse_blkio(sb, sd, parts) if sb is not None and sd is not None else {}
        m.processes = _int(_read(os.path.join(CGROUP_ROOT, "pids", rel, "pids.current"))) or 0
    m.memory = parse_memory_stat(stat) if stat is not None else {}
    m.network = read_net_dev(pid) if pid > 0 else {}
    return m
