"""``GET /1.0/metrics``: LXD's metrics in the Prometheus (OpenMetrics) text
exposition, and a parser of it for clients and tests.

Design note: the names, ``# HELP`` lines, ``# TYPE``s, their order and the
number format are LXD's (``lxd/metrics/types.go`` and ``metrics.go``), so
dashboards and alert rules written for LXD work unchanged: families in
LXD's order (its ``MetricType`` enumeration), each with its HELP and TYPE
line (``gauge`` for LXD's gauges and every ``*_bytes``, else ``counter``),
samples with their labels sorted by name, values as Go's
``strconv.FormatFloat(v, 'g', -1, 64)`` writes them (``1.531904e+06``),
and a final ``# EOF``. Standard library only.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

__all__ = ["METRIC_FAMILIES", "MetricSet", "format_value", "parse_metrics", "render_families"]

# (name, help) in LXD's order; the key is how cove's code names each family.
METRIC_FAMILIES: dict[str, tuple[str, str]] = {
    "cpus": ("lxd_cpu_effective_total", "The total number of effective CPUs."),
    "cpu_seconds": ("lxd_cpu_seconds_total", "The total number of CPU time used in seconds."),
    "disk_read_bytes": ("lxd_disk_read_bytes_total", "The total number of bytes read."),
    "disk_reads": ("lxd_disk_reads_completed_total", "The total number of completed reads."),
    "disk_written_bytes": ("lxd_disk_written_bytes_total", "The total number of bytes written."),
    "disk_writes": ("lxd_disk_writes_completed_total", "The total number of completed writes."),
    "fs_avail": ("lxd_filesystem_avail_bytes", "The number of available space in bytes."),
    "fs_free": ("lxd_filesystem_free_bytes", "The number of free space in bytes."),
    "fs_size": ("lxd_filesystem_size_bytes", "The size of the filesystem in bytes."),
    "instances": ("lxd_instances", "The number of instances."),
    "active_anon": ("lxd_memory_Active_anon_bytes",
                    "The amount of anonymous memory on active LRU list."),
    "active": ("lxd_memory_Active_bytes", "The amount of memory on active LRU list."),
    "active_file": ("lxd_memory_Active_file_bytes",
                    "The amount of file-backed memory on active LRU list."),
    "cache": ("lxd_memory_Cached_bytes", "The amount of cached memory."),
    "dirty": ("lxd_memory_Dirty_bytes",
              "The amount of memory waiting to get written back to the disk."),
    "hugepages_free": ("lxd_memory_HugepagesFree_bytes", "The amount of free memory for hugetlb."),
    "hugepages_total": ("lxd_memory_HugepagesTotal_bytes",
                        "The amount of used memory for hugetlb."),
    "inactive_anon": ("lxd_memory_Inactive_anon_bytes",
                      "The amount of anonymous memory on inactive LRU list."),
    "inactive": ("lxd_memory_Inactive_bytes", "The amount of memory on inactive LRU list."),
    "inactive_file": ("lxd_memory_Inactive_file_bytes",
                      "The amount of file-backed memory on inactive LRU list."),
    "mapped": ("lxd_memory_Mapped_bytes", "The amount of mapped memory."),
    "mem_available": ("lxd_memory_MemAvailable_bytes", "The amount of available memory."),
    "mem_free": ("lxd_memory_MemFree_bytes", "The amount of free memory."),
    "mem_total": ("lxd_memory_MemTotal_bytes",
                  "The total amount of memory or configured memory limit."),
    "oom_kills": ("lxd_memory_OOM_kills_total", "The number of out of memory kills."),
    "rss": ("lxd_memory_RSS_bytes", "The amount of anonymous and swap cache memory."),
    "shmem": ("lxd_memory_Shmem_bytes",
              "The amount of cached filesystem data that is swap-backed."),
    "slab_reclaimable": ("lxd_memory_SReclaimable_bytes",
                         "The amount of reclaimable slab memory."),
    "swap": ("lxd_memory_Swap_bytes", "The amount of used swap memory."),
    "unevictable": ("lxd_memory_Unevictable_bytes", "The amount of unevictable memory."),
    "writeback": ("lxd_memory_Writeback_bytes",
                  "The amount of memory queued for syncing to disk."),
    "net_rx_bytes": ("lxd_network_receive_bytes_total",
                     "The amount of received bytes on a given interface."),
    "net_rx_drop": ("lxd_network_receive_drop_total",
                    "The amount of received dropped bytes on a given interface."),
    "net_rx_errs": ("lxd_network_receive_errs_total",
                    "The amount of received errors on a given interface."),
    "net_rx_packets": ("lxd_network_receive_packets_total",
                       "The amount of received packets on a given interface."),
    "net_tx_bytes": ("lxd_network_transmit_bytes_total",
                     "The amount of transmitted bytes on a given interface."),
    "net_tx_drop": ("lxd_network_transmit_drop_total",
                    "The amount of transmitted dropped bytes on a given interface."),
    "net_tx_errs": ("lxd_network_transmit_errs_total",
                    "The amount of transmitted errors on a given interface."),
    "net_tx_packets": ("lxd_network_transmit_packets_total",
                       "The amount of transmitted packets on a given interface."),
    "operations": ("lxd_operations_total", "The number of running operations"),
    "procs": ("lxd_procs_total", "The number of running processes."),
    "uptime": ("lxd_uptime_seconds", "The daemon uptime in seconds."),
    "warnings": ("lxd_warnings_total", "The number of active warnings."),
}
_ORDER = {key: i for i, key in enumerate(METRIC_FAMILIES)}
# LXD's gauges that are not *_bytes (their names say counter, their values may fall).
_GAUGES = frozenset({"procs", "cpus", "instances"})


def format_value(v: float) -> str:
    """``v`` as Go's ``strconv.FormatFloat(v, 'g', -1, 64)``: the shortest
    digits that read back as ``v``, in exponent form when the exponent is
    below -4 or at least 6 (``123456``, ``1.234567e+06``, ``1e-05``)."""
    exact = isinstance(v, int) or (v.is_integer() and math.copysign(1.0, v) > 0) \
        or (v.is_integer() and v != 0)
    if exact and abs(v) < 2 ** 53:
        # the common case (byte and packet counts), without Decimal: exact
        neg, digits = ("-" if v < 0 else ""), str(abs(int(v)))
        x = len(digits) - 1
        if x < 6:
            return neg + digits
        digits = digits.rstrip("0")
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{neg}{mant}e+{x:02d}"
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    sign, dtuple, exp = Decimal(repr(float(v))).normalize().as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, dtuple))
    x = len(ds) + exp - 1  # the decimal exponent of the first digit
    neg = "-" if sign else ""
    if x < -4 or x >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if exp >= 0:
        return neg + ds + "0" * exp
    point = len(ds) + exp
    if point > 0:
        return f"{neg}{ds[:point]}.{ds[point:]}"
    return f"{neg}0.{'0' * -point}{ds}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class MetricSet:
    """Samples by family (a key of ``METRIC_FAMILIES``), each with its labels.
    Not thread-safe: one is built per scrape."""

    def __init__(self) -> None:
        self._samples: dict[str, list[tuple[dict[str, str], float]]] = {}

    def add(self, family: str, value: float, labels: dict[str, str] | None = None) -> None:
        """Add one sample. Raises: KeyError for an unknown family."""
        if family not in METRIC_FAMILIES:  # a typo fails here, not in a scraper
            raise KeyError(family)
        self._samples.setdefault(family, []).append((labels or {}, value))

    def merge(self, other: MetricSet) -> None:
        for family, samples in other._samples.items():
            self._samples.setdefault(family, []).extend(samples)

    def families(self) -> list[str]:
        return sorted(self._samples, key=_ORDER.__getitem__)

    def __len__(self) -> int:
        return sum(len(s) for s in self._samples.values())

    def render(self) -> str:
        """The exposition text (see the module note)."""
        return render_families([self.lines()])

    def lines(self) -> dict[str, str]:
        """Each family's sample lines, rendered (for ``render_families``)."""
        out: dict[str, str] = {}
        # A label set shared by many samples (one instance's) is written once:
        # the dicts live in self._samples for the whole call, so ids are stable.
        bodies: dict[int, str] = {}
        for family, samples in self._samples.items():
            name = METRIC_FAMILIES[family][0]
            chunk: list[str] = []
            for labels, value in samples:
                if labels:
                    body = bodies.get(id(labels))
                    if body is None:
                        body = bodies[id(labels)] = "{" + ",".join(
                            f'{k}="{_escape(labels[k])}"' for k in sorted(labels)) + "}"
                    chunk.append(f"{name}{body} {format_value(value)}\n")
                else:
                    chunk.append(f"{name} {format_value(value)}\n")
            out[family] = "".join(chunk)
        return out


def render_families(parts: list[dict[str, str]]) -> str:
    """The exposition text of sample lines rendered apart (``MetricSet.lines``,
    e.g. cached instance samples and fresh daemon ones): families in LXD's
    order, each once with its HELP and TYPE, then ``# EOF``."""
    families = sorted({f for part in parts for f in part}, key=_ORDER.__getitem__)
    out: list[str] = []
    for family in families:
        name, help_ = METRIC_FAMILIES[family]
        kind = "gauge" if family in _GAUGES or name.endswith("_bytes") else "counter"
        out.append(f"# HELP {name} {help_}\n# TYPE {name} {kind}\n")
        out += [part[family] for part in parts if family in part]
    out.append("# EOF\n")
    return "".join(out)


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """The samples of an exposition text: ``(name, labels, value)``, in order.
    Comments are skipped.

    Raises:
        ValueError: a line that is neither a comment nor a sample.
    """
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise ValueError(f"not a metrics sample: {line!r}")
        labels = {k: v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
                  for k, v in _LABEL.findall(m.group(2) or "")}
        out.append((m.group(1), labels, float(m.group(3))))
    return out
