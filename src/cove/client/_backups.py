"""Instance backups through a ``Client`` (``/1.0/instances/NAME/backups``
and importing one): the calls ``cove export``/``cove import`` and the
drivers make. Kept beside ``_rest`` (which is at its size limit); each
function takes the ``Client``. Standard library only, no ``typing`` at run
time: the CLI imports it.
"""

from __future__ import annotations

from cove import api
from cove.client._http import parse_envelope
from cove.client._wire import q
from cove.model.errors import InternalError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, BinaryIO

    from cove.client._rest import Client, Operation

__all__ = ["backup", "backups", "create_backup", "delete_backup", "download_backup",
           "export_instance", "import_backup", "rename_backup"]


def _base(name: str) -> str:
    return f"/1.0/instances/{q(name)}/backups"


def backups(client: Client, name: str) -> list[dict[str, Any]]:
    """The instance's ``InstanceBackup`` objects. Raises: NotFound."""
    return client._get_list(_base(name) + "?recursion=1")


def backup(client: Client, name: str, backup: str) -> dict[str, Any]:
    """Raises: NotFound."""
    return client._get_dict(f"{_base(name)}/{q(backup)}")


def create_backup(client: Client, name: str, backup: str = "", *, instance_only: bool = False,
                  compression: str = "", expires_at: float = 0.0) -> Operation:
    """Start making one (``backup`` "": the server names it ``backupN``)."""
    body = api.InstanceBackupsPost(name=backup, expires_at=expires_at,
                                   instance_only=instance_only,
                                   compression_algorithm=compression).to_wire()
    return client._op("POST", _base(name), body)


def rename_backup(client: Client, name: str, backup: str, new_name: str) -> Operation:
    return client._op("POST", f"{_base(name)}/{q(backup)}",
                      api.InstanceBackupPost(name=new_name).to_wire())


def delete_backup(client: Client, name: str, backup: str) -> Operation:
    return client._op("DELETE", f"{_base(name)}/{q(backup)}")


def download_backup(client: Client, name: str, backup: str, out: BinaryIO,
                    progress: Callable[[int, int | None], None] | None = None) -> int:
    """Stream the tarball into ``out``; the bytes written.

    Raises: NotFound (and the server's other errors), ConnectionFailed.
    """
    resp = client.transport.stream("GET", f"{_base(name)}/{q(backup)}/export")
    with resp:
        if resp.status >= 400:
            from cove.client._http import Response

            parse_envelope(Response(resp.status, resp.headers, resp.read()))
        total = int(resp.headers.get("content-length") or 0) or None
        n = 0
        for chunk in resp:
            out.write(chunk)
            n += len(chunk)
            if progress is not None:
                progress(n, total)
    if total is not None and n != total:
        raise InternalError(f"backup {backup} of {name}: got {n} of {total} bytes")
    return n


def export_instance(client: Client, name: str, out: BinaryIO, *, instance_only: bool = False,
                    compression: str = "",
                    progress: Callable[[int, int | None], None] | None = None) -> int:
    """``lxc export``: make a backup, download it into ``out``, delete it
    (also on failure). The bytes written."""
    op = create_backup(client, name, instance_only=instance_only, compression=compression)
    op.wait()
    made = (op.resources.get("backups") or [""])[0].rsplit("/", 1)[-1]
    if not made:
        raise InternalError("the server named no backup")
    try:
        return download_backup(client, name, made, out, progress)
    finally:
        delete_backup(client, name, made).wait()


def import_backup(client: Client, source: str | BinaryIO, name: str = "", pool: str = "",
                  progress: Callable[[int, int | None], None] | None = None) -> Operation:
    """``lxc import``: upload a backup tarball (a path or a binary file) as a
    new instance (``name`` "": the backup's own); returns the operation."""
    headers = {"Content-Type": "application/octet-stream"}
    if name:
        headers["X-LXD-name"] = name
    if pool:
        headers["X-LXD-pool"] = pool
    own = isinstance(source, str)
    f: BinaryIO = open(source, "rb") if isinstance(source, str) else source  # noqa: SIM115
    try:
        return client._op("POST", "/1.0/instances", f, headers,
                          progress=progress)
    finally:
        if own:
            f.close()
