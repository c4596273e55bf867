"""``GET /1.0/instances`` without a filter: the listing's JSON text in one
worker-thread call.

Design note: a thousand instances listed with ``recursion=2`` cost coved
mostly what changes only with each instance's row (its wire object, built
and encoded); the engine keeps that as JSON text (``instances.listed``,
``engine._listing``), and this module encodes only the states and the
snapshots and splices them in (``cove.api.instance_full_json``). Everything,
the engine's three calls and the encoding, runs on one worker thread: one
hop there and back, and the event loop is not held while a large list is
encoded. The text is byte for byte what building the wire objects and
``json.dumps`` gave (``tests/unit/test_list_json.py``). A listing with
LXD's ``filter`` matches wire objects and is built as before
(``routes_instances``).

cove's ``?cove-keys=name,status,state.network,...`` (api extension
``cove_instances_keys``) answers each object with only those keys
(``state.X``: only those of its state; a key an object lacks stays out):
``cove list`` asks for its columns, so the config maps are not sent and,
with no counter asked for, the cgroup counters are not read. LXD and a
cove without it ignore the parameter and send whole objects, which the CLI
reads the same way.
"""

from __future__ import annotations

import json
from typing import Any

from cove import api
from cove.engine.surface import EngineAPI
from cove.model.errors import BadRequest
from cove.model.projects import instance_url

__all__ = ["Keys", "instances_text", "parse_keys", "select"]

# the keys of LXD's InstanceFull and of its state, in their wire order
_TOP = ("name", "description", "status", "status_code", "type", "architecture", "config",
        "devices", "expanded_config", "expanded_devices", "ephemeral", "stateful", "profiles",
        "project", "created_at", "last_used_at", "location", "state", "snapshots", "backups")
_STATE = ("status", "status_code", "pid", "processes", "cpu", "memory", "disk", "network",
          "cove")
_COUNTERS = frozenset({"processes", "cpu", "memory"})


class Keys:
    """What ``?cove-keys=`` asked for: top-level keys (``state`` whole) and
    the keys of ``state`` (``state.X``), each in wire order."""

    __slots__ = ("state", "top")

    def __init__(self, top: tuple[str, ...], state: tuple[str, ...]) -> None:
        self.top = top
        self.state = state


def parse_keys(raw: str | None) -> Keys | None:
    """``?cove-keys=a,b,state.c`` (None: absent, whole objects).

    Raises:
        BadRequest: a key the object does not have (named).
    """
    if raw is None:
        return None
    top: set[str] = set()
    state: set[str] = set()
    for key in (k.strip() for k in raw.split(",")):
        if not key:
            continue
        head, dot, sub = key.partition(".")
        if (dot and (head != "state" or sub not in _STATE)) or (not dot and head not in _TOP):
            raise BadRequest(f"Invalid key in cove-keys: {json.dumps(key)}")
        (state.add(sub) if dot else top.add(head))
    if "state" in top:
        state.clear()
    return Keys(tuple(k for k in _TOP if k in top),
                tuple(k for k in _STATE if k in state))


def select(obj: dict[str, Any], keys: Keys) -> dict[str, Any]:
    """``obj`` (an Instance or InstanceFull wire object) with only ``keys``."""
    out = {k: obj[k] for k in keys.top if k in obj}
    state = obj.get("state")
    if keys.state and "state" in obj:
        out["state"] = None if state is None else {k: state[k] for k in keys.state
                                                    if k in state}
    return out


def instances_text(engine: EngineAPI, project: str | None, level: int, *,
                   network: bool, base: str, keys: Keys | None = None) -> str:
    """The ``metadata`` of ``GET /1.0/instances`` (``base``: that path or
    ``/1.0/containers``) at ``level`` 0, 1 or 2, as JSON text: instances of
    ``project`` (None: of every project); ``network`` False leaves each
    state's network null (LXD's selective recursion); ``keys``: only those
    of each object (``select``). Blocks: call it on a worker thread.

    Raises:
        NotFound: no such project.
    """
    listed = engine.instances.listed(project)
    if level == 0:
        return json.dumps([instance_url(item.inst.name, base=base) for item in listed])
    if keys is not None:
        return _selected(engine, listed, level, network, keys)
    if level == 1:
        return "[" + ", ".join(item.json for item in listed) + "]"
    insts = [item.inst for item in listed]
    states = engine.instances.states_json(insts, network=network)
    snaps = engine.snapshots.by_instance([i.name for i in insts])
    full, snapshot = api.instance_full_json_of, api.snapshot
    out = []
    for inst, item in zip(insts, listed, strict=True):
        own = snaps[inst.name]  # mostly none: no list of wire objects to make then
        out.append(full(item.json, states[inst.name],
                        [snapshot(s, inst) for s in own] if own else []))
    return f"[{', '.join(out)}]"


def _selected(engine: EngineAPI, listed: list[Any], level: int, network: bool,
              keys: Keys) -> str:
    """The objects of ``listed`` with only ``keys``, as JSON text; only the
    parts asked for are made (no counters read unless one is asked for)."""
    top = [{k: item.wire[k] for k in keys.top if k in item.wire} for item in listed]
    if level < 2 or not (keys.state or {"state", "snapshots"} & set(keys.top)):
        return json.dumps(top)
    insts = [item.inst for item in listed]
    whole = "state" in keys.top
    states = engine.instances.states(
        insts, network=network and (whole or "network" in keys.state),
        counters=whole or bool(_COUNTERS & set(keys.state)))
    snaps = (engine.snapshots.by_instance([i.name for i in insts])
             if "snapshots" in keys.top else {})
    out = []
    for obj, inst in zip(top, insts, strict=True):
        state = states[inst.name]
        if whole or keys.state:
            obj["state"] = api.InstanceState.from_wire(state).to_wire() if whole else {
                k: state[k] for k in keys.state if k in state and (k != "cove" or state[k])}
        if "snapshots" in keys.top:
            obj["snapshots"] = [api.snapshot(s, inst) for s in snaps.get(inst.name, [])]
        if "backups" in keys.top:
            obj["backups"] = []
        out.append(_object_json(select(obj, keys)))
    return "[" + ", ".join(out) + "]"


def _object_json(obj: dict[str, Any]) -> str:
    """``json.dumps(obj)``, the state's shared loopback entry spliced as text."""
    state = obj.get("state")
    if not isinstance(state, dict) or "network" not in state or next(reversed(obj)) != "state":
        return json.dumps(obj)
    parts = ", ".join(f"{json.dumps(k)}: {api.network_json(v) if k == 'network' else json.dumps(v)}"
                      for k, v in state.items())
    head = json.dumps({k: v for k, v in obj.items() if k != "state"})[:-1]
    return f'{head}, "state": {{{parts}}}}}' if len(obj) > 1 else f'{{"state": {{{parts}}}}}'
