"""The flows of instance backups, as ``drivers._resources``: one generator
of steps per call, run by every driver. Making a backup that exists and
deleting one that is gone succeed and do nothing; an import into a name
that is taken raises Conflict (what is there is not a copy of the backup).
Reports are ``cove.api.InstanceBackup``.
"""

from __future__ import annotations

from typing import Any

from cove import api
from cove.client.drivers._steps import Flow, GetInstance
from cove.client.drivers._steps_backups import (
    CreateBackup,
    DeleteBackup,
    ExportInstance,
    GetBackup,
    ImportInstance,
    ListBackups,
)
from cove.model.errors import Conflict, CoveError, NotFound
from cove.model.names import validate_instance_name, validate_snapshot_name

__all__ = ["backup", "backups", "create_backup", "delete_backup", "export_instance",
           "import_instance"]


def backups(name: str) -> Flow[list[api.InstanceBackup]]:
    found = yield ListBackups(validate_instance_name(name))
    return [api.InstanceBackup.from_wire(d) for d in found or [] if isinstance(d, dict)]


def _get(name: str, backup: str) -> Flow[dict[str, Any] | None]:
    found = yield GetBackup(validate_instance_name(name), validate_snapshot_name(backup))
    return dict(found) if isinstance(found, dict) else None


def backup(name: str, backup: str) -> Flow[api.InstanceBackup]:
    found = yield from _get(name, backup)
    if found is None:
        raise NotFound(f"Backup not found: {backup}")
    return api.InstanceBackup.from_wire(found)


def create_backup(name: str, backup_name: str, *, instance_only: bool = False
                  ) -> Flow[api.InstanceBackup]:
    """Convergent: a backup of that name is left as it is."""
    if (yield from _get(name, backup_name)) is None:
        try:
            yield CreateBackup(name, backup_name, instance_only)
        except CoveError:
            if (yield from _get(name, backup_name)) is None:
                raise
    return (yield from backup(name, backup_name))


def delete_backup(name: str, backup_name: str) -> Flow[None]:
    """Convergent: a backup that is gone is deleted. Raises NotFound for a
    missing instance."""
    if (yield from _get(name, backup_name)) is None:
        yield ListBackups(name)  # NotFound when the instance itself is gone
        return
    try:
        yield DeleteBackup(name, backup_name)
    except NotFound:
        pass


def export_instance(name: str, path: str, *, instance_only: bool = False) -> Flow[None]:
    """Not convergent: every call writes a new backup of the instance now."""
    yield ExportInstance(validate_instance_name(name), path, instance_only)


def import_instance(path: str, name: str) -> Flow[None]:
    """Raises Conflict when ``name`` is taken (nothing is imported then)."""
    if (yield GetInstance(validate_instance_name(name))) is not None:
        raise Conflict(f"Instance {name!r} already exists")
    yield ImportInstance(path, name)
