"""Requests of the backup API (``/1.0/instances/NAME/backups``, and the
import: ``POST /1.0/instances`` with a tarball), built from the same
``cove.api`` classes coved parses. Standard library only, no ``typing`` at
run time: the CLI imports it.
"""

from __future__ import annotations

from cove import api
from cove.client._wire import Request, q

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["backup", "backups", "create_backup", "delete_backup", "export_backup",
           "import_backup", "rename_backup"]


def _base(name: str) -> str:
    return f"/1.0/instances/{q(name)}/backups"


def backups(name: str, recursion: int = 1) -> Request:
    return Request("GET", f"{_base(name)}?recursion={int(recursion)}")


def backup(name: str, backup: str) -> Request:
    return Request("GET", f"{_base(name)}/{q(backup)}")


def create_backup(name: str, backup: str = "", *, instance_only: bool = False,
                  compression: str = "", expires_at: float = 0.0, since: str = "") -> Request:
    """``backup`` "": the server names it (``backupN``); ``since``: an
    increment over that kept backup (cove only)."""
    return Request("POST", _base(name), api.InstanceBackupsPost(
        name=backup, expires_at=expires_at, instance_only=instance_only,
        compression_algorithm=compression, cove_since=since).to_wire())


def rename_backup(name: str, backup: str, new_name: str) -> Request:
    return Request("POST", f"{_base(name)}/{q(backup)}",
                   api.InstanceBackupPost(name=new_name).to_wire())


def delete_backup(name: str, backup: str) -> Request:
    return Request("DELETE", f"{_base(name)}/{q(backup)}")


def export_backup(name: str, backup: str) -> Request:
    """The tarball (``application/octet-stream``, not an envelope)."""
    return Request("GET", f"{_base(name)}/{q(backup)}/export")


def import_backup(body: Any, *, name: str = "", pool: str = "",
                  size: int | None = None) -> Request:
    """A new instance from a backup tarball (bytes or a binary file):
    ``X-LXD-name`` renames it, ``X-LXD-pool`` picks the pool."""
    headers = {"Content-Type": "application/octet-stream"}
    if name:
        headers["X-LXD-name"] = name
    if pool:
        headers["X-LXD-pool"] = pool
    if size is not None:
        headers["Content-Length"] = str(size)
    return Request("POST", "/1.0/instances", body, headers)
