"""``LocalDriver``: cove's engine in this process, for programs that own the host.

Design notes:

* No coved, no HTTP: each step is the engine call coved's handler would
  make, and the answers are rendered with ``cove.api``, the module coved
  renders with, so a ``LocalDriver`` sees the very objects a ``RestDriver``
  gets from coved.
* One owner per root: the driver takes ``ROOT/coved.lock`` as coved does, so
  it refuses a root a coved serves (``Conflict``), and a coved started later
  on that root refuses to start. Containers outlive the driver (their
  monitors hold them); ``close()`` lets go of the root.
* The engine makes this process a child subreaper (conmon's monitors are
  adopted and reaped by it), as it does coved.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cove import api
from cove.client import _wire_copies as wcopy
from cove.client._wire_publish import safe_filename
from cove.client.drivers import _steps as s
from cove.client.drivers import _steps_backups as sb
from cove.client.drivers import _steps_copies as cp
from cove.client.drivers import _steps_publish as sp
from cove.client.drivers import _steps_snapshots as sn
from cove.client.drivers import _steps_storage as ss
from cove.client.drivers._resources import check_event_types
from cove.client.drivers.base import EventDriver, EventStream, Progress, Step
from cove.client.transports.local import EngineTransport
from cove.model.errors import Conflict, NotFound, Timeout

if TYPE_CHECKING:
    from cove.engine import Engine, Operation
    from cove.engine.events import Subscription

__all__ = ["LocalDriver", "LocalEventStream"]

DEFAULT_ROOT = "/var/lib/cove"

T = TypeVar("T")


def _lock(root: Path) -> int:
    fd = os.open(root / "coved.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Conflict(f"{root} is in use by a coved (or another LocalDriver): "
                       "use RestDriver on its socket instead") from None
    return fd


def _or_none(get: Callable[[], T]) -> T | None:
    """What ``get`` returns, or None for what is not there (a ``Get*`` step)."""
    try:
        return get()
    except NotFound:
        return None


class LocalDriver(EventDriver):
    """The cove root ``root`` (default ``$COVE_DIR`` or /var/lib/cove), in-process;
    its instances are those of ``project``.

    Raises:
        Conflict: a coved (or another LocalDriver) holds the root.
        NotFound: no such project.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *,
                 project: str | None = None) -> None:
        from cove.engine import Engine

        self.project = project or "default"
        self.root = Path(root or os.environ.get("COVE_DIR") or DEFAULT_ROOT).absolute()
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd: int | None = _lock(self.root)
        try:
            self.engine: Engine = Engine(self.root)
            self.engine.startup()
            self.engine.projects.check(self.project)
        except BaseException:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise

    def __repr__(self) -> str:
        return f"LocalDriver({str(self.root)!r})"

    def close(self) -> None:
        if self._lock_fd is None:
            return
        try:
            self.engine.operations.wait_idle(30)
            self.engine.close()
        finally:
            os.close(self._lock_fd)
            self._lock_fd = None

    def transport_for(self, name: str) -> EngineTransport:
        from cove.model.names import validate_instance_name
        from cove.model.projects import instance_key

        # the access calls take the instance's key (``cove.model.projects``)
        return EngineTransport(self.engine,
                               instance_key(self.project, validate_instance_name(name)))

    def events(self, types: Sequence[str] = ("lifecycle", "operation")) -> LocalEventStream:
        return LocalEventStream(self.engine.events.subscribe(set(check_event_types(types))))

    # -- steps --------------------------------------------------------------------------
    def _wait(self, op: Operation, progress: Any = None) -> None:
        if progress is not None:
            last: list[Any] = [None]

            def report(o: Operation) -> None:
                prog = o.metadata.get("progress")
                if isinstance(prog, dict) and prog != last[0]:
                    last[0] = dict(prog)
                    pct = str(prog.get("percent") or "")
                    progress(Progress(str(prog.get("stage") or ""),
                                      int(pct) if pct.isdigit() else None,
                                      str(prog.get("text") or "")))
            op.add_listener(report)
        op.wait()
        op.raise_for_error()

    def _do(self, step: Step) -> Any:
        return _PERFORM[type(step)](self, step)

    def _create(self, step: s.Create) -> None:
        src = step.post.source
        if src.type == "image" and src.protocol == "oci":  # an OCI registry's, as coved
            self._wait(self.engine.registry_pulls.create_instance(step.post,
                                                                  project=self.project),
                       step.progress)
            return
        src.image_ref()  # refused before the engine looks, as coved does
        self._wait(self.engine.instances.create(step.post, project=self.project), step.progress)

    def _update(self, step: s.Update) -> None:
        put = api.InstancePut.from_wire(step.body)
        self.engine.instances.update(step.name, project=self.project,
                                     config=put.config, devices=put.devices,
                                     profiles=put.profiles, description=put.description,
                                     ephemeral=put.ephemeral, patch=step.patch)

    def _import(self, step: s.ImportImage) -> None:
        """The engine takes the tarball's file over (it is removed when the
        import ends), so a copy under the root's tmp/ is handed to it, as
        coved spools an upload there."""
        spool = Path(tempfile.mkstemp(prefix="image-", dir=self.root / "tmp")[1])
        try:
            shutil.copyfile(step.path, spool)
            if step.progress:
                step.progress(Progress("upload", 100))
            op = self.engine.images.import_file(spool, filename=os.path.basename(step.path),
                                               public=step.public, project=self.project)
        except BaseException:
            spool.unlink(missing_ok=True)
            raise
        self._wait(op, step.progress)

    def _update_image(self, step: s.UpdateImage) -> None:
        self.engine.images.update(step.fingerprint, properties=step.properties,
                                  public=step.public, project=self.project)

    def _update_network(self, step: s.UpdateNetwork) -> None:
        fields: dict[str, Any] = {"config": dict(step.config)}
        if step.description is not None:
            fields["description"] = step.description
        self.engine.networks.update(step.name, patch=step.patch, **fields)

    def _network(self, name: str) -> dict[str, Any]:
        return api.network(self.engine.networks.get(name), self.engine.networks.used_by(name))

    def _profile(self, name: str) -> dict[str, Any]:
        return api.profile(self.engine.profiles.get(name), self.engine.profiles.used_by(name))
    def _pool(self, name: str) -> dict[str, Any]:
        storage = self.engine.storage
        return api.StoragePool.from_wire(
            {**storage.pool(name), "used_by": storage.pool_used_by(name)}).to_wire()

    def _snapshots(self, name: str) -> list[dict[str, Any]]:
        inst = self.engine.instances.get(name, project=self.project)
        return [api.snapshot(s, inst)
                for s in self.engine.snapshots.all(name, project=self.project)]

    def _export(self, step: sb.ExportInstance) -> None:
        op = self.engine.backups.create(step.name, project=self.project,
                                        instance_only=step.instance_only)
        self._wait(op)
        made = str(op.resources["backups"][0]).rsplit("/", 1)[-1]
        try:
            tmp = step.path + ".part"
            with self.engine.backups.open(step.name, made, project=self.project) as src, \
                    open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(tmp, step.path)
        finally:
            self._wait(self.engine.backups.delete(step.name, made, project=self.project))

    def _import_backup(self, step: sb.ImportInstance) -> None:
        # the engine takes its file over: hand it a copy in the root's tmp/
        spool = self.engine.root / "tmp" / f"backup-{os.getpid()}-{id(step)}"
        shutil.copyfile(step.path, spool)
        self._wait(self.engine.backups.import_file(spool, name=step.name,
                                                   project=self.project))

    def _volume(self, pool: str, name: str) -> dict[str, Any]:
        storage = self.engine.storage
        return api.storage_volume(storage.volume(pool, name),
                                  storage.volume_used_by(pool, name))

    def _wait_operation(self, step: s.WaitOperation) -> dict[str, Any]:
        op = self.engine.operations.get(step.id)
        op.wait(step.timeout)
        return op.to_dict()


class LocalEventStream(EventStream):
    """A subscription to the engine's event bus."""

    def __init__(self, sub: Subscription) -> None:
        self._sub = sub
        self._closed = False

    def get(self, timeout: float | None = None) -> api.Event | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise Timeout(f"No event within {timeout:g}s")
            event = self._sub.get(left)
            if event is not None:
                return api.Event.from_wire(event)
        return None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sub.close()
        with self._sub.cond:  # wake a reader blocked in get()
            self._sub.cond.notify_all()


def _publish(d: LocalDriver, st: sp.PublishImage) -> str:
    op = d.engine.publisher.publish("snapshot" if "/" in st.source else "instance", st.source,
                                    aliases=list(st.aliases), properties=dict(st.properties),
                                    public=st.public, project=d.project)
    d._wait(op)
    return str(op.metadata["fingerprint"])


def _export_image(d: LocalDriver, st: sp.ExportImage) -> list[str]:
    """Each part streamed into its file (a flattened one straight from tar)."""
    written = []
    for part in d.engine.publisher.export(st.fingerprint, project=d.project):
        path = os.path.join(st.directory, safe_filename(part.filename, st.fingerprint))
        reader = part.open()
        try:
            with open(path, "wb") as f:
                while chunk := reader.read(1 << 20):
                    f.write(chunk)
        finally:
            reader.close()
        written.append(path)
    return written


# What each step is for the engine: the call coved's handler makes, rendered
# with the same ``cove.api`` renderers (see the module notes).
_PERFORM: dict[type, Callable[[LocalDriver, Any], Any]] = {
    s.GetInstance: lambda d, st: _or_none(lambda: api.instance(
        d.engine.instances.get(st.name, project=d.project))),
    s.GetState: lambda d, st: d.engine.instances.state(st.name, project=d.project),
    s.ListInstances: lambda d, st: [api.instance(i)
                                    for i in d.engine.instances.all(project=d.project)],
    s.Create: LocalDriver._create,
    s.Update: LocalDriver._update,
    s.Action: lambda d, st: d._wait(d.engine.instances.change_state(
        st.name, st.action, project=d.project, timeout=st.timeout, force=st.force),
        st.progress),
    s.Delete: lambda d, st: d._wait(d.engine.instances.delete(st.name, project=d.project)),
    s.Rename: lambda d, st: d._wait(d.engine.instances.rename(st.name, st.new_name,
                                                              project=d.project)),
    s.RunCommand: lambda d, st: d._command_in(st),
    s.ListImages: lambda d, st: [api.image(i) for i in d.engine.images.all(project=d.project)],
    s.GetImage: lambda d, st: _or_none(lambda: api.image(
        d.engine.images.get(st.fingerprint, project=d.project))),
    s.ImportImage: LocalDriver._import,
    s.UpdateImage: LocalDriver._update_image,
    s.DeleteImage: lambda d, st: d._wait(d.engine.images.delete(st.fingerprint,
                                                                project=d.project)),
    s.ListAliases: lambda d, st: [api.alias(a)
                                  for a in d.engine.images.list_aliases(project=d.project)],
    s.GetAlias: lambda d, st: _or_none(lambda: api.alias(
        d.engine.images.get_alias(st.name, project=d.project))),
    s.CreateAlias: lambda d, st: d.engine.images.add_alias(
        st.name, st.target, st.description, project=d.project),
    s.RenameAlias: lambda d, st: d.engine.images.rename_alias(st.name, st.new_name,
                                                              project=d.project),
    s.DeleteAlias: lambda d, st: d.engine.images.delete_alias(st.name, project=d.project),
    s.ListNetworks: lambda d, st: [d._network(n.name) for n in d.engine.networks.all()],
    s.GetNetwork: lambda d, st: _or_none(lambda: d._network(st.name)),
    s.GetNetworkState: lambda d, st: d.engine.networks.state(st.name),
    s.GetNetworkLeases: lambda d, st: [api.network_lease(lease, lease.instance)
                                       for lease in d.engine.networks.leases(st.name)],
    s.CreateNetwork: lambda d, st: d.engine.networks.create(
        st.name, config=dict(st.config), description=st.description, type=st.type),
    s.UpdateNetwork: LocalDriver._update_network,
    s.DeleteNetwork: lambda d, st: d.engine.networks.delete(st.name),
    s.ListOperations: lambda d, st: [op.to_dict() for op in d.engine.operations.all()
                                     if op.project == d.project],
    s.GetOperation: lambda d, st: _or_none(lambda: d.engine.operations.get(st.id).to_dict()),
    s.WaitOperation: LocalDriver._wait_operation,
    s.CancelOperation: lambda d, st: d.engine.operations.get(st.id).cancel(),
    s.ListCertificates: lambda d, st: [api.certificate(c)
                                       for c in d.engine.trust.list_certificates()],
    s.GetCertificate: lambda d, st: _or_none(
        lambda: api.certificate(d.engine.trust.get_certificate(st.fingerprint))),
    s.AddCertificate: lambda d, st: d.engine.trust.add_certificate(st.pem, name=st.name),
    s.DeleteCertificate: lambda d, st: d.engine.trust.delete_certificate(st.fingerprint),
    s.ListProfiles: lambda d, st: [d._profile(p.name) for p in d.engine.profiles.all()],
    s.GetProfile: lambda d, st: _or_none(lambda: d._profile(st.name)),
    s.CreateProfile: lambda d, st: d.engine.profiles.create(
        st.name, config=dict(st.config), devices=dict(st.devices), description=st.description),
    s.UpdateProfile: lambda d, st: d.engine.profiles.update(
        st.name, config=st.config, devices=st.devices, patch=st.patch,
        description=st.description if st.description is not None or st.patch else ""),
    s.RenameProfile: lambda d, st: d.engine.profiles.rename(st.name, st.new_name),
    s.DeleteProfile: lambda d, st: d.engine.profiles.delete(st.name),
    s.GetResources: lambda d, st: d.engine.resources.get(),
    s.GetMetrics: lambda d, st: d.engine.metrics.text(project=st.project),
    ss.ListStoragePools: lambda d, st: [d._pool(p) for p in d.engine.storage.pool_names()],
    ss.ListVolumes: lambda d, st: [d._volume(st.pool, v.name)
                                   for v in d.engine.storage.volumes(st.pool)],
    ss.GetVolume: lambda d, st: _or_none(lambda: d._volume(st.pool, st.name)),
    ss.CreateVolume: lambda d, st: d.engine.storage.create_volume(
        st.pool, st.name, config=dict(st.config), description=st.description),
    ss.UpdateVolume: lambda d, st: d.engine.storage.update_volume(
        st.pool, st.name, config=dict(st.config), description=st.description,
        patch=st.patch),
    ss.RenameVolume: lambda d, st: d.engine.storage.rename_volume(st.pool, st.name,
                                                                  st.new_name),
    ss.DeleteVolume: lambda d, st: d.engine.storage.delete_volume(st.pool, st.name),
    sn.ListSnapshots: lambda d, st: d._snapshots(st.name),
    sn.GetSnapshot: lambda d, st: next((x for x in d._snapshots(st.name)
                                        if x.get("name") == st.snapshot), None),
    sn.CreateSnapshot: lambda d, st: d._wait(d.engine.snapshots.create(
        st.name, st.snapshot, project=d.project)),
    sn.RenameSnapshot: lambda d, st: d._wait(d.engine.snapshots.rename(
        st.name, st.snapshot, st.new_name, project=d.project)),
    sn.DeleteSnapshot: lambda d, st: d._wait(d.engine.snapshots.delete(
        st.name, st.snapshot, project=d.project)),
    sn.RestoreSnapshot: lambda d, st: d._wait(d.engine.snapshots.restore(
        st.name, st.snapshot, project=d.project)),
    cp.CopyInstance: lambda d, st: d._wait(d.engine.copies.copy(
        wcopy.copy_post(st.source, st.name, **st.post_args()), project=d.project)),
    cp.RebuildInstance: lambda d, st: d._wait(d.engine.copies.rebuild(
        st.name, wcopy.rebuild_source(st.image), project=d.project)),
    sp.PublishImage: _publish,
    sp.ExportImage: _export_image,
    sb.ListBackups: lambda d, st: [api.backup(b) for b in d.engine.backups.all(
        st.name, project=d.project)],
    sb.GetBackup: lambda d, st: _or_none(lambda: api.backup(d.engine.backups.get(
        st.name, st.backup, project=d.project))),
    sb.CreateBackup: lambda d, st: d._wait(d.engine.backups.create(
        st.name, st.backup, project=d.project, instance_only=st.instance_only)),
    sb.DeleteBackup: lambda d, st: d._wait(d.engine.backups.delete(
        st.name, st.backup, project=d.project)),
    sb.ExportInstance: lambda d, st: d._export(st),
    sb.ImportInstance: lambda d, st: d._import_backup(st),
}
