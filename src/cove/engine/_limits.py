"""The limit keys runc does not set the way LXD does, and what this host
can enforce at all.

Design note: ``limits.memory`` (with ``.enforce`` and ``.swap``),
``limits.cpu``, ``limits.cpu.allowance`` and ``limits.processes`` go
through runc (the OCI spec at start, ``runc update`` live), which orders
the memory and memsw writes the kernel insists on. The priorities
(``limits.cpu.priority``, ``limits.disk.priority``) and swappiness are
written here straight to the instance's cgroup, once ``runc create`` has
made it and again on each change: runc maps CPU shares to a v2 weight by a
formula of its own, and knows nothing of the BFQ weight on v1. Values are
LXD's: CPU shares ``1024 - (10 - priority)`` (v2 weight ``100 - (10 -
priority)``), a disk weight of ``priority * 100`` (10 for 0).

A key this host cannot enforce (no swap accounting, no I/O weight file: the
controller is missing or no proportional I/O scheduler is built) is refused
when it is set, with the reason, rather than accepted and ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from cove.model import config as cfg
from cove.model.errors import BadRequest, InternalError
from cove.runtime import cgroups

__all__ = ["HostLimits", "unset_to_unlimited"]

_CPU_WEIGHT = {False: ("cpu", "cpu.shares", 1024), True: ("cpu", "cpu.weight", 100)}
_DISK_FILES = {False: ("blkio.weight", "blkio.bfq.weight"), True: ("io.weight", "io.bfq.weight")}
_DISK_DEFAULT = {"blkio.weight": 500, "blkio.bfq.weight": 100, "io.weight": 100,
                 "io.bfq.weight": 100}
_SWAP_FILES = {False: ("memory.memsw.limit_in_bytes",), True: ("memory.swap.max",)}


def _online_cpus() -> set[int]:
    try:
        return cfg.cpu_set(Path("/sys/devices/system/cpu/online").read_text())
    except (OSError, ValueError):
        return set(range(os.cpu_count() or 1))


class HostLimits:
    """Checks limit keys against this host and writes the ones runc does not.
    Stateless but for what it learnt of the host (read once)."""

    def __init__(self) -> None:
        self._v2 = cgroups.is_v2()
        self._disk_file = cgroups.find_file("blkio", _DISK_FILES[self._v2])
        self._cpu_file = cgroups.find_file(_CPU_WEIGHT[self._v2][0],
                                           (_CPU_WEIGHT[self._v2][1],))
        self._swap = cgroups.find_file("memory", _SWAP_FILES[self._v2]) is not None
        self._cpus = _online_cpus()

    # -- checks ---------------------------------------------------------------------------
    def check(self, new: Mapping[str, str], old: Mapping[str, str] | None = None) -> None:
        """Refuse a limit key this host cannot honour. Only keys whose value
        changes are checked, so a host that lost a feature can still edit the
        rest of an instance's config.

        Raises:
            BadRequest: naming the key, the value and the reason.
        """
        old = old or {}

        def changed(key: str) -> str:
            value = new.get(key, "")
            return value if value != old.get(key, "") else ""

        if cpu := changed("limits.cpu"):
            self._check_cpus(cpu)
        if changed("limits.cpu.priority") and self._cpu_file is None:
            raise BadRequest("limits.cpu.priority cannot be enforced on this host: its cgroups "
                             f"have no {_CPU_WEIGHT[self._v2][1]} (the cpu controller is "
                             "not available)")
        if changed("limits.disk.priority") and self._disk_file is None:
            raise BadRequest("limits.disk.priority cannot be enforced on this host: its cgroups "
                             f"have no {' or '.join(_DISK_FILES[self._v2])} (no I/O controller "
                             "with proportional weights: CFQ, BFQ or io.cost)")
        swap = changed("limits.memory.swap")
        if swap and not cfg.truthy(swap) and not self._swap:
            raise BadRequest("limits.memory.swap=false cannot be enforced on this host: the "
                             "kernel does not account swap per cgroup "
                             f"({_SWAP_FILES[self._v2][0]} is missing; boot with "
                             "swapaccount=1)")

    def _check_cpus(self, value: str) -> None:
        count, cpuset = cfg.parse_cpu(value)
        have = len(self._cpus)
        if count is not None and count > have:
            raise BadRequest(f"Invalid limits.cpu {value!r}: this host has {have} CPUs")
        if cpuset is not None:
            missing = sorted(cfg.cpu_set(cpuset) - self._cpus)
            if missing:
                raise BadRequest(f"Invalid limits.cpu {value!r}: CPU {missing[0]} is not "
                                 f"online on this host ({have} CPUs online)")

    # -- writes ---------------------------------------------------------------------------
    def apply(self, rel: str, new: Mapping[str, str],
              old: Mapping[str, str] | None = None) -> None:
        """Write the priorities and swappiness of the cgroup ``rel`` (its
        OCI ``cgroupsPath``): all the keys set in ``new`` when ``old`` is
        None (a start), else only those that changed (an unset key goes
        back to the kernel's default). Idempotent.

        Raises:
            InternalError: the kernel refused a value (it was checked before).
        """
        def todo(key: str) -> bool:
            return bool(new.get(key, "")) if old is None else new.get(key, "") != old.get(key, "")

        try:
            if todo("limits.cpu.priority") and self._cpu_file is not None:
                controller, filename, full = _CPU_WEIGHT[self._v2]
                raw = new.get("limits.cpu.priority", "")
                weight = full - (10 - cfg.parse_cpu_priority(raw)) if raw else full
                cgroups.write_value(controller, rel, filename, str(weight))
            if todo("limits.disk.priority") and self._disk_file is not None:
                raw = new.get("limits.disk.priority", "")
                weight = (cfg.parse_disk_priority(raw) * 100 or 10) if raw \
                    else _DISK_DEFAULT[self._disk_file]
                cgroups.write_value("blkio", rel, self._disk_file, str(weight))
            if self._v2 and old is not None and old.get("limits.memory") \
                    and not new.get("limits.memory"):
                # the soft limit went with limits.memory (see unset_to_unlimited)
                cgroups.write_value("memory", rel, "memory.low", "0")
            swap = new.get("limits.memory.swap", "")
            # when off, always: a runc update of the memory limit rewrites swap
            if todo("limits.memory.swap") or (swap != "" and not cfg.truthy(swap)):
                self._apply_swap(rel, swap)
        except OSError as e:
            raise InternalError(f"Cannot set the limits of {rel}: {e}") from None

    def _apply_swap(self, rel: str, raw: str) -> None:
        off = raw != "" and not cfg.truthy(raw)
        if self._v2:
            if self._swap:
                cgroups.write_value("memory", rel, "memory.swap.max", "0" if off else "max")
        else:
            # v1: memsw (through runc) caps swap when there is a memory
            # limit; swappiness 0 keeps the kernel from swapping in any case
            cgroups.write_value("memory", rel, "memory.swappiness", "0" if off else "60")


def unset_to_unlimited(r: cfg.Resources) -> cfg.Resources:
    """For ``runc update``: a removed limit must be lifted, not left as is."""
    return cfg.Resources(
        memory=r.memory if r.memory is not None else -1,
        # lifting a soft limit: -1 on v1 (unlimited, the default); on v2 runc
        # would write memory.low=max (protect everything) and skips 0, so it
        # is left out and HostLimits writes memory.low=0 itself
        memory_reservation=r.memory_reservation if r.memory_reservation is not None
        else (None if cgroups.is_v2() else -1),
        memory_swap=r.memory_swap if r.memory_swap is not None else -1,
        cpu_quota=r.cpu_quota if r.cpu_quota is not None else -1,
        cpu_period=r.cpu_period or 100_000,
        cpus=r.cpus,
        pids=r.pids if r.pids is not None else -1,
    )
