"""The storage steps (pools and custom volumes), as ``drivers._steps``: data
only, performed by each driver's table. Part of ``_steps.Step``."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "CreateVolume",
    "DeleteVolume",
    "GetVolume",
    "ListStoragePools",
    "ListVolumes",
    "RenameVolume",
    "StorageStep",
    "UpdateVolume",
]


@dataclass(frozen=True)
class ListStoragePools:
    """Every storage pool (LXD ``StoragePool`` objects)."""


@dataclass(frozen=True)
class ListVolumes:
    """The custom volumes of ``pool`` (objects; raises NotFound for the pool)."""

    pool: str


@dataclass(frozen=True)
class GetVolume:
    """The custom volume object, or None."""

    pool: str
    name: str


@dataclass(frozen=True)
class CreateVolume:
    pool: str
    name: str
    config: dict[str, str] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class UpdateVolume:
    """Merge ``config`` and set ``description`` (``patch``), or replace both (PUT)."""

    pool: str
    name: str
    config: dict[str, str]
    description: str | None = None
    patch: bool = True


@dataclass(frozen=True)
class RenameVolume:
    pool: str
    name: str
    new_name: str


@dataclass(frozen=True)
class DeleteVolume:
    pool: str
    name: str


StorageStep = (ListStoragePools | ListVolumes | GetVolume | CreateVolume | UpdateVolume
               | RenameVolume | DeleteVolume)
