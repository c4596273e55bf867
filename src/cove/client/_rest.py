"""The REST driver: typed calls over the LXD API 1.0, as coved serves it.

Design notes:

* Plain data: calls return the LXD objects as dicts (the wire schema) and
  never hide a network call behind attribute access. ``Operation`` is the one
  object with behaviour; ``wait()`` and ``refresh()`` are explicit calls.
* Long actions (create, state changes, rename, delete, exec, image import)
  return an ``Operation``; the caller decides when to ``wait()``. A server
  that answers such a call synchronously gets a finished ``Operation`` built
  from its answer, so callers need not care.
* An operation that ends in ``Failure`` raises on ``wait()``. LXD's
  operation carries only the message (``err``); cove's server adds the HTTP
  status of the error as ``error_code`` beside it, and the client maps that
  back to the same ``CoveError`` subclass. Without it, ``InternalError``.
* Exec follows LXD: ``POST .../exec`` with ``wait-for-websocket``, then one
  websocket per fd secret (``control`` first), stdin EOF sent as a text
  barrier ``{"command": "end"}`` (any text frame ends stdin for LXD) then a
  close on fd 0 when it carries stdin only; output streams end on a text or
  close frame; the exit code is ``metadata.return`` of the finished
  operation.
"""

from __future__ import annotations

import os

from cove import api
from cove.client import _wire as wire
from cove.client import _wire_snapshots as wsnap
from cove.client import _wire_storage as wstor
from cove.client._exec import ExecResult
from cove.client._exec_session import ExecSession
from cove.client._http import HttpTransport, Response, UnixTransport, parse_envelope
from cove.client._url import quote, urlencode
from cove.client._wire import InstanceFile
from cove.model.errors import BadRequest, InternalError, Timeout, error_for_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from typing import Any, BinaryIO, Self

    from cove.client._console import ConsoleSession
    from cove.client._ws import WebSocket

__all__ = [
    "Client",
    "ExecResult",
    "ExecSession",
    "InstanceFile",
    "Operation",
    "default_socket_path",
]

DEFAULT_ROOT = "/var/lib/cove"
_FINAL = ("Success", "Failure", "Cancelled")
NAME_EXTENSION = "cove_exec_user_name"  # the server resolves exec user/group names


def default_socket_path() -> str:
    """``$COVE_DIR/unix.socket`` (COVE_DIR defaults to /var/lib/cove)."""
    return os.path.join(os.environ.get("COVE_DIR") or DEFAULT_ROOT, "unix.socket")


def _q(name: str) -> str:
    return quote(name, safe="")


def _error_code(op: dict[str, Any]) -> int:
    """The HTTP status of a failed operation: cove puts it in the metadata
    (``cove.error_code``), where LXD clients that do not know it ignore it."""
    meta = op.get("metadata") or {}
    raw = meta.get("cove.error_code") if isinstance(meta, dict) else None
    try:
        return int(raw or op.get("error_code") or 0)
    except (TypeError, ValueError):
        return 0


class Operation:
    """A long action on the server (LXD's operation object).

    Fields mirror the wire form: ``id``, ``cls`` (``class``: task, websocket
    or token), ``description``, ``status``, ``status_code``, ``metadata``,
    ``err``, ``resources``, ``error_code`` (cove: the HTTP status of the
    failure, 0 when unknown).
    """

    __slots__ = (
        "_client",
        "cls",
        "created_at",
        "description",
        "err",
        "error_code",
        "id",
        "may_cancel",
        "metadata",
        "resources",
        "status",
        "status_code",
        "updated_at",
    )

    def __init__(self, id: str, cls: str = "task", status: str = "Running",
                 status_code: int = 103, metadata: dict[str, Any] | None = None, err: str = "",
                 resources: dict[str, list[str]] | None = None, description: str = "",
                 error_code: int = 0, may_cancel: bool = False, created_at: str = "",
                 updated_at: str = "", client: Client | None = None) -> None:
        self.id = id
        self.cls = cls
        self.description = description
        self.status = status
        self.status_code = status_code
        self.metadata = metadata or {}
        self.err = err
        self.resources = resources or {}
        self.error_code = error_code
        self.may_cancel = may_cancel
        self.created_at = created_at
        self.updated_at = updated_at
        self._client = client

    @classmethod
    def from_dict(cls, d: dict[str, Any], client: Client | None = None) -> Operation:
        return cls(
            id=str(d.get("id", "")), cls=str(d.get("class", "task")),
            status=str(d.get("status", "")), status_code=int(d.get("status_code") or 0),
            metadata=d.get("metadata") or {}, err=str(d.get("err") or ""),
            resources=d.get("resources") or {}, description=str(d.get("description", "")),
            error_code=_error_code(d), may_cancel=bool(d.get("may_cancel")),
            created_at=str(d.get("created_at", "")), updated_at=str(d.get("updated_at", "")),
            client=client)

    def _update(self, other: Operation) -> None:
        for slot in self.__slots__:
            if slot != "_client":
                setattr(self, slot, getattr(other, slot))

    def update_from(self, wire: dict[str, Any]) -> None:
        """Take the state of this operation from its wire form (a wait's answer)."""
        self._update(Operation.from_dict(wire))

    @property
    def done(self) -> bool:
        return self.status in _FINAL

    def raise_for_error(self) -> None:
        """Raise the failure as a CoveError if the operation failed or was cancelled."""
        if self.status == "Failure":
            msg = self.err or f"Operation {self.id} failed"
            raise error_for_status(self.error_code, msg) if self.error_code else InternalError(msg)
        if self.status == "Cancelled":
            raise InternalError(self.err or f"Operation {self.id} was cancelled")

    def wait(self, timeout: float | None = None) -> Operation:
        """Block until the operation ends, update this object, return it.

        Raises:
            Timeout: it did not end within ``timeout`` seconds.
            CoveError: it failed (the class its ``error_code`` names).
        """
        if not self.done:
            if self._client is None:
                raise InternalError(f"Operation {self.id} has no client to wait with")
            self._update(self._client.wait_operation(self.id, timeout, raise_error=False))
        self.raise_for_error()
        return self

    def refresh(self) -> Operation:
        """Fetch the current state from the server."""
        if self._client is not None and self.id:
            self._update(self._client.operation(self.id))
        return self

    def __repr__(self) -> str:
        return f"<Operation {self.id} {self.cls} {self.status}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Operation):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__
                   if s != "_client")

    __hash__ = None  # type: ignore[assignment]


class Client:
    """A cove (or LXD) server over its unix socket.

    Every call raises ``ConnectionFailed`` when the daemon cannot be reached
    and the ``CoveError`` subclass matching the server's error otherwise.
    """

    def __init__(self, socket_path: str | None = None, *,
                 transport: HttpTransport | None = None, project: str | None = None) -> None:
        """``project``: every request is in that LXD project (``?project=``)."""
        self.transport: HttpTransport = transport or UnixTransport(
            socket_path or default_socket_path())
        if project is not None:
            self.transport.project = project
        self.socket_path = self.transport.endpoint

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        """Open a connection now (kept for the next call) to check the daemon listens."""
        self.transport.connect()

    # -- plumbing -------------------------------------------------------------
    def raw(self, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None,
            progress: Callable[[int, int | None], None] | None = None) -> Response:
        """One request, whole answer, no envelope parsing (for odd endpoints)."""
        return self.transport.request(method, path, body, headers, progress=progress)

    def send(self, req: wire.Request,
             progress: Callable[[int, int | None], None] | None = None) -> Response:
        """Send one ``cove.client._wire.Request``; the whole answer, unparsed."""
        return self.transport.request(req.method, req.path, req.body, req.headers or None,
                                      progress=progress)

    def _sync(self, method: str, path: str, body: Any = None) -> Any:
        return parse_envelope(self.raw(method, path, body)).get("metadata")

    def _get_dict(self, path: str) -> dict[str, Any]:
        md = self._sync("GET", path)
        if not isinstance(md, dict):
            raise InternalError(f"GET {path}: the server sent no object")
        return md

    def _get_list(self, path: str) -> list[Any]:
        md = self._sync("GET", path)
        if md is None:
            return []
        if not isinstance(md, list):
            raise InternalError(f"GET {path}: the server sent no list")
        return md

    def _op(self, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None,
            progress: Callable[[int, int | None], None] | None = None) -> Operation:
        return Operation.from_dict(
            wire.operation_of(self.raw(method, path, body, headers, progress)), self)

    def _send_op(self, req: wire.Request) -> Operation:
        return self._op(req.method, req.path, req.body, req.headers or None)
    send_op = _send_op  # a request built beside this module (``_wire_copies``), as an op

    # -- server -----------------------------------------------------------------
    def server(self) -> dict[str, Any]:
        """``GET /1.0``: api version, extensions, environment."""
        return self._get_dict(wire.server().path)

    def update_server(self, config: dict[str, Any], *, patch: bool = True) -> None:
        """``PATCH /1.0`` (merge; an empty value removes a key) or ``PUT`` (replace)
        the server's config, e.g. ``{"core.https_address": ":8443"}``."""
        wire.metadata(self.send(wire.update_server(config, patch=patch)))

    def metrics(self, project: str | None = None) -> str:
        """``GET /1.0/metrics``: LXD's metrics, Prometheus text (``project``: one only)."""
        path = "/1.0/metrics" + ("?" + urlencode({"project": project}) if project else "")
        resp = self.raw("GET", path)
        if resp.status >= 400:
            parse_envelope(resp)
        return resp.body.decode("utf-8", "replace")

    def resources(self) -> dict[str, Any]:
        """``GET /1.0/resources``: the host's CPUs, memory, NICs and disks."""
        return self._get_dict("/1.0/resources")

    # -- trusted certificates ------------------------------------------------------
    def certificates(self) -> list[dict[str, Any]]:
        """``GET /1.0/certificates?recursion=1``: fingerprint, name, type, PEM."""
        return wire.as_list(self.send(wire.certificates()), "certificates")

    def add_certificate(self, certificate_pem: str, *, name: str = "",
                        type: str = "client") -> None:
        """Trust a client certificate (``POST /1.0/certificates``)."""
        wire.metadata(self.send(wire.add_certificate(certificate_pem, name=name, type=type)))

    def delete_certificate(self, fingerprint: str) -> None:
        """Stop trusting it (a unique fingerprint prefix will do)."""
        wire.metadata(self.send(wire.delete_certificate(fingerprint)))

    # -- instances ----------------------------------------------------------------
    def instances(self, recursion: int = 1, fields: list[str] | None = None,
                  keys: list[str] | None = None) -> list[Any]:
        """``GET /1.0/instances?recursion=N``: URLs (0), objects (1), with state
        (2); ``keys``: only these of each (a server may send more)."""
        return self._get_list(wire.instances(recursion, fields, keys).path)

    def instance(self, name: str) -> dict[str, Any]:
        return self._get_dict(wire.instance(name).path)

    def instance_state(self, name: str) -> dict[str, Any]:
        return self._get_dict(wire.instance_state(name).path)

    def create_instance(self, name: str | None,
                        source: api.InstanceSource | Mapping[str, Any], *,
                        config: dict[str, str] | None = None,
                        devices: dict[str, dict[str, str]] | None = None,
                        ephemeral: bool = False, profiles: list[str] | None = None,
                        description: str = "", start: bool = False) -> Operation:
        """``POST /1.0/instances``. ``source`` is an ``api.InstanceSource`` or its
        wire form (``{"type": "image", "alias": A}``, ``{"type": "image",
        "fingerprint": F}``). A None name lets the server pick. ``start`` makes
        and starts it in one operation (LXD's ``instance_create_start``)."""
        if not isinstance(source, api.InstanceSource):
            source = api.InstanceSource.from_wire(source)
        return self.create(api.InstancesPost(
            name=name or "", source=source, config=config, devices=devices,
            ephemeral=ephemeral, profiles=profiles, description=description, start=start))

    def create(self, post: api.InstancesPost) -> Operation:
        """``POST /1.0/instances`` with the request as a class (see ``create_instance``)."""
        return self._send_op(wire.create_instance(post))

    def update_instance(self, name: str, put: api.InstancePut | Mapping[str, Any], *,
                        patch: bool = False) -> Operation:
        """``PUT`` (replace) or ``PATCH`` (merge) ``/1.0/instances/NAME`` with the
        fields ``put`` sets (an ``api.InstancePut`` or its wire form)."""
        if not isinstance(put, api.InstancePut):
            put = api.InstancePut.from_wire(put)
        return self._send_op(wire.update_instance(name, put, patch=patch))

    def rename_instance(self, name: str, new_name: str) -> Operation:
        return self._send_op(wire.rename_instance(name, new_name))

    def delete_instance(self, name: str, force: bool = False) -> Operation:
        return self._send_op(wire.delete_instance(name, force))

    def change_state(self, name: str, action: str, *, timeout: int = -1, force: bool = False,
                     stateful: bool = False, command: list[str] | None = None) -> Operation:
        """``PUT /1.0/instances/NAME/state``: start, stop, restart, freeze, unfreeze;
        ``timeout`` -1: no limit; ``command``: start once with it (cove's)."""
        return self._send_op(wire.change_state(name, action, timeout=timeout, force=force,
                                               stateful=stateful, command=command))

    # -- exec ---------------------------------------------------------------------
    def exec_start(self, name: str, command: list[str], *,
                   environment: dict[str, str] | None = None,
                   user: int | str | None = None, group: int | str | None = None,
                   cwd: str | None = None, interactive: bool = False, stopped: bool = False,
                   width: int | None = None, height: int | None = None) -> ExecSession:
        """Start ``command`` and connect its websockets; run it with ``.run()``.

        ``user``/``group`` are sent as given: an int is a uid/gid, a str a
        name the server resolves inside the instance (cove's ``user-name``).

        Raises:
            BadRequest: a name for a server that does not resolve names (LXD
                would ignore the field and run the command as root).
        """
        if isinstance(user, str) or isinstance(group, str):
            self._require_extension(NAME_EXTENSION, "resolve user and group names: give "
                                    "a uid/gid (or use a cove server)")
        op = self._send_op(wire.exec_command(
            name, command, environment=environment, user=user, group=group, cwd=cwd,
            interactive=interactive, width=width, height=height, stopped=stopped))
        fds = op.metadata.get("fds") or {}
        names = ["control", "0"] if interactive else ["control", "0", "1", "2"]
        missing = [n for n in names if n not in fds]
        if missing:
            raise InternalError(f"exec answer lacks websocket secrets for {', '.join(missing)}")
        from cove.client._ws import WebSocket

        # All upgrade requests go out before the first reply is read: one
        # round trip to the server for the four websockets, not four.
        socks: list[Any] = []
        try:
            for _ in names:
                socks.append(self.transport.open_socket())
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        paths = [self._websocket_path(op.id, str(fds[n])) for n in names]
        sockets = dict(zip(names, WebSocket.connect_many(socks, paths), strict=True))
        return ExecSession(op, sockets, interactive, self.transport)

    def exec(self, name: str, command: list[str], *, environment: dict[str, str] | None = None,
             user: int | str | None = None, group: int | str | None = None,
             cwd: str | None = None, interactive: bool = False, width: int | None = None,
             height: int | None = None, stdin: Any = None, stdout: Any = None,
             stderr: Any = None) -> ExecResult:
        """Run ``command`` to its end and return how it ended.

        ``stdin`` is None (no input), bytes, an fd or a binary file object.
        ``stdout``/``stderr`` are an fd or a binary file object to stream to,
        or None to capture into the result.

        Raises:
            CoveError: the instance is missing or not running, or exec failed.
        """
        session = self.exec_start(name, command, environment=environment, user=user,
                                  group=group, cwd=cwd, interactive=interactive,
                                  width=width, height=height)
        return session.run(stdin, stdout, stderr)

    def _require_extension(self, extension: str, what: str) -> None:
        """Raises BadRequest if the server lacks ``extension`` (one GET /1.0)."""
        extensions = self.server().get("api_extensions") or []
        if extension not in extensions:
            raise BadRequest(f"This server does not {what}")

    def websocket(self, op_id: str, secret: str) -> WebSocket:
        """Connect to ``/1.0/operations/ID/websocket?secret=S``."""
        from cove.client._ws import WebSocket

        sock = self.transport.open_socket()
        return WebSocket.connect(sock, self._websocket_path(op_id, secret))

    @staticmethod
    def _websocket_path(op_id: str, secret: str) -> str:
        return f"/1.0/operations/{_q(op_id)}/websocket?{urlencode({'secret': secret})}"

    # -- files ----------------------------------------------------------------------
    def file_get(self, name: str, path: str) -> InstanceFile:
        """``GET .../files?path=P``: a file's bytes, a directory's names, a link's target."""
        return wire.instance_file(self.send(wire.file_get(name, path)), path)

    def file_put(self, name: str, path: str, data: bytes | BinaryIO | None = None, *,
                 uid: int | None = None, gid: int | None = None, mode: int | None = None,
                 type: str = "file", write: str = "overwrite",
                 progress: Callable[[int, int | None], None] | None = None) -> None:
        """``POST .../files?path=P`` with X-LXD-type/uid/gid/mode/write headers.

        For ``type="symlink"`` ``data`` is the link target; for a directory
        it is ignored.
        """
        req = wire.file_put(name, path, data, uid=uid, gid=gid, mode=mode, type=type,
                            write=write)
        parse_envelope(self.send(req, progress))

    def file_delete(self, name: str, path: str) -> None:
        parse_envelope(self.send(wire.file_delete(name, path)))

    # -- logs ----------------------------------------------------------------------
    def logs(self, name: str) -> bytes:
        """The instance's console log, ``GET .../logs/console.log`` (plain text)."""
        resp = self.raw("GET", f"/1.0/instances/{_q(name)}/logs/console.log")
        if resp.status >= 400:
            parse_envelope(resp)
        return resp.body

    def console_log(self, name: str) -> bytes:
        """``GET .../console``: the console log as LXD serves it (raw bytes)."""
        resp = self.raw("GET", f"/1.0/instances/{_q(name)}/console")
        if resp.status >= 400:
            parse_envelope(resp)
        return resp.body

    def clear_console_log(self, name: str) -> None:
        """``DELETE .../console``: empty the console log."""
        parse_envelope(self.raw("DELETE", f"/1.0/instances/{_q(name)}/console"))

    def console(self, name: str, width: int = 0, height: int = 0) -> ConsoleSession:
        """Attach to the console (``POST .../console``, then its websockets
        ``control`` and ``0``); copy with ``.run()``.

        Raises:
            CoveError: no such instance, not running, no console (an
                application container), or another client is attached.
        """
        from cove.client._console import ConsoleSession

        op = self._op("POST", f"/1.0/instances/{_q(name)}/console",
                      api.InstanceConsolePost(width=width, height=height).to_wire(), None)
        fds = op.metadata.get("fds") or {}
        if "0" not in fds or "control" not in fds:
            raise InternalError("console answer lacks websocket secrets")
        sockets: dict[str, WebSocket] = {}
        try:
            for n in ("control", "0"):  # as lxc: control first
                sockets[n] = self.websocket(op.id, str(fds[n]))
        except BaseException:
            for ws in sockets.values():
                ws.abort()
            raise
        return ConsoleSession(op, sockets)

    def follow_logs(self, name: str) -> Iterator[bytes]:
        """The console log, then new output as it comes (``?follow=1``) until
        the server ends the stream."""
        stream = self.transport.stream(
            "GET", f"/1.0/instances/{_q(name)}/logs/console.log?follow=1")
        if stream.status >= 400:
            body = stream.read()
            parse_envelope(Response(stream.status, stream.headers, body))
        return iter(stream)

    # -- networks (LXD answers these synchronously) --------------------------------------
    def networks(self) -> list[dict[str, Any]]:
        """``GET /1.0/networks?recursion=1``: every managed network."""
        return self._get_list(wire.networks(1).path)

    def network(self, name: str) -> dict[str, Any]:
        return self._get_dict(wire.network(name).path)

    def network_state(self, name: str) -> dict[str, Any]:
        return self._get_dict(wire.network(name, "state").path)

    def network_leases(self, name: str) -> list[dict[str, Any]]:
        return self._get_list(wire.network(name, "leases").path)

    def create_network(self, name: str, config: dict[str, str] | None = None, *,
                       description: str = "", type: str = "bridge") -> None:
        """Make a bridge network; ``ipv4.address`` defaults to ``auto`` (a free subnet)."""
        wire.metadata(self.send(wire.create_network(name, config, description=description,
                                                    type=type)))

    def update_network(self, name: str, *, config: dict[str, str] | None = None,
                       description: str | None = None, patch: bool = True) -> None:
        wire.metadata(self.send(wire.update_network(name, config=config,
                                                    description=description, patch=patch)))

    def delete_network(self, name: str) -> None:
        """Refused (BadRequest) while the default profile or an instance uses it."""
        wire.metadata(self.send(wire.delete_network(name)))

    # -- profiles (LXD answers these synchronously) -------------------------------------
    def profiles(self) -> list[dict[str, Any]]:
        """``GET /1.0/profiles?recursion=1``: every profile, with ``used_by``."""
        return self._get_list(wire.profiles(1).path)

    def profile(self, name: str) -> dict[str, Any]:
        return self._get_dict(wire.profile(name).path)

    def create_profile(self, name: str, config: dict[str, str] | None = None,
                       devices: dict[str, dict[str, str]] | None = None, *,
                       description: str = "") -> None:
        wire.metadata(self.send(wire.create_profile(name, config, devices,
                                                    description=description)))

    def update_profile(self, name: str, *, config: dict[str, str] | None = None,
                       devices: dict[str, dict[str, str]] | None = None,
                       description: str | None = None, patch: bool = True) -> None:
        """PATCH merges the fields sent; PUT replaces the profile (absent: empty)."""
        wire.metadata(self.send(wire.update_profile(
            name, config=config, devices=devices, description=description, patch=patch)))

    def rename_profile(self, name: str, new_name: str) -> None:
        wire.metadata(self.send(wire.rename_profile(name, new_name)))

    def delete_profile(self, name: str) -> None:
        """Refused (BadRequest) while an instance uses it; ``default`` never goes."""
        wire.metadata(self.send(wire.delete_profile(name)))
    # -- storage (LXD answers these synchronously) -------------------------------------
    def storage_pools(self) -> list[dict[str, Any]]:
        """``GET /1.0/storage-pools?recursion=1``."""
        return self._get_list(wstor.storage_pools(1).path)

    def storage_pool(self, pool: str, sub: str = "") -> dict[str, Any]:
        """A pool, or (``sub="resources"``) its space and inodes."""
        return self._get_dict(wstor.storage_pool(pool, sub).path)

    def volumes(self, pool: str) -> list[dict[str, Any]]:
        """The custom volumes of ``pool``, as objects."""
        return self._get_list(wstor.volumes(pool).path)

    def volume(self, pool: str, name: str) -> dict[str, Any]:
        return self._get_dict(wstor.volume(pool, name).path)

    def create_volume(self, pool: str, name: str, config: dict[str, str] | None = None, *,
                      description: str = "") -> None:
        """Make an empty custom volume (Conflict when the name is taken)."""
        wire.metadata(self.send(wstor.create_volume(pool, name, config,
                                                    description=description)))

    def update_volume(self, pool: str, name: str, *, config: dict[str, str] | None = None,
                      description: str | None = None, patch: bool = True) -> None:
        wire.metadata(self.send(wstor.update_volume(pool, name, config=config,
                                                    description=description, patch=patch)))

    def rename_volume(self, pool: str, name: str, new_name: str) -> None:
        """Refused (BadRequest) while a running instance uses it."""
        wire.metadata(self.send(wstor.rename_volume(pool, name, new_name)))

    def delete_volume(self, pool: str, name: str) -> None:
        """Refused (BadRequest) while an instance uses it."""
        wire.metadata(self.send(wstor.delete_volume(pool, name)))

    # -- snapshots ---------------------------------------------------------------------
    def snapshots(self, name: str) -> list[dict[str, Any]]:
        """The instance's snapshots, as LXD's ``InstanceSnapshot`` objects."""
        return self._get_list(wsnap.snapshots(name, 1).path)

    def create_snapshot(self, name: str, snap: str = "") -> Operation:
        """``snap`` "": named by the server (``snapshots.pattern``)."""
        return self._send_op(wsnap.create_snapshot(name, snap))

    def rename_snapshot(self, name: str, snap: str, new_name: str) -> Operation:
        return self._send_op(wsnap.rename_snapshot(name, snap, new_name))

    def delete_snapshot(self, name: str, snap: str) -> Operation:
        return self._send_op(wsnap.delete_snapshot(name, snap))

    def restore_snapshot(self, name: str, snap: str) -> Operation:
        """A running instance is stopped and started again around it."""
        return self._send_op(wsnap.restore_snapshot(name, snap))

    # -- images ----------------------------------------------------------------------
    def images(self) -> list[dict[str, Any]]:
        return self._get_list(wire.images().path)

    def image(self, fingerprint: str) -> dict[str, Any]:
        return self._get_dict(wire.image(fingerprint).path)

    def import_image(self, source: str | BinaryIO, *, aliases: list[str] | tuple[str, ...] = (),
                     public: bool = False, filename: str | None = None,
                     progress: Callable[[int, int | None], None] | None = None) -> str:
        """Upload an image tarball (a path or a binary file), wait, add aliases.

        ``POST /1.0/images`` with the tarball as the body and X-LXD-filename /
        X-LXD-public headers; then ``POST /1.0/images/aliases`` per alias.
        Returns the new image's fingerprint.
        """
        own = isinstance(source, str)
        f: BinaryIO = open(source, "rb") if isinstance(source, str) else source  # noqa: SIM115
        try:
            fname = filename or os.path.basename(str(getattr(f, "name", ""))) or "image.tar"
            headers = {"Content-Type": "application/octet-stream",
                       "X-LXD-filename": fname, "X-LXD-public": "1" if public else "0"}
            op = self._op("POST", "/1.0/images", f, headers, progress=progress)
        finally:
            if own:
                f.close()
        op.wait()
        fp = str(op.metadata.get("fingerprint") or "")
        if not fp:
            res = op.resources.get("images") or []
            fp = res[0].rsplit("/", 1)[-1] if res else ""
        if not fp:
            raise InternalError("image import finished without a fingerprint")
        for alias in aliases:
            self.create_alias(alias, fp)
        return fp

    def delete_image(self, fingerprint: str) -> Operation:
        return self._send_op(wire.delete_image(fingerprint))

    def aliases(self) -> list[dict[str, Any]]:
        return self._get_list(wire.aliases().path)

    def alias(self, name: str) -> dict[str, Any]:
        return self._get_dict(wire.alias(name).path)

    def create_alias(self, name: str, target: str, description: str = "") -> None:
        wire.metadata(self.send(wire.create_alias(name, target, description)))

    def delete_alias(self, name: str) -> None:
        wire.metadata(self.send(wire.delete_alias(name)))

    def rename_alias(self, name: str, new_name: str) -> None:
        wire.metadata(self.send(wire.rename_alias(name, new_name)))

    # -- operations ----------------------------------------------------------------
    def operation(self, op_id: str) -> Operation:
        return Operation.from_dict(self._get_dict(wire.operation(op_id).path), self)

    def wait_operation(self, op_id: str, timeout: float | None = None, *,
                       raise_error: bool = True) -> Operation:
        """``GET /1.0/operations/ID/wait?timeout=N`` (N=-1: no limit).

        Raises:
            Timeout: still running when ``timeout`` ran out.
            CoveError: it failed (only with ``raise_error``).
        """
        op = Operation.from_dict(
            self._get_dict(wire.wait_operation(op_id, timeout).path), self)
        if not op.done:
            raise Timeout(f"Operation {op_id} did not finish within {timeout}s")
        if raise_error:
            op.raise_for_error()
        return op

    def cancel_operation(self, op_id: str) -> None:
        wire.metadata(self.send(wire.cancel_operation(op_id)))
