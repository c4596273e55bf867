"""The flows of instance snapshots, as ``drivers._resources``: one generator
of steps per call, run by every driver; taking a snapshot that exists,
renaming one already renamed and deleting one that is gone succeed and do
nothing. Reports are ``cove.api.InstanceSnapshot``.
"""

from __future__ import annotations

from typing import Any

from cove import api
from cove.client.drivers._steps import Flow
from cove.client.drivers._steps_snapshots import (
    CreateSnapshot,
    DeleteSnapshot,
    GetSnapshot,
    ListSnapshots,
    RenameSnapshot,
    RestoreSnapshot,
)
from cove.model.errors import CoveError, NotFound
from cove.model.names import validate_instance_name, validate_snapshot_name

__all__ = ["create_snapshot", "delete_snapshot", "rename_snapshot", "restore_snapshot",
           "snapshot", "snapshots"]


def snapshots(name: str) -> Flow[list[api.InstanceSnapshot]]:
    found = yield ListSnapshots(validate_instance_name(name))
    return [api.InstanceSnapshot.from_wire(d) for d in found or [] if isinstance(d, dict)]


def _get(name: str, snap: str) -> Flow[dict[str, Any] | None]:
    found = yield GetSnapshot(validate_instance_name(name), validate_snapshot_name(snap))
    return dict(found) if isinstance(found, dict) else None


def snapshot(name: str, snap: str) -> Flow[api.InstanceSnapshot]:
    found = yield from _get(name, snap)
    if found is None:
        raise NotFound(f"Snapshot not found: {snap}")
    return api.InstanceSnapshot.from_wire(found)


def create_snapshot(name: str, snap: str) -> Flow[api.InstanceSnapshot]:
    """Convergent: a snapshot of that name is left as it is."""
    if (yield from _get(name, snap)) is None:
        try:
            yield CreateSnapshot(name, snap)
        except CoveError:
            if (yield from _get(name, snap)) is None:
                raise
    return (yield from snapshot(name, snap))


def restore_snapshot(name: str, snap: str) -> Flow[None]:
    """Not convergent: every call puts the instance back to the snapshot."""
    yield from snapshot(name, snap)
    yield RestoreSnapshot(name, snap)


def rename_snapshot(name: str, snap: str, new_name: str) -> Flow[None]:
    """Convergent: ``snap`` gone and ``new_name`` there is done already."""
    validate_snapshot_name(new_name)
    if (yield from _get(name, snap)) is None:
        if (yield from _get(name, new_name)) is not None:
            return
        raise NotFound(f"Snapshot not found: {snap}")
    yield RenameSnapshot(name, snap, new_name)


def delete_snapshot(name: str, snap: str) -> Flow[None]:
    """Convergent: a snapshot that is gone is deleted. Raises NotFound for
    a missing instance."""
    if (yield from _get(name, snap)) is None:
        yield ListSnapshots(name)  # NotFound when the instance itself is gone
        return
    try:
        yield DeleteSnapshot(name, snap)
    except NotFound:
        pass
