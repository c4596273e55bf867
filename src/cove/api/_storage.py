"""The storage pool and storage volume objects of the LXD API.

Design note: as ``cove.api._instances`` (names from LXD's Go ``shared/api``:
``StoragePool``, ``StorageVolume``, ``StorageVolumesPost``,
``StorageVolumePut``, ``StorageVolumePost``, ``ResourcesStoragePool``;
``parse`` strict, ``from_wire`` tolerant, ``to_wire`` LXD's JSON).

Standard library only, no ``typing`` at run time: the CLI imports this.
"""

from __future__ import annotations

from cove.api._fields import (
    Wire,
    opt_object,
    opt_str,
    opt_str_map,
    require_object,
    t_dict,
    t_int,
    t_str,
    t_str_list,
    t_str_map,
)
from cove.api._put import ConfigPut
from cove.model.errors import BadRequest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Self

    from cove.model.disks import Volume

__all__ = [
    "ResourcesStoragePool",
    "StoragePool",
    "StorageVolume",
    "StorageVolumePost",
    "StorageVolumePut",
    "StorageVolumesPost",
    "storage_volume",
]


class StoragePool(Wire):
    """A pool as ``GET /1.0/storage-pools/NAME`` reports it (LXD ``StoragePool``)."""

    __slots__ = ("config", "description", "driver", "locations", "name", "status", "used_by")

    def __init__(self, *, name: str = "", description: str = "", driver: str = "dir",
                 status: str = "Created", config: Mapping[str, str] | None = None,
                 used_by: list[str] | None = None, locations: list[str] | None = None) -> None:
        self.name = name
        self.description = description
        self.driver = driver
        self.status = status
        self.config: dict[str, str] = dict(config or {})
        self.used_by: list[str] = list(used_by or [])
        self.locations = ["none"] if locations is None else list(locations)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=t_str(data, "name"), description=t_str(data, "description"),
                   driver=t_str(data, "driver"), status=t_str(data, "status"),
                   config=t_str_map(data, "config"), used_by=t_str_list(data, "used_by"),
                   locations=t_str_list(data, "locations"))

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "driver": self.driver,
                "status": self.status, "config": dict(self.config),
                "used_by": list(self.used_by), "locations": list(self.locations)}


class ResourcesStoragePool(Wire):
    """``GET /1.0/storage-pools/NAME/resources`` (LXD ``ResourcesStoragePool``)."""

    __slots__ = ("inodes_total", "inodes_used", "space_total", "space_used")

    def __init__(self, *, space_used: int = 0, space_total: int = 0, inodes_used: int = 0,
                 inodes_total: int = 0) -> None:
        self.space_used = space_used
        self.space_total = space_total
        self.inodes_used = inodes_used
        self.inodes_total = inodes_total

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        space, inodes = t_dict(data, "space"), t_dict(data, "inodes")
        return cls(space_used=t_int(space, "used"), space_total=t_int(space, "total"),
                   inodes_used=t_int(inodes, "used"), inodes_total=t_int(inodes, "total"))

    def to_wire(self) -> dict[str, Any]:
        return {"space": {"used": self.space_used, "total": self.space_total},
                "inodes": {"used": self.inodes_used, "total": self.inodes_total}}


class StorageVolume(Wire):
    """A volume as ``GET .../volumes/TYPE/NAME`` reports it (LXD ``StorageVolume``)."""

    __slots__ = ("config", "content_type", "created_at", "description", "location", "name",
                 "pool", "project", "type", "used_by")

    def __init__(self, *, name: str = "", description: str = "", type: str = "custom",
                 pool: str = "", content_type: str = "filesystem", project: str = "default",
                 location: str = "none", created_at: str = "",
                 config: Mapping[str, str] | None = None,
                 used_by: list[str] | None = None) -> None:
        self.name = name
        self.description = description
        self.type = type
        self.pool = pool
        self.content_type = content_type
        self.project = project
        self.location = location
        self.created_at = created_at
        self.config: dict[str, str] = dict(config or {})
        self.used_by: list[str] = list(used_by or [])

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=t_str(data, "name"), description=t_str(data, "description"),
                   type=t_str(data, "type"), pool=t_str(data, "pool"),
                   content_type=t_str(data, "content_type"),
                   project=t_str(data, "project", "default"),
                   location=t_str(data, "location"), created_at=t_str(data, "created_at"),
                   config=t_str_map(data, "config"), used_by=t_str_list(data, "used_by"))

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "type": self.type,
                "pool": self.pool, "content_type": self.content_type,
                "project": self.project, "location": self.location,
                "created_at": self.created_at, "config": dict(self.config),
                "used_by": list(self.used_by)}


class StorageVolumesPost(Wire):
    """``POST /1.0/storage-pools/POOL/volumes[/TYPE]`` (LXD ``StorageVolumesPost``)."""

    __slots__ = ("config", "content_type", "description", "name", "type")

    def __init__(self, *, name: str = "", type: str = "custom", description: str = "",
                 content_type: str = "filesystem",
                 config: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.type = type
        self.description = description
        self.content_type = content_type
        self.config: dict[str, str] = dict(config or {})

    @classmethod
    def parse(cls, body: object, *, type: str = "") -> Self:
        """``type`` from the URL wins over a missing one in the body.

        Raises:
            BadRequest: no name, a copy or migration source (not supported),
                a type that differs from the URL's, a field of the wrong type.
        """
        body = require_object(body)
        name = opt_str(body, "name")
        if not name:
            raise BadRequest("Field 'name' is required")
        source = opt_object(body, "source") or {}
        if source.get("name") or source.get("type") not in (None, "", "none"):
            raise BadRequest("Field 'source': copying or migrating volumes is not supported")
        body_type = opt_str(body, "type")
        if type and body_type and body_type != type:
            raise BadRequest(f"Field 'type' {body_type!r} differs from the URL's {type!r}")
        return cls(name=name, type=body_type or type or "custom",
                   description=opt_str(body, "description"),
                   content_type=opt_str(body, "content_type") or "filesystem",
                   config=opt_str_map(body, "config"))

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=t_str(data, "name"), type=t_str(data, "type") or "custom",
                   description=t_str(data, "description"),
                   content_type=t_str(data, "content_type") or "filesystem",
                   config=t_str_map(data, "config"))

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "description": self.description,
                "content_type": self.content_type, "config": dict(self.config)}


class StorageVolumePut(ConfigPut):
    """``PUT``/``PATCH .../volumes/TYPE/NAME`` (LXD ``StorageVolumePut``); None: absent."""

    __slots__ = ()

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises: BadRequest (a wrong type; ``restore``: snapshots are not supported)."""
        if isinstance(body, dict) and body.get("restore"):
            raise BadRequest("Field 'restore': volume snapshots are not supported")
        return super().parse(body)


class StorageVolumePost(Wire):
    """``POST .../volumes/TYPE/NAME``: rename (LXD ``StorageVolumePost``)."""

    __slots__ = ("name", "pool")

    def __init__(self, *, name: str = "", pool: str = "") -> None:
        self.name = name
        self.pool = pool

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises: BadRequest (no name; a migration, a move to another pool or
        project: not supported)."""
        body = require_object(body)
        name = opt_str(body, "name")
        if not name:
            raise BadRequest("Field 'name' is required")
        if body.get("migration") or body.get("target"):
            raise BadRequest("Field 'migration': migrating volumes is not supported")
        if body.get("project"):
            raise BadRequest("Field 'project': moving volumes between projects is not "
                             "supported")
        return cls(name=name, pool=opt_str(body, "pool"))

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=t_str(data, "name"), pool=t_str(data, "pool"))

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.pool:
            out["pool"] = self.pool
        return out


def storage_volume(vol: Volume, used_by: list[str]) -> dict[str, Any]:
    """The wire form of a custom volume record (for coved and the local driver)."""
    from cove.api._objects import rfc3339  # the model's records: off the CLI's path

    return StorageVolume(
        name=vol.name, description=vol.description, type="custom", pool=vol.pool,
        content_type=vol.content_type, project=vol.project, created_at=rfc3339(vol.created_at),
        config=vol.config, used_by=used_by).to_wire()
