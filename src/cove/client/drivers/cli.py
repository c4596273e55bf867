"""``CliDriver``: builds ``lxc`` (or ``cove``) command lines and runs them
through any Transport.

Design notes:

* The driver knows *how* to say things to the command, the transport *where*
  it runs: ``CliDriver(LocalTransport())`` drives this host's ``lxc``;
  ``CliDriver(outer.transport_for("c1"), "cove")`` drives the ``cove``
  inside container c1, and its own transports nest again (lxd-common's
  nesting). Commands are argv lists all the way down, never shell strings.
* Lifecycle uses the everyday commands (``start``, ``stop --force
  --timeout``, ``delete``); reads, creation and updates go through
  ``query``, which both ``lxc`` and ``cove`` have, because it is the one
  command that takes and prints the API's JSON: a create with devices is
  then one atomic request, not ``init`` plus ``config device add``.
* The other resources, call by call: images, aliases, networks,
  operations and certificates are all ``query`` (one request each, the
  API's own JSON in and out, so the answers are what ``RestDriver`` gets;
  the everyday commands print tables, and ``lxc`` and ``cove`` print them
  differently). The one exception is ``import_image``: an upload is a file
  body, which ``query`` cannot send, so it is ``image import FILE`` (staged
  first where the command runs, as file copies are). ``events`` is the one
  call this driver does not have: ``cove`` has no command that prints the
  event stream, and a command run through a Transport cannot be ended
  before its timeout, which a subscription would need.
* Errors: the command reports a failure only as an exit status and a line of
  text. Rather than guess from words, the driver checks first what can be
  checked (names, the image, whether the container exists) and, after a
  failure, asks ``query`` what the state is, to raise ``NotFound`` where it
  applies; anything else is ``InternalError`` with the command's own
  message (LXD's error text).
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cove import api
from cove.client import _wire as wire
from cove.client import _wire_backups as wb
from cove.client import _wire_copies as wcopy
from cove.client import _wire_publish as wpub
from cove.client import _wire_snapshots as wsnap
from cove.client import _wire_storage as wstor
from cove.client._exec import CommandNotFound, ExecResult
from cove.client._http import with_project
from cove.client.drivers import _steps as s
from cove.client.drivers import _steps_backups as sb
from cove.client.drivers import _steps_copies as cp
from cove.client.drivers import _steps_publish as sp
from cove.client.drivers import _steps_snapshots as sn
from cove.client.drivers import _steps_storage as ss
from cove.client.drivers.base import Action, Create, Driver, Progress, Step
from cove.client.transports.base import Transport
from cove.client.transports.cli import CliTransport
from cove.client.transports.local import LocalTransport
from cove.model.errors import BadRequest, InternalError, NotFound
from cove.model.names import validate_instance_name

__all__ = ["CliDriver"]


def _message(result: ExecResult) -> str:
    lines = [ln.strip() for ln in result.stderr.decode("utf-8", "replace").splitlines()
             if ln.strip()]
    text = lines[-1] if lines else f"exit status {result.exit_code}"
    return text.removeprefix("Error: ")


class CliDriver(Driver):
    """The host an ``lxc``-like command talks to, run through ``transport``.

    ``command`` is ``"lxc"``, ``"cove"``, or an argv prefix such as
    ``["cove", "--root", "/srv/cove"]``. ``remote`` prefixes every
    container and API path (``remote:c1``), for ``lxc remote add``-ed hosts.
    ``env`` is added to each command's environment. ``timeout`` bounds
    each command (seconds). ``project`` is given to every command as its
    global ``--project`` (both ``lxc`` and ``cove`` have it).
    """

    def __init__(self, transport: Transport, command: str | Sequence[str] = "lxc", *,
                 remote: str | None = None, env: Mapping[str, str] | None = None,
                 timeout: float | None = 600, project: str | None = None) -> None:
        if not isinstance(transport, Transport):
            raise BadRequest(f"CliDriver runs its commands through a Transport, "
                             f"not {type(transport).__name__}")
        self.transport = transport
        self.command = [command] if isinstance(command, str) else [str(c) for c in command]
        if not self.command or not self.command[0]:
            raise BadRequest("The command of a CliDriver is empty")
        if remote is not None and (not remote or ":" in remote or remote.startswith("-")):
            raise BadRequest(f"Bad remote name {remote!r}")
        self.remote = remote
        self.env = dict(env or {})
        self.timeout = timeout
        if project is not None and (not project or project.startswith("-")):
            raise BadRequest(f"Bad project name {project!r}")
        self.project = project

    def __repr__(self) -> str:
        return f"CliDriver({self.transport!r}, {self.command!r})"

    # -- running the command -------------------------------------------------------
    def target(self, name: str) -> str:
        """``name`` as the command wants it (``remote:name``)."""
        return f"{self.remote}:{name}" if self.remote else name

    def argv(self, *args: str) -> list[str]:
        """The command line of ``args``: the command, ``--project`` when the
        driver has one (not for ``query``: lxc refuses it there, and the
        path carries ``?project=``), then ``args``."""
        scope = ["--project", self.project] if self.project and args[:1] != ("query",) else []
        return [*self.command, *scope, *args]

    def run(self, *args: str, stdin: bytes | None = None, check: bool = True,
            timeout: float | None = None) -> ExecResult:
        """Run the command with ``args``; with ``check``, a non-zero exit raises
        ``InternalError`` carrying the command's error message.

        Raises:
            CommandNotFound: the command itself is not installed where it runs.
        """
        argv = self.argv(*args)
        try:
            result = self.transport.execute(argv, env=self.env, stdin=stdin,
                                            timeout=timeout or self.timeout)
        except CommandNotFound as e:
            raise CommandNotFound(f"{self.command[0]} is not installed where this driver "
                                  f"runs it ({self.transport!r})", argv) from e
        if check and result.exit_code != 0:
            raise InternalError(f"{' '.join([self.command[0], *args[:2]])}: {_message(result)}")
        return result

    def query(self, path: str, *, method: str = "GET", data: Any = None,
              wait: bool = False) -> Any:
        """``<command> query``: one API request; the decoded JSON it prints."""
        args = ["query"]
        if method != "GET":
            args += ["-X", method]
        if data is not None:
            args += ["-d", json.dumps(data)]
        if wait:
            args.append("--wait")
        # lxc's query sends the path as given, whatever --project says
        path = with_project(path, self.project)
        args.append(f"{self.remote}:{path}" if self.remote else path)
        out = self.run(*args).stdout.strip()
        if not out:
            return None
        try:
            return json.loads(out)
        except ValueError:
            raise InternalError(f"{self.command[0]} query {path} printed no JSON: "
                                f"{out[:200]!r}") from None

    # -- steps -------------------------------------------------------------------------
    def find_instance(self, name: str) -> dict[str, Any] | None:
        flt = quote(f"name eq {name}", safe="")
        found = self.query(f"/1.0/instances?recursion=1&filter={flt}") or []
        for inst in found:
            if isinstance(inst, dict) and inst.get("name") == name:
                return inst
        return None

    def _check_image(self, source: Mapping[str, Any]) -> None:
        if source.get("server"):
            return
        images = self.query("/1.0/images?recursion=1") or []
        alias, fp = source.get("alias"), source.get("fingerprint")
        for img in images:
            if alias and any(a.get("name") == alias for a in img.get("aliases") or []):
                return
            if fp and str(img.get("fingerprint", "")).startswith(str(fp)):
                return
        raise NotFound(f"Image not found: {alias or fp}")

    def _do(self, step: Step) -> Any:
        return _PERFORM[type(step)](self, step)

    def _create(self, step: Create) -> None:
        self._check_image(step.post.source.to_wire())
        try:
            self.query("/1.0/instances", method="POST", data=step.post.to_wire(), wait=True)
        except InternalError:
            # Undo: a create that failed half-way leaves no container.
            if self.find_instance(step.name) is not None:
                self.run("delete", "--force", self.target(step.name), check=False)
            raise

    def send(self, req: wire.Request, *, wait: bool = False) -> Any:
        """One ``_wire`` request through ``query``; what it prints, decoded."""
        return self.query(req.path, method=req.method, data=req.body, wait=wait)

    def _list(self, req: wire.Request) -> list[Any]:
        found = self.send(req)
        return found if isinstance(found, list) else []

    def _one(self, req: wire.Request, key: str, value: str, *,
             prefix: bool = False) -> dict[str, Any] | None:
        """The object of a listing whose ``key`` is ``value`` (or starts with
        it), or None: looking, since a failed read says nothing of why."""
        found = [o for o in self._list(req) if isinstance(o, dict) and (
            str(o.get(key, "")).startswith(value) if prefix else o.get(key) == value)]
        if prefix and len(found) > 1:
            exact = [o for o in found if o.get(key) == value]
            if len(exact) != 1:
                raise BadRequest(f"More than one {key} starts with {value!r}")
            found = exact
        return found[0] if found else None

    def _or_missing(self, req: wire.Request, missing: Callable[[], bool], what: str) -> Any:
        """``send(req)``; a failure is ``NotFound`` when ``missing()`` says so."""
        try:
            return self.send(req)
        except InternalError:
            if missing():
                raise NotFound(f"{what} not found") from None
            raise

    @contextlib.contextmanager
    def staged(self, local: Path) -> Iterator[tuple[str, Any]]:
        """A path where the command runs that stands for ``local``, and the
        transport to move things between the two (None: it is ``local``).

        On this host that is ``local`` itself; elsewhere a staging folder,
        removed afterwards, that the driver's own transport copies from or to.
        """
        outer = self.transport
        if isinstance(outer, LocalTransport):
            yield str(local), None
            return
        stage = outer.execute(["mktemp", "-d"]).check().text.strip()
        if not stage.startswith("/"):
            raise InternalError(f"mktemp printed no folder where {self.command[0]} runs")
        try:
            yield stage, outer
        finally:
            outer.execute(["rm", "-rf", "--", stage])

    def _import(self, step: s.ImportImage) -> None:
        local = Path(step.path)
        if step.progress:
            step.progress(Progress("upload"))
        with self.staged(local) as (there, outer):
            src = there
            if outer is not None:
                src = posixpath.join(there, local.name)
                outer.upload_file(local, src)
            args = ["image", "import", src]
            if self.remote:
                args.append(f"{self.remote}:")
            if step.public:
                args.append("--public")
            self.run(*args)
        if step.progress:
            step.progress(Progress("upload", 100))

    def _export_image(self, step: sp.ExportImage) -> list[str]:
        """``image export FP DIR/`` (staged where the command runs, as an
        import is); the files it wrote, copied back."""
        local = Path(step.directory)
        fp = step.fingerprint
        mine = (fp, f"meta-{fp}")
        with self.staged(local) as (there, outer):
            self.run("image", "export", self.target(fp), there.rstrip("/") + "/")
            if outer is not None:
                names = outer.execute(["ls", "-1", "--", there]).check().text.split()
                for name in names:
                    if name.startswith(mine):
                        outer.download_file(posixpath.join(there, name), local / name)
        return sorted(str(local / n) for n in os.listdir(local) if n.startswith(mine))
    def _export_instance(self, step: sb.ExportInstance) -> None:
        """``lxc export`` (or ``cove export``) into a staging file, then here."""
        local = Path(step.path)
        with self.staged(local) as (there, outer):
            dst = there if outer is None else posixpath.join(there, local.name)
            self.run("export", self.target(step.name), dst,
                     *(["--instance-only"] if step.instance_only else []))
            if outer is not None:
                outer.download_file(dst, local)

    def _import_backup(self, step: sb.ImportInstance) -> None:
        local = Path(step.path)
        with self.staged(local) as (there, outer):
            src = there
            if outer is not None:
                src = posixpath.join(there, local.name)
                outer.upload_file(local, src)
            cove = posixpath.basename(self.command[0]) == "cove"
            self.run("import", *([] if cove or not self.remote else [f"{self.remote}:"]),
                     src, step.name)

    def _wait_operation(self, step: s.WaitOperation) -> Any:
        return self._or_missing(
            wire.wait_operation(step.id, step.timeout),
            lambda: all(o.get("id") != step.id for o in _operations(self)),
            f"Operation {step.id}")

    def _action(self, step: Action) -> None:
        target = self.target(step.name)
        if step.action == "start":
            self._or_not_found(step.name, "start", target)
        elif step.action == "stop":
            args = ["stop", target]
            if step.force:
                args.append("--force")
            if step.timeout >= 0:
                args += ["--timeout", str(step.timeout)]
            self._or_not_found(step.name, *args)
        else:  # freeze / unfreeze: the two commands spell these differently
            self.query(f"/1.0/instances/{quote(step.name, safe='')}/state", method="PUT",
                       data=api.InstanceStatePut(action=step.action, timeout=step.timeout,
                                                 force=step.force).to_wire(), wait=True)

    def _or_not_found(self, name: str, *args: str) -> None:
        try:
            self.run(*args)
        except InternalError:
            if self.find_instance(name) is None:
                raise NotFound(f"Instance not found: {name}") from None
            raise

    def transport_for(self, name: str) -> CliTransport:
        return CliTransport(self, validate_instance_name(name))


def _publish(d: CliDriver, st: sp.PublishImage) -> str:
    md = d.send(wpub.publish(st.source, st.aliases, st.properties, st.public), wait=True)
    # lxc query --wait prints the operation, cove query its metadata
    if isinstance(md, dict) and isinstance(md.get("metadata"), dict):
        md = md["metadata"]
    fp = md.get("fingerprint") if isinstance(md, dict) else None
    if not fp:
        raise InternalError(f"{d.command[0]} query: the publish named no fingerprint")
    return str(fp)


def _change(d: CliDriver, req: wire.Request) -> object:
    """A change: sent, and waited for when the host answers with an operation.
    (A change's step returns nothing: None.)"""
    d.send(req, wait=True)
    return None


def _operations(d: CliDriver) -> list[dict[str, Any]]:
    return wire.operations_in(d.send(wire.operations()))


def _state(d: CliDriver, step: s.GetState) -> Any:
    return d._or_missing(wire.instance_state(step.name),
                         lambda: d.find_instance(step.name) is None, f"Instance {step.name}")


def _network_sub(d: CliDriver, name: str, sub: str) -> Any:
    return d._or_missing(wire.network(name, sub),
                         lambda: d._one(wire.networks(1), "name", name) is None,
                         f"Network {name}")


def _metrics(d: CliDriver, project: str | None) -> str:
    """The metrics are text, not JSON: ``cove metrics``, or ``lxc query --raw``."""
    if posixpath.basename(d.command[0]) == "cove":
        args = ["metrics", *(["--project", project] if project else [])]
    else:
        path = "/1.0/metrics" + (f"?project={quote(project, safe='')}" if project else "")
        args = ["query", "--raw", f"{d.remote}:{path}" if d.remote else path]
    return d.run(*args).stdout.decode("utf-8", "replace")
def _volumes(d: CliDriver, pool: str) -> list[Any]:
    """The custom volumes of ``pool``; NotFound when there is no such pool."""
    found = d._or_missing(wstor.volumes(pool),
                          lambda: d._one(wstor.storage_pools(1), "name", pool) is None,
                          f"Storage pool {pool}")
    return found if isinstance(found, list) else []


# How each step is said to the command (see the module notes).
def _snapshots(d: CliDriver, name: str) -> list[Any]:
    """The instance's snapshots; NotFound when there is no such instance."""
    found = d._or_missing(wsnap.snapshots(name), lambda: d.find_instance(name) is None,
                          f"Instance {name}")
    return list(found) if isinstance(found, list) else []


def _backups(d: CliDriver, name: str) -> list[Any]:
    """The instance's backups; NotFound when there is no such instance."""
    found = d._or_missing(wb.backups(name), lambda: d.find_instance(name) is None,
                          f"Instance {name}")
    return list(found) if isinstance(found, list) else []


_PERFORM: dict[type, Callable[[CliDriver, Any], Any]] = {
    s.GetInstance: lambda d, st: d.find_instance(st.name),
    s.GetState: _state,
    s.ListInstances: lambda d, st: d._list(wire.instances(1)),
    s.Create: CliDriver._create,
    s.Update: lambda d, st: _change(d, wire.update_instance(
        st.name, api.InstancePut.from_wire(st.body), patch=st.patch)),
    s.Action: CliDriver._action,
    s.Delete: lambda d, st: d._or_not_found(st.name, "delete", d.target(st.name)),
    s.Rename: lambda d, st: _change(d, wire.rename_instance(st.name, st.new_name)),
    s.RunCommand: lambda d, st: d._command_in(st),
    s.ListImages: lambda d, st: d._list(wire.images()),
    s.GetImage: lambda d, st: d._one(wire.images(), "fingerprint", st.fingerprint,
                                     prefix=True),
    s.ImportImage: CliDriver._import,
    s.UpdateImage: lambda d, st: _change(d, wire.update_image(
        st.fingerprint, properties=st.properties, public=st.public)),
    s.DeleteImage: lambda d, st: _change(d, wire.delete_image(st.fingerprint)),
    s.ListAliases: lambda d, st: d._list(wire.aliases()),
    s.GetAlias: lambda d, st: d._one(wire.aliases(), "name", st.name),
    s.CreateAlias: lambda d, st: _change(d, wire.create_alias(st.name, st.target,
                                                            st.description)),
    s.RenameAlias: lambda d, st: _change(d, wire.rename_alias(st.name, st.new_name)),
    s.DeleteAlias: lambda d, st: _change(d, wire.delete_alias(st.name)),
    s.ListNetworks: lambda d, st: d._list(wire.networks(1)),
    s.GetNetwork: lambda d, st: d._one(wire.networks(1), "name", st.name),
    s.GetNetworkState: lambda d, st: _network_sub(d, st.name, "state"),
    s.GetNetworkLeases: lambda d, st: _network_sub(d, st.name, "leases") or [],
    s.CreateNetwork: lambda d, st: _change(d, wire.create_network(
        st.name, st.config, description=st.description, type=st.type)),
    s.UpdateNetwork: lambda d, st: _change(d, wire.update_network(
        st.name, config=st.config, description=st.description, patch=st.patch)),
    s.DeleteNetwork: lambda d, st: _change(d, wire.delete_network(st.name)),
    s.ListOperations: lambda d, st: _operations(d),
    s.GetOperation: lambda d, st: next((o for o in _operations(d) if o.get("id") == st.id),
                                       None),
    s.WaitOperation: CliDriver._wait_operation,
    s.CancelOperation: lambda d, st: _change(d, wire.cancel_operation(st.id)),
    s.ListCertificates: lambda d, st: d._list(wire.certificates(1)),
    s.GetCertificate: lambda d, st: d._one(wire.certificates(1), "fingerprint",
                                           st.fingerprint, prefix=True),
    s.AddCertificate: lambda d, st: _change(d, wire.add_certificate(st.pem, name=st.name)),
    s.DeleteCertificate: lambda d, st: _change(d, wire.delete_certificate(st.fingerprint)),
    s.ListProfiles: lambda d, st: d._list(wire.profiles(1)),
    s.GetProfile: lambda d, st: d._one(wire.profiles(1), "name", st.name),
    s.CreateProfile: lambda d, st: _change(d, wire.create_profile(
        st.name, st.config, st.devices, description=st.description)),
    s.UpdateProfile: lambda d, st: _change(d, wire.update_profile(
        st.name, config=st.config, devices=st.devices, description=st.description,
        patch=st.patch)),
    s.RenameProfile: lambda d, st: _change(d, wire.rename_profile(st.name, st.new_name)),
    s.DeleteProfile: lambda d, st: _change(d, wire.delete_profile(st.name)),
    s.GetResources: lambda d, st: d.query("/1.0/resources"),
    s.GetMetrics: lambda d, st: _metrics(d, st.project),
    ss.ListStoragePools: lambda d, st: d._list(wstor.storage_pools(1)),
    ss.ListVolumes: lambda d, st: _volumes(d, st.pool),
    ss.GetVolume: lambda d, st: next((v for v in _volumes(d, st.pool)
                                      if v.get("name") == st.name), None),
    ss.CreateVolume: lambda d, st: _change(d, wstor.create_volume(
        st.pool, st.name, st.config, description=st.description)),
    ss.UpdateVolume: lambda d, st: _change(d, wstor.update_volume(
        st.pool, st.name, config=st.config, description=st.description, patch=st.patch)),
    ss.RenameVolume: lambda d, st: _change(d, wstor.rename_volume(st.pool, st.name,
                                                                  st.new_name)),
    ss.DeleteVolume: lambda d, st: _change(d, wstor.delete_volume(st.pool, st.name)),
    sn.ListSnapshots: lambda d, st: _snapshots(d, st.name),
    sn.GetSnapshot: lambda d, st: next((x for x in _snapshots(d, st.name)
                                        if x.get("name") == st.snapshot), None),
    sn.CreateSnapshot: lambda d, st: _change(d, wsnap.create_snapshot(st.name, st.snapshot)),
    sn.RenameSnapshot: lambda d, st: _change(d, wsnap.rename_snapshot(st.name, st.snapshot,
                                                                      st.new_name)),
    sn.DeleteSnapshot: lambda d, st: _change(d, wsnap.delete_snapshot(st.name, st.snapshot)),
    sn.RestoreSnapshot: lambda d, st: _change(d, wsnap.restore_snapshot(st.name, st.snapshot)),
    cp.CopyInstance: lambda d, st: _change(d, wcopy.copy_instance(st.source, st.name,
                                                                  **st.post_args())),
    cp.RebuildInstance: lambda d, st: _change(d, wcopy.rebuild_instance(st.name, st.image)),
    sp.PublishImage: _publish,
    sp.ExportImage: CliDriver._export_image,
    sb.ListBackups: lambda d, st: _backups(d, st.name),
    sb.GetBackup: lambda d, st: next((x for x in _backups(d, st.name)
                                      if x.get("name") == st.backup), None),
    sb.CreateBackup: lambda d, st: _change(d, wb.create_backup(
        st.name, st.backup, instance_only=st.instance_only)),
    sb.DeleteBackup: lambda d, st: _change(d, wb.delete_backup(st.name, st.backup)),
    sb.ExportInstance: CliDriver._export_instance,
    sb.ImportInstance: CliDriver._import_backup,
}
