"""Requests of the snapshot API (``/1.0/instances/NAME/snapshots``), built
from the same ``cove.api`` classes coved parses (as ``_wire`` does for the
rest). Standard library only, no ``typing`` at run time: the CLI imports it.
"""

from __future__ import annotations

from cove import api
from cove.client._wire import Request, q

__all__ = ["create_snapshot", "delete_snapshot", "rename_snapshot", "restore_snapshot",
           "snapshot", "snapshots"]


def snapshots(name: str, recursion: int = 1) -> Request:
    return Request("GET", f"/1.0/instances/{q(name)}/snapshots?recursion={int(recursion)}")


def snapshot(name: str, snap: str) -> Request:
    return Request("GET", f"/1.0/instances/{q(name)}/snapshots/{q(snap)}")


def create_snapshot(name: str, snap: str = "") -> Request:
    """``snap`` "": the server names it (``snapshots.pattern``)."""
    return Request("POST", f"/1.0/instances/{q(name)}/snapshots",
                   api.InstanceSnapshotsPost(name=snap).to_wire())


def rename_snapshot(name: str, snap: str, new_name: str) -> Request:
    return Request("POST", f"/1.0/instances/{q(name)}/snapshots/{q(snap)}",
                   api.InstanceSnapshotPost(name=new_name).to_wire())


def delete_snapshot(name: str, snap: str) -> Request:
    return Request("DELETE", f"/1.0/instances/{q(name)}/snapshots/{q(snap)}")


def restore_snapshot(name: str, snap: str) -> Request:
    return Request("PUT", f"/1.0/instances/{q(name)}", api.InstancePut(restore=snap).to_wire())
