"""A listing's instances as JSON text, put together from parts.

Design note: with a thousand instances, building each ``InstanceFull`` as
wire objects (copies of its config and device maps, twice) and encoding the
whole list was most of ``GET /1.0/instances?recursion=2``, although all of
an instance but its state changes only when its row (or a profile) does.
So the part of an instance its row decides is encoded once, by
``instance_json``, and kept by whoever knows when the row changed (the
engine's ``_listing``); a listing encodes only the states and snapshots
and splices them in (``instance_full_json``). The text is exactly what
``json.dumps`` of ``instance`` / ``instance_full`` gives (the same keys in
the same order, the same separators): clients cannot tell the two apart,
and ``tests/unit/test_list_json.py`` holds them equal.
"""

from __future__ import annotations

import json
from typing import Any

from cove.api._objects import instance
from cove.api._state import InstanceState
from cove.model import records

__all__ = ["LOOPBACK_STATE", "instance_full_json", "instance_full_json_of", "instance_json",
           "network_json", "state_json", "state_json_of"]

# ``state.network.lo`` of every running container (cove reads no counters of
# it). A listing's states all hold this one object, encoded once here: never
# change it.
LOOPBACK_STATE: dict[str, Any] = {
    "addresses": [
        {"family": "inet", "address": "127.0.0.1", "netmask": "8", "scope": "local"},
        {"family": "inet6", "address": "::1", "netmask": "128", "scope": "local"}],
    "counters": {"bytes_received": 0, "bytes_sent": 0, "packets_received": 0,
                 "packets_sent": 0},
    "hwaddr": "", "host_name": "", "mtu": 65536, "state": "up", "type": "loopback"}
_LOOPBACK_NETWORK = '{"lo": ' + json.dumps(LOOPBACK_STATE)
_LOOPBACK_ONLY = _LOOPBACK_NETWORK + "}"  # a network of the loopback alone

# The keys of the engine's state dict, in ``InstanceState.to_wire``'s order:
# a state with exactly these (and a non-empty ``cove``) is already its own
# wire form and is encoded as it is.
_HEAD = ("status", "status_code", "pid", "processes", "cpu", "memory", "disk")
_STATE_KEYS = (*_HEAD, "network")
_STATE_KEYS_COVE = (*_STATE_KEYS, "cove")


def instance_json(inst: records.Instance) -> str:
    """The LXD ``Instance`` of ``inst`` (with its expanded fields), as JSON
    text: ``json.dumps(instance(inst))``."""
    return json.dumps(instance(inst))


def state_json(state: dict[str, Any] | None) -> str:
    """``json.dumps`` of a state (the engine's dict, or None) as the listing
    sends it: ``InstanceState``'s wire form unless it has the engine's keys."""
    return _state_json(state)


def state_json_of(status: str, code: int, pid: int, processes: int, cpu_ns: int, memory: int,
                  memory_peak: int, network: Any) -> str:
    """``state_json`` of the dict the engine renders from these values
    (``engine._states``: no swap, no disk, no ``cove`` part), formatted
    without building it (ints; ``network``: None or its dict)."""
    text = _STRINGS.get(status)
    if text is None:
        text = json.dumps(status)
        if len(_STRINGS) < _STRINGS_MAX:
            _STRINGS[status] = text
    return (f"{_HEAD_FORMAT % (text, code, pid, processes, cpu_ns, memory, memory_peak, 0, 0)}"
            f', "network": {network_json(network)}}}')


def _state_json(state: dict[str, Any] | None) -> str:
    if state is None:
        return "null"
    keys = tuple(state)
    cove = keys == _STATE_KEYS_COVE and state["cove"]
    if keys != _STATE_KEYS and not cove:
        return json.dumps(InstanceState.from_wire(state).to_wire())
    net = network_json(state["network"])
    head = _head_json(state)
    return (f'{head}, "network": {net}, "cove": {json.dumps(state["cove"])}}}' if cove
            else f'{head}, "network": {net}}}')


# The head of a state as the engine renders it, formatted without json.dumps
# (a listing of a thousand spent ~10 us a state building and encoding the
# dict): ``%d`` of an ``int`` is its JSON, and the status strings are few.
_HEAD_FORMAT = ('{"status": %s, "status_code": %d, "pid": %d, "processes": %d, '
                '"cpu": {"usage": %d}, "memory": {"usage": %d, "usage_peak": %d, '
                '"swap_usage": %d, "swap_usage_peak": %d}, "disk": {}')
_MEMORY_KEYS = ("usage", "usage_peak", "swap_usage", "swap_usage_peak")
_STRINGS: dict[str, str] = {}  # a status -> its JSON (at most _STRINGS_MAX kept)
_STRINGS_MAX = 64


def _head_json(state: dict[str, Any]) -> str:
    """``json.dumps`` of the ``_HEAD`` keys of ``state``, less the closing
    brace: formatted when every value has the engine's type and shape (ints
    that are not bools, a ``cpu`` of ``usage`` only, the four memory keys in
    order, an empty ``disk``), else encoded."""
    status, cpu, mem, disk = state["status"], state["cpu"], state["memory"], state["disk"]
    if type(status) is str and type(cpu) is dict and type(mem) is dict \
            and type(disk) is dict and not disk and len(cpu) == 1 \
            and tuple(mem) == _MEMORY_KEYS:
        code, pid, procs, usage = (state["status_code"], state["pid"], state["processes"],
                                   cpu.get("usage"))
        m0, m1, m2, m3 = mem["usage"], mem["usage_peak"], mem["swap_usage"], mem["swap_usage_peak"]
        if type(code) is int and type(pid) is int and type(procs) is int \
                and type(usage) is int and type(m0) is int and type(m1) is int \
                and type(m2) is int and type(m3) is int:
            text = _STRINGS.get(status)
            if text is None:
                text = json.dumps(status)
                if len(_STRINGS) < _STRINGS_MAX:
                    _STRINGS[status] = text
            return _HEAD_FORMAT % (text, code, pid, procs, usage, m0, m1, m2, m3)
    return json.dumps({k: state[k] for k in _HEAD})[:-1]


def network_json(network: Any) -> str:
    """``json.dumps(network)`` of a state's ``network``; the shared loopback
    entry (first, as the engine puts it) is spliced in as text."""
    if not isinstance(network, dict) or network.get("lo") is not LOOPBACK_STATE \
            or next(iter(network)) != "lo":
        return json.dumps(network)
    if len(network) == 1:
        return _LOOPBACK_ONLY
    others = {k: v for k, v in network.items() if k != "lo"}
    return f"{_LOOPBACK_NETWORK}, {json.dumps(others)[1:]}" if others else _LOOPBACK_ONLY


def instance_full_json(instance_text: str, state: dict[str, Any] | None,
                       snapshots: list[dict[str, Any]]) -> str:
    """The LXD ``InstanceFull`` as JSON text, from ``instance_json``'s text of
    the instance, its state (the engine's dict, or None) and its snapshots'
    wire objects: ``json.dumps(instance_full(inst, state))`` with
    ``snapshots`` set."""
    return instance_full_json_of(instance_text, _state_json(state), snapshots)


def instance_full_json_of(instance_text: str, state_text: str,
                          snapshots: list[dict[str, Any]]) -> str:
    """``instance_full_json`` with the state as ``state_json``'s text."""
    snaps = json.dumps(snapshots) if snapshots else "[]"
    return (f'{instance_text[:-1]}, "state": {state_text}, "snapshots": {snaps}, '
            '"backups": []}')
