"""Instance backups through a ``Client`` (``/1.0/instances/NAME/backups``
and importing one): the calls ``cove export``/``cove import`` and the
drivers make. Kept beside ``_rest`` (which is at its size limit); each
function takes the ``Client``. Standard library only, no ``typing`` at run
time: the CLI imports it.
"""

from __future__ import annotations

from cove.client import _wire_backups as wb
from cove.client._http import parse_envelope
from cove.model.errors import InternalError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, BinaryIO

    from cove.client._rest import Client, Operation

__all__ = ["backup", "backups", "create_backup", "delete_backup", "download_backup",
           "export_instance", "import_backup", "rename_backup"]


def backups(client: Client, name: str) -> list[dict[str, Any]]:
    """The instance's ``InstanceBackup`` objects. Raises: NotFound."""
    return client._get_list(wb.backups(name).path)


def backup(client: Client, name: str, backup: str) -> dict[str, Any]:
    """Raises: NotFound."""
    return client._get_dict(wb.backup(name, backup).path)


def create_backup(client: Client, name: str, backup: str = "", *, instance_only: bool = False,
                  compression: str = "", expires_at: float = 0.0, since: str = "") -> Operation:
    """Start making one (``backup`` "": the server names it ``backupN``;
    ``since``: only what changed since that kept backup, cove only)."""
    return client._send_op(wb.create_backup(name, backup, instance_only=instance_only,
                                            compression=compression, expires_at=expires_at,
                                            since=since))


def rename_backup(client: Client, name: str, backup: str, new_name: str) -> Operation:
    return client._send_op(wb.rename_backup(name, backup, new_name))


def delete_backup(client: Client, name: str, backup: str) -> Operation:
    return client._send_op(wb.delete_backup(name, backup))


def download_backup(client: Client, name: str, backup: str, out: BinaryIO,
                    progress: Callable[[int, int | None], None] | None = None) -> int:
    """Stream the tarball into ``out``; the bytes written.

    Raises: NotFound (and the server's other errors), ConnectionFailed.
    """
    resp = client.transport.stream("GET", wb.export_backup(name, backup).path)
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
                    compression: str = "", since: str = "", keep: str = "",
                    progress: Callable[[int, int | None], None] | None = None,
                    wait: Callable[[Operation], Operation] | None = None) -> int:
    """``lxc export``: make a backup, download it into ``out``, delete it
    (also on failure) unless ``keep`` names it (then it stays on the server,
    a base for a later ``since``). The bytes written. ``wait`` waits for the
    making (the CLI's draws its progress)."""
    op = create_backup(client, name, keep, instance_only=instance_only,
                       compression=compression, since=since)
    op = wait(op) if wait is not None else op.wait()
    made = keep or (op.resources.get("backups") or [""])[0].rsplit("/", 1)[-1]
    if not made:
        raise InternalError("the server named no backup")
    try:
        return download_backup(client, name, made, out, progress)
    finally:
        if not keep:
            delete_backup(client, name, made).wait()


def import_backup(client: Client, source: str | BinaryIO, name: str = "", pool: str = "",
                  progress: Callable[[int, int | None], None] | None = None) -> Operation:
    """``lxc import``: upload a backup tarball (a path or a binary file) as a
    new instance (``name`` "": the backup's own); returns the operation."""
    own = isinstance(source, str)
    f: BinaryIO = open(source, "rb") if isinstance(source, str) else source  # noqa: SIM115
    try:
        req = wb.import_backup(f, name=name, pool=pool)
        return client._op(req.method, req.path, req.body, req.headers, progress=progress)
    finally:
        if own:
            f.close()
