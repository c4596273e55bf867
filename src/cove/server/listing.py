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
"""

from __future__ import annotations

import json

from cove import api
from cove.engine.surface import EngineAPI
from cove.model.projects import instance_url

__all__ = ["instances_text"]


def instances_text(engine: EngineAPI, project: str | None, level: int, *,
                   network: bool, base: str) -> str:
    """The ``metadata`` of ``GET /1.0/instances`` (``base``: that path or
    ``/1.0/containers``) at ``level`` 0, 1 or 2, as JSON text: instances of
    ``project`` (None: of every project); ``network`` False leaves each
    state's network null (LXD's selective recursion). Blocks: call it on a
    worker thread.

    Raises:
        NotFound: no such project.
    """
    listed = engine.instances.listed(project)
    if level == 0:
        return json.dumps([instance_url(item.inst.name, base=base) for item in listed])
    if level == 1:
        return "[" + ", ".join(item.json for item in listed) + "]"
    insts = [item.inst for item in listed]
    states = engine.instances.states(insts, network=network)
    snaps = engine.snapshots.by_instance([i.name for i in insts])
    return "[" + ", ".join(
        api.instance_full_json(item.json, states[item.inst.name],
                               [api.snapshot(s, item.inst) for s in snaps[item.inst.name]])
        for item in listed) + "]"
