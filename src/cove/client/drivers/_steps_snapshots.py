"""The snapshot steps, as ``drivers._steps``: data only, performed by each
driver's table. Part of ``_steps.Step``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CreateSnapshot",
    "DeleteSnapshot",
    "GetSnapshot",
    "ListSnapshots",
    "RenameSnapshot",
    "RestoreSnapshot",
    "SnapshotStep",
]


@dataclass(frozen=True)
class ListSnapshots:
    """The instance's snapshot objects (raises NotFound for the instance)."""

    name: str


@dataclass(frozen=True)
class GetSnapshot:
    """The snapshot object, or None."""

    name: str
    snapshot: str


@dataclass(frozen=True)
class CreateSnapshot:
    """Take one and wait for it."""

    name: str
    snapshot: str


@dataclass(frozen=True)
class RenameSnapshot:
    name: str
    snapshot: str
    new_name: str


@dataclass(frozen=True)
class DeleteSnapshot:
    name: str
    snapshot: str


@dataclass(frozen=True)
class RestoreSnapshot:
    """Restore and wait (a running instance is stopped and started again)."""

    name: str
    snapshot: str


SnapshotStep = (ListSnapshots | GetSnapshot | CreateSnapshot | RenameSnapshot | DeleteSnapshot
                | RestoreSnapshot)
