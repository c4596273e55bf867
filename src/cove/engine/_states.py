"""LXD's ``InstanceState`` of one instance, or of a whole listing in one pass.

Design note: ``GET /1.0/instances?recursion=2`` used to ask the engine for
each instance's state on its own (a store read, a worker-thread hop and a
lease query each); with hundreds running the hops, not the counters, were
most of the time. ``states`` answers for every listed instance in one call
on the rows the listing already read: no store read per instance, the
cgroup counters read file by file as before (cgroup v1 has no file that
holds its children's counters), the network state asked only if wanted
(LXD's ``recursion=2;fields=...``, ``instances_state_selective_recursion``).
"""

from __future__ import annotations

from typing import Any

from cove.engine._runs import Paths, RunTable
from cove.engine.ports import NetworkPort
from cove.model.records import Instance
from cove.model.states import Status
from cove.runtime.cgroups import read_stats

__all__ = ["InstanceStates"]

class InstanceStates:
    """Renders states from the run table, the cgroups and the network port.
    Reads only; safe on any thread."""

    def __init__(self, runs: RunTable, paths: Paths, network: NetworkPort) -> None:
        self._runs = runs
        self._paths = paths
        self._net = network

    def state(self, inst: Instance, *, network: bool = True) -> dict[str, Any]:
        """The state of ``inst`` (a row as read; its ``name`` is the key).
        ``network`` False leaves it null, as LXD does (``disk`` is always
        empty: cove reports no disk usage)."""
        key = inst.name
        pid = self._runs.pids.get(key, 0) if inst.status is not Status.STOPPED else 0
        stats = read_stats(self._paths.cgroups_path(key)) if pid else None
        return {
            "status": inst.status.value,
            "status_code": inst.status.code,
            "pid": pid,
            "processes": stats.pids if stats else 0,
            "cpu": {"usage": stats.cpu_ns if stats else 0},
            "memory": {
                "usage": stats.memory if stats else 0,
                "usage_peak": stats.memory_peak if stats else 0,
                "swap_usage": 0,
                "swap_usage_peak": 0,
            },
            "disk": {},
            "network": self._net.state(inst) if pid and network else None,
        }

    def states(self, insts: list[Instance], *,
               network: bool = True) -> dict[str, dict[str, Any]]:
        """Each instance's state by key, in one call (one worker thread)."""
        return {i.name: self.state(i, network=network) for i in insts}
