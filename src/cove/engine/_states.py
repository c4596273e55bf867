"""LXD's ``InstanceState`` of one instance, or of a whole listing in one pass.

Design note: ``GET /1.0/instances?recursion=2`` used to ask the engine for
each instance's state on its own (a store read, a worker-thread hop and a
lease query each); with hundreds running the hops, not the counters, were
most of the time. ``states`` answers for every listed instance in one call
on the rows the listing already read: no store read per instance; the
network part of all of them in one pass (one lease query, one read of
``/proc/net/dev`` for every veth's counters) and only if wanted (LXD's
``recursion=2;fields=...``, ``instances_state_selective_recursion``); the
cgroup counters still file by file (cgroup v1 has no file that holds its
children's counters), but from files kept open while the instance runs
(``runtime.cgroup_counters``: a re-read, not a path walk, each time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cove.api import state_json, state_json_of
from cove.engine._runs import Paths, RunTable
from cove.engine.ports import NetworkPort
from cove.model.records import Instance
from cove.model.states import Status
from cove.runtime.cgroup_counters import CounterFiles
from cove.runtime.cgroups import CgroupStats

__all__ = ["InstanceStates"]

# a status's wire value and code (an enum's ``value`` is a slow property,
# read per instance per listing)
_STATUS = {s: (s.value, s.code) for s in Status}

class InstanceStates:
    """Renders states from the run table, the cgroups and the network port.
    Reads only; safe on any thread."""

    def __init__(self, runs: RunTable, paths: Paths, network: NetworkPort) -> None:
        self._runs = runs
        self._paths = paths
        self._net = network
        self._counters = CounterFiles()

    def forget(self, key: str) -> None:
        """The instance keyed ``key`` stopped: close its counter files."""
        self._counters.forget(self._paths.cgroups_path(key))

    def close(self) -> None:
        """Close every counter file held. Idempotent."""
        self._counters.close()

    def state(self, inst: Instance, *, network: bool = True) -> dict[str, Any]:
        """The state of ``inst`` (a row as read; its ``name`` is the key).
        ``network`` False leaves it null, as LXD does (``disk`` is always
        empty: cove reports no disk usage)."""
        pid = self._pid(inst)
        stats = self._counters.read(self._paths.cgroups_path(inst.name), pid) if pid else None
        return self._render(inst, pid, self._net.state(inst) if pid and network else None, stats)

    def states(self, insts: list[Instance], *, network: bool = True,
               counters: bool = True) -> dict[str, dict[str, Any]]:
        """Each instance's state by key, in one call (one worker thread); the
        network part of all running ones in one pass (``NetworkPort.states``);
        ``counters`` False: the cgroup counters are not read (left 0)."""
        pids, nets, stats = self._read(insts, network, counters)
        return {i.name: self._render(i, pids[i.name], nets.get(i.name), stats.get(i.name))
                for i in insts}

    def states_json(self, insts: list[Instance], *, network: bool = True,
                    extra: Callable[[str], dict[str, Any]] | None = None) -> dict[str, str]:
        """``cove.api.state_json`` of each state ``states`` answers with
        ``extra(key)`` merged in (the app-stack part), by key; formatted
        without building the dicts unless ``extra`` adds something (a
        listing of a thousand built and dropped five dicts an instance)."""
        pids, nets, stats = self._read(insts, network, True)
        out = {}
        for inst in insts:
            key = inst.name
            more = extra(key) if extra is not None else None
            st = stats.get(key)
            if more:
                out[key] = state_json({**self._render(inst, pids[key], nets.get(key), st),
                                       **more})
                continue
            status, code = _STATUS[inst.status]
            out[key] = (state_json_of(status, code, pids[key], st.pids, st.cpu_ns, st.memory,
                                      st.memory_peak, nets.get(key)) if st is not None else
                        state_json_of(status, code, pids[key], 0, 0, 0, 0, nets.get(key)))
        return out

    def _read(self, insts: list[Instance], network: bool, counters: bool
              ) -> tuple[dict[str, int], dict[str, dict[str, Any]], dict[str, CgroupStats]]:
        """Each instance's init pid (0: not running), the network part of the
        running ones (if ``network``) and their counters (if ``counters``)."""
        pids = {i.name: self._pid(i) for i in insts}
        running = [i for i in insts if pids[i.name]]
        nets = self._net.states(running) if network else {}
        stats: dict[str, CgroupStats] = {}
        if counters and running:
            cgroups_path = self._paths.cgroups_path
            stats = dict(zip((i.name for i in running), self._counters.read_many(
                [(cgroups_path(i.name), pids[i.name]) for i in running]), strict=True))
        return pids, nets, stats

    def _pid(self, inst: Instance) -> int:
        return self._runs.pids.get(inst.name, 0) if inst.status is not Status.STOPPED else 0

    @staticmethod
    def _render(inst: Instance, pid: int, network: dict[str, Any] | None,
                stats: CgroupStats | None) -> dict[str, Any]:
        status, code = _STATUS[inst.status]
        return {
            "status": status,
            "status_code": code,
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
            "network": network,
        }
