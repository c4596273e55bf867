"""Instance backups on the wire (LXD's ``shared/api/instance_backup.go``).

``InstanceBackup`` is the object; ``InstanceBackupsPost`` makes one,
``InstanceBackupPost`` renames it. Times are RFC 3339; LXD's zero time
means "never expires". Standard library only (the CLI imports it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from cove.api._fields import Wire, opt_bool, opt_str, require_object, t_bool, t_str
from cove.api._snapshots import _rfc3339, parse_time
from cove.model.errors import BadRequest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cove.model.records import Backup as BackupRecord

__all__ = ["InstanceBackup", "InstanceBackupPost", "InstanceBackupsPost", "backup"]


class InstanceBackupsPost(Wire):
    """``POST /1.0/instances/NAME/backups``. ``name`` "": the server picks
    ``backupN``; ``expires_at`` 0: never; ``container_only`` is the older
    name of ``instance_only``; ``compression_algorithm`` "": gzip;
    ``cove_since`` (cove's own, extension ``cove_backup_incremental``): only
    what changed since that kept backup."""

    __slots__ = ("compression_algorithm", "cove_since", "expires_at", "instance_only", "name",
                 "optimized_storage")

    def __init__(self, *, name: str = "", expires_at: float = 0.0, instance_only: bool = False,
                 optimized_storage: bool = False, compression_algorithm: str = "",
                 cove_since: str = "") -> None:
        self.cove_since = cove_since
        self.name = name
        self.expires_at = expires_at
        self.instance_only = instance_only
        self.optimized_storage = optimized_storage
        self.compression_algorithm = compression_algorithm

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises: BadRequest naming a field of the wrong type."""
        body = require_object(body)
        expires = opt_str(body, "expires_at") if body.get("expires_at") is not None else ""
        return cls(name=opt_str(body, "name"), expires_at=parse_time(expires, "expires_at"),
                   instance_only=opt_bool(body, "instance_only")
                   or opt_bool(body, "container_only"),
                   optimized_storage=opt_bool(body, "optimized_storage"),
                   compression_algorithm=opt_str(body, "compression_algorithm"),
                   cove_since=opt_str(body, "cove_since"))

    def to_wire(self) -> dict[str, Any]:
        out = {"name": self.name, "expires_at": _rfc3339(self.expires_at),
               "instance_only": self.instance_only, "container_only": self.instance_only,
               "optimized_storage": self.optimized_storage,
               "compression_algorithm": self.compression_algorithm}
        if self.cove_since:
            out["cove_since"] = self.cove_since
        return out


class InstanceBackupPost(Wire):
    """``POST .../backups/NAME``: a rename."""

    __slots__ = ("name",)

    def __init__(self, *, name: str) -> None:
        self.name = name

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises: BadRequest (no name)."""
        name = opt_str(require_object(body), "name")
        if not name:
            raise BadRequest("Field 'name' is required")
        return cls(name=name)

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name}


class InstanceBackup(Wire):
    """LXD's ``InstanceBackup``."""

    __slots__ = ("created_at", "expires_at", "instance_only", "name", "optimized_storage")

    def __init__(self, *, name: str, created_at: float = 0.0, expires_at: float = 0.0,
                 instance_only: bool = False, optimized_storage: bool = False) -> None:
        self.name = name
        self.created_at = created_at
        self.expires_at = expires_at
        self.instance_only = instance_only
        self.optimized_storage = optimized_storage

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=t_str(data, "name"),
                   created_at=parse_time(t_str(data, "created_at"), "created_at"),
                   expires_at=parse_time(t_str(data, "expires_at"), "expires_at"),
                   instance_only=t_bool(data, "instance_only") or t_bool(data, "container_only"),
                   optimized_storage=t_bool(data, "optimized_storage"))

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "created_at": _rfc3339(self.created_at),
                "expires_at": _rfc3339(self.expires_at), "instance_only": self.instance_only,
                "container_only": self.instance_only,
                "optimized_storage": self.optimized_storage}


def backup(b: BackupRecord) -> dict[str, Any]:
    """The LXD ``InstanceBackup`` object of a record."""
    return InstanceBackup(name=b.name, created_at=b.created_at, expires_at=b.expires_at,
                          instance_only=b.instance_only,
                          optimized_storage=b.optimized_storage).to_wire()
