"""Driver steps as LXD API requests, for the sync and the asyncio REST drivers.

Design note: each step is a generator that yields ``_wire.Request`` objects
and is sent back the ``Response`` of each; it never touches a socket. The
sync ``RestDriver`` drives it with ``drive_http`` over ``Client.send``, the
``AsyncRestDriver`` with ``adrive_http`` over aiohttp. What a step means on
the wire (which request, how an operation is waited on, which answer means
"not there") therefore exists once for both.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Generator
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlencode

from cove import api
from cove.client import _wire as wire
from cove.client import _wire_backups as wb
from cove.client import _wire_copies as wcopy
from cove.client import _wire_publish as wpub
from cove.client import _wire_snapshots as wsnap
from cove.client import _wire_storage as wstor
from cove.client._http import Response
from cove.client._rest import Operation
from cove.client.drivers import _steps as s
from cove.client.drivers import _steps_backups as sb
from cove.client.drivers import _steps_copies as cp
from cove.client.drivers import _steps_publish as sp
from cove.client.drivers import _steps_snapshots as sn
from cove.client.drivers import _steps_storage as ss
from cove.client.drivers._steps import Progress, ProgressCallback, RunCommand, Step
from cove.model.errors import InternalError, NotFound

__all__ = ["HttpFlow", "Upload", "perform", "progress_of", "wait"]

T = TypeVar("T")
HttpFlow = Generator[wire.Request, Response, T]

_FINAL = ("Success", "Failure", "Cancelled")
_PERCENT = re.compile(r"(\d{1,3})%")


def progress_of(op: dict[str, Any]) -> Progress | None:
    """The progress an operation reports: cove's (and newer LXD's)
    ``metadata.progress`` object, or LXD 5.0's ``*_progress`` strings
    (``"Unpack: 45% (30MB/s)"``)."""
    md = op.get("metadata") or {}
    if not isinstance(md, dict):
        return None
    prog = md.get("progress")
    if isinstance(prog, dict) and prog.get("stage"):
        pct = str(prog.get("percent") or "")
        return Progress(str(prog["stage"]), int(pct) if pct.isdigit() else None,
                        str(prog.get("text") or prog.get("speed") or ""))
    for key, value in md.items():
        if key.endswith("_progress") and isinstance(value, str):
            m = _PERCENT.search(value)
            stage = key.removesuffix("_progress").rsplit("_", 1)[-1]
            return Progress(stage, int(m.group(1)) if m else None, value)
    return None


def wait(op: dict[str, Any], progress: ProgressCallback | None = None) -> HttpFlow[dict[str, Any]]:
    """Wait for an operation to end; return it, or raise its error.

    With a ``progress`` callback it is polled every second (LXD's
    ``/wait?timeout=1``) and each new report passed on; without, one
    request waits as long as it takes.
    """
    last: Progress | None = None
    while str(op.get("status")) not in _FINAL:
        resp = yield wire.wait_operation(str(op["id"]), 1 if progress else None)
        op = wire.as_dict(resp, "operation wait")
        if progress is not None:
            now = progress_of(op)
            if now is not None and now != last:
                progress(now)
                last = now
    Operation.from_dict(op).raise_for_error()
    return op


def _run_recorded(step: RunCommand) -> HttpFlow[tuple[int, bytes]]:
    """exec with ``record-output``: no websockets; the exit code from the
    operation, stdout from the log file it names (then removed)."""
    resp = yield wire.exec_command(step.name, list(step.command), websockets=False)
    op = wire.operation_of(resp)
    try:
        op = yield from wait(op)
    except (InternalError, NotFound):
        # LXD fails the operation of every exec that exits 127 or 126, with
        # "return" beside the error; that is an exit code here.
        resp = yield wire.operation(str(op["id"]))
        op = wire.as_dict(resp, "exec operation")
        if (op.get("metadata") or {}).get("return") is None:
            raise
    md = op.get("metadata") or {}
    out = b""
    logs = md.get("output") or {}
    for fd, path in sorted(logs.items()):
        resp = yield wire.Request("GET", str(path))
        if fd == "1" and resp.status == 200:
            out = resp.body
        yield wire.Request("DELETE", str(path))  # exec logs are kept until deleted
    return int(md.get("return") or 0), out


class Upload:
    """A local file as a request body that reports how much of it was sent
    (``Progress("upload", percent)``, once per percent). Both HTTP clients
    read it in blocks: the sync one through ``read``, aiohttp through
    ``chunks``."""

    def __init__(self, f: BinaryIO, size: int, progress: ProgressCallback | None) -> None:
        self.f = f
        self.size = size
        self.progress = progress
        self.sent = 0
        self._last = -1

    def fileno(self) -> int:
        return self.f.fileno()

    def tell(self) -> int:
        return self.f.tell()

    def read(self, n: int = 1 << 16) -> bytes:
        data = self.f.read(n)
        self.sent += len(data)
        if self.progress is not None and self.size:
            pct = min(100, self.sent * 100 // self.size)
            if pct != self._last:
                self._last = pct
                self.progress(Progress("upload", pct))
        return data


def _get_or_none(req: wire.Request, what: str) -> HttpFlow[dict[str, Any] | None]:
    """An object, or None where the server answers 404."""
    resp = yield req
    if resp.status == 404:
        return None
    return wire.as_dict(resp, what)


def _sync(req: wire.Request) -> HttpFlow[None]:
    """A request LXD answers at once (or with an operation: then waited for)."""
    resp = yield req
    if resp.status == 202:
        yield from wait(wire.operation_of(resp))
    else:
        wire.metadata(resp)


def _op(req: wire.Request, progress: ProgressCallback | None = None) -> HttpFlow[None]:
    """A request answered with an operation, waited for."""
    yield from wait(wire.operation_of((yield req)), progress)


def _import(step: s.ImportImage) -> HttpFlow[None]:
    with open(step.path, "rb") as f:
        body = Upload(f, os.fstat(f.fileno()).st_size, step.progress)
        req = wire.import_image(body, filename=os.path.basename(step.path), size=body.size)
        yield from _op(req, step.progress)


def _publish(step: sp.PublishImage) -> HttpFlow[str]:
    op = yield from wait(wire.operation_of((yield wpub.publish(
        step.source, step.aliases, step.properties, step.public))))
    md = op.get("metadata") or {}
    fp = md.get("fingerprint") if isinstance(md, dict) else None
    if not fp:
        raise InternalError("publish: the operation named no fingerprint")
    return str(fp)


def _export_image(step: sp.ExportImage) -> HttpFlow[list[str]]:
    # the whole-answer form; RestDriver and AsyncRestDriver stream instead
    # (drivers._export_stream)
    files = wpub.export_files((yield wpub.export_image(step.fingerprint)), step.fingerprint)
    written = []
    for name, data in files:
        path = os.path.join(step.directory, name)
        with open(path, "wb") as f:
            f.write(data)
        written.append(path)
    return written
def _export_instance(step: sb.ExportInstance) -> HttpFlow[None]:
    """``lxc export``: make, download (whole, then written), delete."""
    op = yield from wait(wire.operation_of(
        (yield wb.create_backup(step.name, instance_only=step.instance_only))))
    made = str((op.get("resources") or {}).get("backups", [""])[0]).rsplit("/", 1)[-1]
    if not made:
        raise InternalError("the server named no backup")
    try:
        resp = yield wb.export_backup(step.name, made)
        if resp.status >= 400:
            wire.metadata(resp)  # raises the host's error
        tmp = step.path + ".part"
        with open(tmp, "wb") as f:
            f.write(resp.body)
        os.replace(tmp, step.path)
    finally:
        yield from _op(wb.delete_backup(step.name, made))


def _import_backup(step: sb.ImportInstance) -> HttpFlow[None]:
    with open(step.path, "rb") as f:
        body = Upload(f, os.fstat(f.fileno()).st_size, None)
        yield from _op(wb.import_backup(body, name=step.name, size=body.size))


def _wait_op(step: s.WaitOperation) -> HttpFlow[dict[str, Any]]:
    return wire.as_dict((yield wire.wait_operation(step.id, step.timeout)), "operation wait")


_Perform = Callable[[Any], HttpFlow[Any]]

# What each step is on the wire (a table, not an if-chain: one line per step).
_PERFORM: dict[type, _Perform] = {
    s.GetInstance: lambda st: _get_or_none(wire.instance(st.name), f"instance {st.name}"),
    s.GetState: lambda st: _dict(wire.instance_state(st.name), f"state of {st.name}"),
    s.ListInstances: lambda st: _list(wire.instances(1), "instances"),
    s.Create: lambda st: _op(wire.create_instance(st.post), st.progress),
    s.Update: lambda st: _op(wire.update_instance(st.name, api.InstancePut.from_wire(st.body),
                                                  patch=st.patch)),
    s.Action: lambda st: _op(wire.change_state(st.name, st.action, timeout=st.timeout,
                                               force=st.force), st.progress),
    s.Delete: lambda st: _op(wire.delete_instance(st.name)),
    s.Rename: lambda st: _op(wire.rename_instance(st.name, st.new_name)),
    s.RunCommand: _run_recorded,
    s.ListImages: lambda st: _list(wire.images(), "images"),
    s.GetImage: lambda st: _get_or_none(wire.image(st.fingerprint), "image"),
    s.ImportImage: _import,
    s.UpdateImage: lambda st: _sync(wire.update_image(st.fingerprint, properties=st.properties,
                                                      public=st.public)),
    s.DeleteImage: lambda st: _op(wire.delete_image(st.fingerprint)),
    s.ListAliases: lambda st: _list(wire.aliases(), "aliases"),
    s.GetAlias: lambda st: _get_or_none(wire.alias(st.name), "alias"),
    s.CreateAlias: lambda st: _sync(wire.create_alias(st.name, st.target, st.description)),
    s.RenameAlias: lambda st: _sync(wire.rename_alias(st.name, st.new_name)),
    s.DeleteAlias: lambda st: _sync(wire.delete_alias(st.name)),
    s.ListNetworks: lambda st: _list(wire.networks(1), "networks"),
    s.GetNetwork: lambda st: _get_or_none(wire.network(st.name), "network"),
    s.GetNetworkState: lambda st: _dict(wire.network(st.name, "state"), "network state"),
    s.GetNetworkLeases: lambda st: _list(wire.network(st.name, "leases"), "network leases"),
    s.CreateNetwork: lambda st: _sync(wire.create_network(
        st.name, st.config, description=st.description, type=st.type)),
    s.UpdateNetwork: lambda st: _sync(wire.update_network(
        st.name, config=st.config, description=st.description, patch=st.patch)),
    s.DeleteNetwork: lambda st: _sync(wire.delete_network(st.name)),
    s.ListOperations: lambda st: _operations(),
    s.GetOperation: lambda st: _get_or_none(wire.operation(st.id), "operation"),
    s.WaitOperation: _wait_op,
    s.CancelOperation: lambda st: _sync(wire.cancel_operation(st.id)),
    s.ListCertificates: lambda st: _list(wire.certificates(1), "certificates"),
    s.GetCertificate: lambda st: _get_or_none(wire.certificate(st.fingerprint), "certificate"),
    s.AddCertificate: lambda st: _sync(wire.add_certificate(st.pem, name=st.name)),
    s.DeleteCertificate: lambda st: _sync(wire.delete_certificate(st.fingerprint)),
    s.ListProfiles: lambda st: _list(wire.profiles(1), "profiles"),
    s.GetProfile: lambda st: _get_or_none(wire.profile(st.name), "profile"),
    s.CreateProfile: lambda st: _sync(wire.create_profile(
        st.name, st.config, st.devices, description=st.description)),
    s.UpdateProfile: lambda st: _sync(wire.update_profile(
        st.name, config=st.config, devices=st.devices, description=st.description,
        patch=st.patch)),
    s.RenameProfile: lambda st: _sync(wire.rename_profile(st.name, st.new_name)),
    s.DeleteProfile: lambda st: _sync(wire.delete_profile(st.name)),
    s.GetResources: lambda st: _dict(wire.Request("GET", "/1.0/resources"), "resources"),
    s.GetMetrics: lambda st: _metrics(st.project),
    ss.ListStoragePools: lambda st: _list(wstor.storage_pools(1), "storage pools"),
    ss.ListVolumes: lambda st: _list(wstor.volumes(st.pool), "storage volumes"),
    ss.GetVolume: lambda st: _get_or_none(wstor.volume(st.pool, st.name), "storage volume"),
    ss.CreateVolume: lambda st: _sync(wstor.create_volume(st.pool, st.name, st.config,
                                                          description=st.description)),
    ss.UpdateVolume: lambda st: _sync(wstor.update_volume(
        st.pool, st.name, config=st.config, description=st.description, patch=st.patch)),
    ss.RenameVolume: lambda st: _sync(wstor.rename_volume(st.pool, st.name, st.new_name)),
    ss.DeleteVolume: lambda st: _sync(wstor.delete_volume(st.pool, st.name)),
    sn.ListSnapshots: lambda st: _list(wsnap.snapshots(st.name), "snapshots"),
    sn.GetSnapshot: lambda st: _get_or_none(wsnap.snapshot(st.name, st.snapshot), "snapshot"),
    sn.CreateSnapshot: lambda st: _op(wsnap.create_snapshot(st.name, st.snapshot)),
    sn.RenameSnapshot: lambda st: _op(wsnap.rename_snapshot(st.name, st.snapshot,
                                                             st.new_name)),
    sn.DeleteSnapshot: lambda st: _op(wsnap.delete_snapshot(st.name, st.snapshot)),
    sn.RestoreSnapshot: lambda st: _op(wsnap.restore_snapshot(st.name, st.snapshot)),
    cp.CopyInstance: lambda st: _op(wcopy.copy_instance(st.source, st.name,
                                                        **st.post_args())),
    cp.RebuildInstance: lambda st: _op(wcopy.rebuild_instance(st.name, st.image)),
    sp.PublishImage: _publish,
    sp.ExportImage: _export_image,
    sb.ListBackups: lambda st: _list(wb.backups(st.name), "backups"),
    sb.GetBackup: lambda st: _get_or_none(wb.backup(st.name, st.backup), "backup"),
    sb.CreateBackup: lambda st: _op(wb.create_backup(st.name, st.backup,
                                                     instance_only=st.instance_only)),
    sb.DeleteBackup: lambda st: _op(wb.delete_backup(st.name, st.backup)),
    sb.ExportInstance: _export_instance,
    sb.ImportInstance: _import_backup,
}


def _metrics(project: str | None) -> HttpFlow[str]:
    query = "?" + urlencode({"project": project}) if project else ""
    resp = yield wire.Request("GET", "/1.0/metrics" + query)
    if resp.status >= 400:
        wire.metadata(resp)  # raises the host's error
    return resp.body.decode("utf-8", "replace")  # text/plain, not an envelope


def _dict(req: wire.Request, what: str) -> HttpFlow[dict[str, Any]]:
    return wire.as_dict((yield req), what)


def _list(req: wire.Request, what: str) -> HttpFlow[list[Any]]:
    return wire.as_list((yield req), what)


def _operations() -> HttpFlow[list[dict[str, Any]]]:
    return wire.operations_in(wire.metadata((yield wire.operations())))


def perform(step: Step) -> HttpFlow[Any]:
    """The requests one step takes, and its result (see ``drivers._steps``).

    Raises:
        InternalError: a step no host performs over HTTP (a driver's own,
            such as ``Sleep``, reached here by mistake).
    """
    how = _PERFORM.get(type(step))
    if how is None:
        raise InternalError(f"{type(step).__name__} is not a request: the driver performs it")
    return (yield from how(step))
