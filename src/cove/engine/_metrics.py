"""``GET /1.0/metrics``: LXD's metrics of every running instance and of the
daemon.

Design note: as LXD (``lxd/api_metrics.go``), instance samples are built
per project and kept for ``cache_seconds`` (8 s, LXD's figure), and only
one scrape builds them at a time while the others wait for its result: two
Prometheus servers scraping a host of 1,000 instances cost one read of each,
not two. Only running instances have samples (labels ``name``, ``project``,
``type="container"``); ``lxd_instances`` counts all of a project's, and
the daemon's own (``lxd_operations_total``, ``lxd_uptime_seconds``,
``lxd_warnings_total``) are never cached. The per-instance read is
``runtime.cgroup_metrics`` (each file once, no subprocess); what is common
to every instance (the partition table, the filesystem under the root) is
read once a scrape. ``COVE_METRICS_CACHE`` (seconds, in coved's
environment) changes the 8 s, as ``COVE_SNAPSHOT_TICK`` does the scheduler's
tick: the test suites set it to 0.5 so a container they just started shows up
without waiting out LXD's figure once per driver.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from cove.api._metrics import MetricSet, render_families
from cove.engine._runs import Paths, RunTable
from cove.engine.operations import Operations
from cove.model.projects import split_key
from cove.runtime.cgroup_metrics import ContainerMetrics, partitions, read_container_metrics
from cove.store import Store

__all__ = ["Metrics", "instance_samples"]

_TYPE = "container"


def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
        .replace("\\134", "\\")


def _mounts() -> list[tuple[str, str, str]]:
    """(mountpoint, source, fstype) of this mount namespace, longest mountpoint
    first (read once a scrape)."""
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = right.split()
                if len(fields) >= 2:
                    out.append((_unescape(left.split()[4]), _unescape(fields[1]), fields[0]))
    except OSError:
        pass
    return sorted(out, key=lambda m: -len(m[0]))


def _filesystem_of(path: str, mounts: list[tuple[str, str, str]]) -> tuple[str, str]:
    """(device, fstype) of the mount that holds ``path``."""
    for mp, source, fstype in mounts:
        if path == mp or path.startswith(mp.rstrip("/") + "/"):
            return source, fstype
    return "", ""


Fs = tuple[str, str, int, int, int]  # device, fstype, size, avail, free


def _statfs(path: str, mounts: list[tuple[str, str, str]]) -> Fs | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    device, fstype = _filesystem_of(path, mounts)
    return (device, fstype, st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize,
            st.f_bfree * st.f_frsize)


def _host_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def instance_samples(out: MetricSet, labels: dict[str, str], m: ContainerMetrics, *,
                     host_memory: int, fs: Fs | None,
                     disks: dict[str, Fs] | None = None) -> None:
    """Add one running container's samples to ``out``, as LXD's
    ``lxc.Metrics`` does (``fs``: device, fstype, size, avail, free of its
    root disk; ``disks``: the same of its other disk devices, by path in the
    container)."""
    def add(family: str, value: float, extra: dict[str, str] | None = None) -> None:
        out.add(family, value, {**labels, **extra} if extra else labels)  # shared: see render

    for key, value in m.memory.items():
        add(key, value)
    limit = m.memory_limit if m.memory_limit is not None and m.memory_limit < host_memory \
        else host_memory
    if limit > 0:
        reclaimable = m.memory.get("cache", 0) + m.memory.get("slab_reclaimable", 0)
        add("mem_total", limit)
        add("mem_available", limit - m.memory_usage + reclaimable)
        add("mem_free", limit - m.memory_usage)
    add("oom_kills", m.oom_kills)
    if m.swap_usage is not None:
        add("swap", max(m.swap_usage, 0))
    for cpu, (user, system) in sorted(m.cpu.items()):
        add("cpu_seconds", system / 1e9, {"cpu": str(cpu), "mode": "system"})
        add("cpu_seconds", user / 1e9, {"cpu": str(cpu), "mode": "user"})
    if m.effective_cpus is not None:
        add("cpus", m.effective_cpus)
    for dev, io in sorted(m.disk.items()):
        add("disk_read_bytes", io.read_bytes, {"device": dev})
        add("disk_reads", io.reads, {"device": dev})
        add("disk_written_bytes", io.written_bytes, {"device": dev})
        add("disk_writes", io.writes, {"device": dev})
    for mountpoint, disk in sorted({**(disks or {}), **({"/": fs} if fs else {})}.items()):
        device, fstype, size, avail, free = disk
        fl = {"device": device, "fstype": fstype, "mountpoint": mountpoint}
        add("fs_size", size, fl)
        add("fs_avail", avail, fl)
        add("fs_free", free, fl)
    for dev, n in sorted(m.network.items()):
        d = {"device": dev}
        add("net_rx_bytes", n.rx_bytes, d)
        add("net_rx_packets", n.rx_packets, d)
        add("net_tx_bytes", n.tx_bytes, d)
        add("net_tx_packets", n.tx_packets, d)
        add("net_rx_errs", n.rx_errs, d)
        add("net_tx_errs", n.tx_errs, d)
        add("net_rx_drop", n.rx_drop, d)
        add("net_tx_drop", n.tx_drop, d)
    add("procs", m.processes)


def _host_path_disks(devices: dict[str, dict[str, str]],
                     mounts: list[tuple[str, str, str]]) -> dict[str, Fs]:
    """The filesystems of an instance's host-path disk devices (``source=/srv/data
    path=/data``), by path in the container; a source that is gone is left out.
    Custom volumes (``pool=``) are their storage's to report."""
    out = {}
    for dev in devices.values():
        src, path = dev.get("source", ""), dev.get("path", "")
        if dev.get("type") == "disk" and path not in ("", "/") and src.startswith("/") \
                and not dev.get("pool"):
            got = _statfs(src, mounts)
            if got is not None:
                out[path] = got
    return out


class Metrics:
    """Builds the metrics text (see module note). Thread-safe."""

    def __init__(self, *, store: Store, runs: RunTable, paths: Paths, operations: Operations,
                 clock: Callable[[], float] = time.time,
                 cache_seconds: float | None = None) -> None:
        self._store = store
        self._runs = runs
        self._paths = paths
        self._operations = operations
        self._clock = clock
        self._started = clock()
        self.cache_seconds = cache_seconds if cache_seconds is not None else float(
            os.environ.get("COVE_METRICS_CACHE", "8") or 8)
        self._built: tuple[float, dict[str, MetricSet]] | None = None
        self._lines: dict[str, dict[str, str]] = {}  # rendered, of the build _lines_of
        self._lines_of: dict[str, MetricSet] | None = None
        self._cache_lock = threading.Lock()
        self._build_lock = threading.Lock()

    def text(self, *, project: str | None = None) -> str:
        """The exposition text: every project's running instances, or only
        ``project``'s (an unknown project has none), then the daemon's own."""
        return render_families([self._instance_lines(project), self.daemon().lines()])

    def _instance_lines(self, project: str | None) -> dict[str, str]:
        # Rendered once per build and project: a second scraper within
        # cache_seconds pays only for the daemon's few lines and the join.
        built = self._current()
        key = "\0all" if project is None else project
        with self._cache_lock:
            if self._lines_of is built and key in self._lines:
                return self._lines[key]
        lines = self._select(built, project).lines()
        with self._cache_lock:
            if self._lines_of is not built:
                self._lines, self._lines_of = {}, built
            self._lines[key] = lines
        return lines

    def daemon(self) -> MetricSet:
        """The daemon's own samples (never cached)."""
        out = MetricSet()
        out.add("operations", sum(1 for op in self._operations.all() if not op.done))
        out.add("uptime", max(self._clock() - self._started, 0.0))
        out.add("warnings", 0)  # cove keeps no warnings (LXD's /1.0/warnings)
        return out

    def instances(self, *, project: str | None = None) -> MetricSet:
        """The instance samples of every project, or of ``project`` (built at
        most once every ``cache_seconds``)."""
        return self._select(self._current(), project)

    def _current(self) -> dict[str, MetricSet]:
        built = self._fresh()
        if built is None:
            with self._build_lock:  # one builder; the others wait for its result
                built = self._fresh()
                if built is None:
                    built = self._build()
                    with self._cache_lock:
                        self._built = (time.monotonic(), built)
        return built

    @staticmethod
    def _select(built: dict[str, MetricSet], project: str | None) -> MetricSet:
        if project is not None:
            return built.get(project, MetricSet())
        out = MetricSet()
        for name in sorted(built):
            out.merge(built[name])
        return out

    def _fresh(self) -> dict[str, MetricSet] | None:
        with self._cache_lock:
            if self._built is not None and \
                    time.monotonic() - self._built[0] < self.cache_seconds:
                return self._built[1]
        return None

    def _build(self) -> dict[str, MetricSet]:
        insts = self._store.list_instances()
        pids = dict(self._runs.pids)
        parts = partitions()
        host_memory = _host_memory()
        mounts = _mounts() if pids else []
        # every instance's upper layer lives under instances/: one filesystem
        fs = _statfs(str(self._paths.root / "instances"), mounts) if pids else None
        out: dict[str, MetricSet] = {}
        counts: dict[str, int] = {}
        for inst in insts:
            project = str(getattr(inst, "project", "default") or "default")
            counts[project] = counts.get(project, 0) + 1
            pid = pids.get(inst.name, 0)
            if not pid:
                continue
            m = read_container_metrics(self._paths.cgroups_path(inst.name), pid, parts)
            ms = out.setdefault(project, MetricSet())
            instance_samples(ms, {"name": split_key(inst.name)[1], "project": project,
                                  "type": _TYPE}, m,
                             host_memory=host_memory, fs=fs,
                             disks=_host_path_disks(inst.devices, mounts))
        for project, n in sorted(counts.items()):
            ms = out.setdefault(project, MetricSet())
            ms.add("instances", n, {"project": project, "type": "container"})
            ms.add("instances", 0, {"project": project, "type": "virtual-machine"})
        return out
