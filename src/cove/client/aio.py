"""The asyncio flavour: ``AsyncRestDriver`` and its ``AsyncTransport``.

Design note (the rule of CONVENTIONS.md #13): nothing of the protocol or of
the driver's meaning is written here. The convergent algorithms are the
flows of ``drivers.base``, the requests and answers are ``_wire``'s, what a
step sends is ``drivers._rest_steps``, folder copies are
``transports._trees`` and the command's env/ids/result are
``transports.base.ExecPlan``, all shared with the sync ``RestDriver``. This
module only does their I/O with aiohttp (``adrive``), plus the one thing that
is truly different: pumping an exec's websockets with tasks, not threads.

For web apps and spawners: every method is a coroutine; nothing blocks the
event loop on the network (local files of folder copies are read and
written directly, as aiofiles-free code does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import aiohttp
from yarl import URL

from cove import api
from cove.client import _wire as wire
from cove.client._endpoint import is_https, unix_path
from cove.client._exec import CommandNotFound, ExecResult
from cove.client._flow import adrive
from cove.client._http import ConnectionFailed, Response, parse_envelope, with_project
from cove.client._rest import default_socket_path
from cove.client.drivers import _backup_flows as backup_flows
from cove.client.drivers import _copy_flows as copy_flows
from cove.client.drivers import _host as host
from cove.client.drivers import _profiles as profile_flows
from cove.client.drivers import _publish_flows as publish_flows
from cove.client.drivers import _resources as resources
from cove.client.drivers import _snapshot_flows as snapshot_flows
from cove.client.drivers import _storage_flows as storage
from cove.client.drivers._export_stream import export_async
from cove.client.drivers._rest_steps import Upload, perform, wait
from cove.client.drivers._steps import HashFile
from cove.client.drivers._steps_publish import ExportImage
from cove.client.drivers.base import Flow, ProgressCallback, Sleep, Step, flows, sha256_of
from cove.client.transports import _trees as trees
from cove.client.transports.base import (
    ExecPlan,
    OutputCallback,
    StdinLike,
    check_container_path,
    check_local,
)
from cove.model.errors import BadRequest, CoveError, NotFound, Timeout
from cove.model.names import validate_instance_name
from cove.model.passwd import PasswdEntry, parse_passwd, resolve_user

if TYPE_CHECKING:
    from typing import Self

    from cove.client.stack import AsyncStack

__all__ = ["AsyncEventStream", "AsyncRestDriver", "AsyncTransport"]

T = TypeVar("T")
_END = json.dumps({"command": "end"})


class AsyncRestDriver:
    """``RestDriver`` for asyncio: the same methods, as coroutines.

    ``endpoint``, ``verify``, ``client_cert`` and ``client_key`` are the
    sync driver's. Use ``async with`` or ``await close()``.
    """

    def __init__(self, endpoint: str | None = None, *, verify: bool | str = True,
                 client_cert: str | None = None, client_key: str | None = None,
                 timeout: float | None = None, project: str | None = None) -> None:
        self.endpoint = endpoint or default_socket_path()
        self.timeout = timeout
        self.project = project  # every request's ``?project=`` (as RestDriver)
        self._session: aiohttp.ClientSession | None = None
        if is_https(self.endpoint):
            from cove.client._tls import client_context, default_client_cert, parse_https

            host, port = parse_https(self.endpoint)
            if client_cert is None and client_key is None:
                client_cert, client_key = default_client_cert()
            self._ssl: Any = client_context(verify, client_cert, client_key)
            self._base = f"https://{host}:{port}"
            self._socket: str | None = None
        else:
            self._socket = unix_path(self.endpoint)
            self._ssl = None
            self._base = "http://lxd"

    def __repr__(self) -> str:
        return f"AsyncRestDriver({self.endpoint!r})"

    # -- I/O ----------------------------------------------------------------------------
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector = (
                aiohttp.UnixConnector(path=self._socket) if self._socket
                else aiohttp.TCPConnector(ssl=self._ssl))
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    def url(self, path: str) -> URL:
        return URL(self._base + with_project(path, self.project), encoded=True)

    def _failed(self, e: Exception) -> ConnectionFailed:
        where = self._socket or self._base
        if isinstance(e, aiohttp.ClientConnectorCertificateError):
            return ConnectionFailed(f"The server at {where} is not trusted: "
                                    f"{e.certificate_error}", where, "certificate")
        if isinstance(e, aiohttp.ClientSSLError):
            return ConnectionFailed(f"TLS with {where} failed: {e}", where, "tls")
        if isinstance(e, aiohttp.ClientConnectorError):
            err = e.os_error
            reason = "missing" if isinstance(err, FileNotFoundError) else \
                "denied" if isinstance(err, PermissionError) else "refused"
            return ConnectionFailed(f"Cannot connect to {where}: {err.strerror or err}",
                                    where, reason)
        if isinstance(e, asyncio.TimeoutError):
            return ConnectionFailed(f"{where} did not answer in time", where, "timeout")
        return ConnectionFailed(f"{where} hung up: {e}", where, "closed")

    async def send(self, req: wire.Request) -> Response:
        """Send one ``_wire.Request``; the whole answer, unparsed."""
        body = req.body
        headers = dict(req.headers)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, Upload):
            body = _chunks(body)  # read off the loop, block by block
        try:
            async with self.session().request(req.method, self.url(req.path), data=body,
                                              headers=headers) as r:
                data = await r.read()
                return Response(r.status, {k.lower(): v for k, v in r.headers.items()}, data)
        except (TimeoutError, aiohttp.ClientError) as e:
            raise self._failed(e) from None

    async def websocket(self, op_id: str, secret: str) -> aiohttp.ClientWebSocketResponse:
        path = f"/1.0/operations/{wire.q(op_id)}/websocket?secret={wire.q(secret)}"
        try:
            return await self.session().ws_connect(self.url(path), max_msg_size=0)
        except (TimeoutError, aiohttp.ClientError) as e:
            raise self._failed(e) from None

    async def _do(self, step: Step) -> Any:
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            return None
        if isinstance(step, HashFile):
            return await asyncio.to_thread(sha256_of, step.path)
        if isinstance(step, ExportImage):  # streamed, not a whole answer
            return await export_async(self, step)
        return await adrive(perform(step), self.send)

    async def _run(self, flow: Flow[T]) -> T:
        return await adrive(flow, self._do)

    # -- the interface (see Driver for each contract) ------------------------------------
    async def server_info(self) -> dict[str, Any]:
        return wire.as_dict(await self.send(wire.server()), "GET /1.0")

    async def create_container(self, name: str, *, alias: str | None = None,
                               fingerprint: str | None = None,
                               properties: Mapping[str, str] | None = None,
                               server: str | None = None, protocol: str | None = None,
                               profiles: Sequence[str] | None = None,
                               config: Mapping[str, Any] | None = None,
                               devices: Mapping[str, Mapping[str, str]] | None = None,
                               autostart: bool = True,
                               progress: ProgressCallback | None = None) -> str:
        return await self._run(flows.create_container(
            name, alias=alias, fingerprint=fingerprint, properties=properties, server=server,
            protocol=protocol, profiles=profiles, config=config, devices=devices,
            autostart=autostart, progress=progress))

    async def update_container(self, name: str, *, config: Mapping[str, Any] | None = None,
                               devices: Mapping[str, Mapping[str, str] | None] | None = None,
                               profiles: Sequence[str] | None = None) -> None:
        await self._run(flows.update(name, config=config, devices=devices, profiles=profiles))

    async def start_container(self, name: str, *,
                              progress: ProgressCallback | None = None) -> None:
        await self._run(flows.start(name, progress=progress))

    async def stop_container(self, name: str, *, force: bool = False, timeout: float = 0,
                             retry_interval: float | None = None,
                             retry_count: int | None = None) -> None:
        await self._run(flows.stop(name, force=force, timeout=timeout,
                                   retry_interval=retry_interval, retry_count=retry_count))

    async def delete_container(self, name: str) -> None:
        await self._run(flows.delete(name))

    async def container_status(self, name: str) -> str:
        return await self._run(flows.status(name))

    async def container(self, name: str) -> dict[str, Any]:
        return await self._run(flows.get(name))

    async def container_state(self, name: str) -> dict[str, Any]:
        return await self._run(flows.state(name))

    async def wait_for(self, name: str, what: str, timeout: float = 60) -> Any:
        return await self._run(flows.wait_for(name, what, timeout))

    async def containers(self) -> list[api.Instance]:
        return await self._run(resources.containers())

    async def rename_container(self, name: str, new_name: str) -> None:
        await self._run(flows.rename(name, new_name))

    # -- images and aliases --------------------------------------------------------------
    async def images(self) -> list[api.Image]:
        return await self._run(resources.images())

    async def image(self, fingerprint: str) -> api.Image:
        return await self._run(resources.image(fingerprint))

    async def import_image(self, path: str | os.PathLike[str], *, aliases: Sequence[str] = (),
                           progress: ProgressCallback | None = None) -> api.Image:
        return await self._run(resources.import_image(path, aliases=aliases, progress=progress))

    async def update_image(self, fingerprint: str, *,
                           properties: Mapping[str, Any] | None = None,
                           public: bool | None = None) -> None:
        await self._run(resources.update_image(fingerprint, properties=properties,
                                               public=public))

    async def delete_image(self, fingerprint: str) -> None:
        await self._run(resources.delete_image(fingerprint))

    async def aliases(self) -> list[api.ImageAliasesEntry]:
        return await self._run(resources.aliases())

    async def alias(self, name: str) -> api.ImageAliasesEntry:
        return await self._run(resources.alias(name))

    async def create_alias(self, name: str, target: str,
                           description: str = "") -> api.ImageAliasesEntry:
        return await self._run(resources.create_alias(name, target, description))

    async def rename_alias(self, name: str, new_name: str) -> None:
        await self._run(resources.rename_alias(name, new_name))

    async def delete_alias(self, name: str) -> None:
        await self._run(resources.delete_alias(name))

    # -- networks --------------------------------------------------------------------------
    async def networks(self) -> list[api.Network]:
        return await self._run(resources.networks())

    async def network(self, name: str) -> api.Network:
        return await self._run(resources.network(name))

    async def network_state(self, name: str) -> api.NetworkState:
        return await self._run(resources.network_state(name))

    async def network_leases(self, name: str) -> list[api.NetworkLease]:
        return await self._run(resources.network_leases(name))

    async def create_network(self, name: str, *, config: Mapping[str, Any] | None = None,
                             description: str = "", type: str = "bridge") -> api.Network:
        return await self._run(resources.create_network(name, config=config,
                                                        description=description, type=type))

    async def update_network(self, name: str, *, config: Mapping[str, Any] | None = None,
                             description: str | None = None) -> None:
        await self._run(resources.update_network(name, config=config, description=description))

    async def delete_network(self, name: str) -> None:
        await self._run(resources.delete_network(name))

    # -- profiles --------------------------------------------------------------------------
    async def profiles(self) -> list[api.Profile]:
        return await self._run(profile_flows.profiles())

    async def profile(self, name: str) -> api.Profile:
        return await self._run(profile_flows.profile(name))

    async def create_profile(self, name: str, *, config: Mapping[str, Any] | None = None,
                             devices: Mapping[str, Any] | None = None,
                             description: str = "") -> api.Profile:
        return await self._run(profile_flows.create_profile(
            name, config=config, devices=devices, description=description))

    async def update_profile(self, name: str, *, config: Mapping[str, Any] | None = None,
                             devices: Mapping[str, Any] | None = None,
                             description: str | None = None) -> None:
        await self._run(profile_flows.update_profile(name, config=config, devices=devices,
                                                     description=description))

    async def rename_profile(self, name: str, new_name: str) -> None:
        await self._run(profile_flows.rename_profile(name, new_name))

    async def delete_profile(self, name: str) -> None:
        await self._run(profile_flows.delete_profile(name))
    # -- publish and export (as ``Driver``'s) ----------------------------------------------------
    async def publish(self, source: str, *, aliases: Sequence[str] = (),
                      properties: Mapping[str, str] | None = None,
                      public: bool = False) -> api.Image:
        return await self._run(publish_flows.publish(source, aliases=aliases,
                                                     properties=properties, public=public))

    async def export_image(self, ref: str, directory: str | os.PathLike[str]) -> list[str]:
        return await self._run(publish_flows.export_image(ref, directory))

    # -- snapshots (as ``Driver``'s) -----------------------------------------------------------
    async def snapshots(self, name: str) -> list[api.InstanceSnapshot]:
        return await self._run(snapshot_flows.snapshots(name))

    async def snapshot(self, name: str, snap: str) -> api.InstanceSnapshot:
        return await self._run(snapshot_flows.snapshot(name, snap))

    async def create_snapshot(self, name: str, snap: str) -> api.InstanceSnapshot:
        return await self._run(snapshot_flows.create_snapshot(name, snap))

    async def restore_snapshot(self, name: str, snap: str) -> None:
        await self._run(snapshot_flows.restore_snapshot(name, snap))

    async def rename_snapshot(self, name: str, snap: str, new_name: str) -> None:
        await self._run(snapshot_flows.rename_snapshot(name, snap, new_name))

    async def delete_snapshot(self, name: str, snap: str) -> None:
        await self._run(snapshot_flows.delete_snapshot(name, snap))

    # -- copies and rebuilds (as ``Driver``'s) ------------------------------------------------
    async def copy(self, source: str, name: str, *, instance_only: bool = False,
                   profiles: list[str] | None = None,
                   config: Mapping[str, str] | None = None) -> api.Instance:
        return await self._run(copy_flows.copy_instance(
            source, name, instance_only=instance_only, profiles=profiles, config=config))

    async def rebuild(self, name: str, image: str = "") -> None:
        await self._run(copy_flows.rebuild_instance(name, image))
    # -- backups (as ``Driver``'s) ---------------------------------------------------------------
    async def backups(self, name: str) -> list[api.InstanceBackup]:
        return await self._run(backup_flows.backups(name))

    async def backup(self, name: str, backup: str) -> api.InstanceBackup:
        return await self._run(backup_flows.backup(name, backup))

    async def create_backup(self, name: str, backup: str, *,
                            instance_only: bool = False) -> api.InstanceBackup:
        return await self._run(backup_flows.create_backup(name, backup,
                                                          instance_only=instance_only))

    async def delete_backup(self, name: str, backup: str) -> None:
        await self._run(backup_flows.delete_backup(name, backup))

    async def export_instance(self, name: str, path: str, *, instance_only: bool = False) -> None:
        await self._run(backup_flows.export_instance(name, path, instance_only=instance_only))

    async def import_instance(self, path: str, name: str) -> None:
        await self._run(backup_flows.import_instance(path, name))

    # -- storage -------------------------------------------------------------------------------
    async def storage_pools(self) -> list[api.StoragePool]:
        return await self._run(storage.storage_pools())

    async def volumes(self, pool: str) -> list[api.StorageVolume]:
        return await self._run(storage.volumes(pool))

    async def volume(self, pool: str, name: str) -> api.StorageVolume:
        return await self._run(storage.volume(pool, name))

    async def create_volume(self, pool: str, name: str, *,
                            config: Mapping[str, Any] | None = None,
                            description: str = "") -> api.StorageVolume:
        return await self._run(storage.create_volume(pool, name, config=config,
                                                     description=description))

    async def update_volume(self, pool: str, name: str, *,
                            config: Mapping[str, Any] | None = None,
                            description: str | None = None) -> None:
        await self._run(storage.update_volume(pool, name, config=config,
                                              description=description))

    async def rename_volume(self, pool: str, name: str, new_name: str) -> None:
        await self._run(storage.rename_volume(pool, name, new_name))

    async def delete_volume(self, pool: str, name: str) -> None:
        await self._run(storage.delete_volume(pool, name))

    async def attach_disk(self, name: str, device: str, disk: Mapping[str, Any]) -> None:
        await self._run(storage.attach_disk(name, device, disk))

    async def detach_disk(self, name: str, device: str) -> None:
        await self._run(storage.detach_disk(name, device))

    # -- operations ----------------------------------------------------------------------------
    async def operations(self) -> list[api.Operation]:
        return await self._run(resources.operations())

    async def operation(self, id: str) -> api.Operation:
        return await self._run(resources.operation(id))

    async def wait_operation(self, id: str, timeout: float | None = None) -> api.Operation:
        return await self._run(resources.wait_operation(id, timeout))

    async def cancel_operation(self, id: str) -> None:
        await self._run(resources.cancel_operation(id))

    # -- trusted certificates ------------------------------------------------------------------
    async def certificates(self) -> list[api.Certificate]:
        return await self._run(resources.certificates())

    async def certificate(self, fingerprint: str) -> api.Certificate:
        return await self._run(resources.certificate(fingerprint))

    async def add_certificate(self, pem: str, *, name: str = "") -> api.Certificate:
        return await self._run(resources.add_certificate(pem, name=name))

    async def delete_certificate(self, fingerprint: str) -> None:
        await self._run(resources.delete_certificate(fingerprint))

    # -- the host ---------------------------------------------------------------------------------
    async def resources(self) -> dict[str, Any]:
        return await self._run(host.resources())

    async def metrics(self, project: str | None = None) -> str:
        return await self._run(host.metrics(project))

    # -- stacks (as ``Driver``'s) --------------------------------------------------------------
    def stack(self, source: str | os.PathLike[str] | Mapping[str, Any] | None = None, *,
              name: str | None = None, env: Mapping[str, str] | None = None) -> AsyncStack:
        from cove.client.stack import AsyncStack

        return AsyncStack(self, source, name=name, env=env)

    async def stacks(self) -> dict[str, dict[str, int]]:
        from cove.client.stack import names

        return await self._run(names())

    # -- events ---------------------------------------------------------------------------------
    def events(self, types: Sequence[str] = ("lifecycle", "operation")) -> AsyncEventStream:
        """``EventDriver.events`` for asyncio: ``async with d.events() as s:
        async for event in s``. The subscription opens on entering (or on the
        first read), so act on the host after that."""
        return AsyncEventStream(self, resources.check_event_types(types))

    def transport_for(self, name: str) -> AsyncTransport:
        return AsyncTransport(self, validate_instance_name(name))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncEventStream:
    """``/1.0/events`` for asyncio: an async iterator of ``api.Event``, and an
    async context manager that opens and closes the subscription."""

    def __init__(self, driver: AsyncRestDriver, types: tuple[str, ...]) -> None:
        self.driver = driver
        self.types = types
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ended = False

    async def open(self) -> Self:
        """Subscribe now (idempotent); events from then on are kept for reading."""
        if self._ws is None and not self._ended:
            try:
                self._ws = await self.driver.session().ws_connect(
                    self.driver.url(wire.events_path(self.types)))
            except (TimeoutError, aiohttp.ClientError) as e:
                raise self.driver._failed(e) from None
        return self

    async def get(self, timeout: float | None = None) -> api.Event | None:
        """The next event (``EventStream.get``): None once the stream ended.

        Raises:
            Timeout: none came within ``timeout`` seconds.
        """
        await self.open()
        while self._ws is not None:
            try:
                msg = await asyncio.wait_for(self._ws.receive(), timeout)
            except TimeoutError:
                raise Timeout(f"No event within {timeout:g}s") from None
            if msg.type == aiohttp.WSMsgType.TEXT:
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(data, dict):
                    return api.Event.from_wire(data)
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                              aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                await self.aclose()
        return None

    async def aclose(self) -> None:
        """End the subscription (idempotent)."""
        self._ended = True
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    def __aiter__(self) -> AsyncIterator[api.Event]:
        return self

    async def __anext__(self) -> api.Event:
        event = await self.get()
        if event is None:
            raise StopAsyncIteration
        return event

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _chunks(body: Upload) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(body.read, 1 << 16):
        yield chunk


class AsyncTransport:
    """One container through an ``AsyncRestDriver``: ``Transport``'s methods as
    coroutines (``user()`` too: it reads the container's /etc/passwd)."""

    def __init__(self, driver: AsyncRestDriver, name: str,
                 bound_user: PasswdEntry | None = None) -> None:
        self.driver = driver
        self.name = name
        self.bound_user = bound_user

    def __repr__(self) -> str:
        return f"AsyncTransport({self.driver.endpoint!r}, {self.name!r})"

    # -- files -----------------------------------------------------------------------------
    async def _file_op(self, op: trees.Get | trees.Put | trees.ListDir) -> Any:
        if isinstance(op, trees.Get):
            return wire.instance_file(await self.driver.send(wire.file_get(self.name, op.path)),
                                      op.path)
        if isinstance(op, trees.ListDir):
            return await adrive(trees.names_in(op.folder), self._file_op)
        data = op.target.encode() if op.type == "symlink" else op.data
        req = wire.file_put(self.name, op.path, data, uid=op.uid, gid=op.gid,
                            mode=None if op.type == "symlink" else op.mode, type=op.type)
        parse_envelope(await self.driver.send(req))
        return None

    async def _files(self, flow: trees.FileFlow[T]) -> T:
        return await adrive(flow, self._file_op)

    def _owner(self, uid: int | None, gid: int | None) -> tuple[int | None, int | None]:
        u = self.bound_user
        if u is None:
            return uid, gid
        return (u.uid if uid is None else uid, u.gid if gid is None else gid)

    async def read_file(self, path: str) -> bytes:
        return await self._files(trees.read(check_container_path(path)))

    async def write_file(self, path: str, content: bytes | str, *, uid: int | None = None,
                         gid: int | None = None, mode: int | None = None) -> None:
        path = check_container_path(path)
        data = content.encode() if isinstance(content, str) else bytes(content)
        await self._files(trees.write(path, data, *self._owner(uid, gid), mode))

    async def download_file(self, path: str, local_path: str | os.PathLike[str]) -> None:
        await self._files(trees.download_file(check_container_path(path),
                                              check_local(local_path)))

    async def upload_file(self, local_path: str | os.PathLike[str], path: str, *,
                          uid: int | None = None, gid: int | None = None,
                          mode: int | None = None) -> None:
        local = check_local(local_path)
        if not local.is_symlink() and not local.is_file():
            raise NotFound(f"No local file {str(local)!r}") if not local.exists() else \
                BadRequest(f"{str(local)!r} is not a file: use upload_folder")
        if mode is None and not local.is_symlink():
            mode = local.stat().st_mode & 0o7777
        await self._files(trees.upload_file(local, check_container_path(path),
                                            *self._owner(uid, gid), mode))

    async def download_folder(self, path: str, local_path: str | os.PathLike[str]) -> None:
        path = check_container_path(path)
        if path == "/":
            raise BadRequest("Refusing to download the whole container: name a folder")
        local = check_local(local_path)
        local.mkdir(parents=True, exist_ok=True)
        await self._files(trees.download_folder(path, local))

    async def upload_folder(self, local_path: str | os.PathLike[str], path: str, *,
                            uid: int | None = None, gid: int | None = None) -> None:
        local = check_local(local_path)
        if not local.is_dir() or local.is_symlink():
            raise NotFound(f"No local folder {str(local)!r}") if not local.exists() else \
                BadRequest(f"{str(local)!r} is not a folder: use upload_file")
        await self._files(trees.upload_folder(Path(local).absolute(), check_container_path(path),
                                              *self._owner(uid, gid)))

    # -- users -------------------------------------------------------------------------------
    async def _resolve(self, user: int | str) -> PasswdEntry:
        if isinstance(user, bool) or not isinstance(user, (int, str)) or user == "":
            raise BadRequest(f"A user is a name or a uid, not {user!r}")
        try:
            text = (await self.read_file("/etc/passwd")).decode("utf-8", "replace")
        except NotFound:
            text = ""
        return resolve_user(user, parse_passwd(text))

    async def user(self, user: int | str) -> AsyncTransport:
        """A transport bound to ``user`` (see ``Transport.user``)."""
        return AsyncTransport(self.driver, self.name, await self._resolve(user))

    # -- commands ------------------------------------------------------------------------------
    async def execute(self, command: str | Sequence[str], *,
                      env: Mapping[str, str] | None = None, cwd: str | None = None,
                      user: int | str | None = None, stdin: StdinLike = None,
                      timeout: float | None = None, capture: bool = True,
                      stream: OutputCallback | None = None) -> ExecResult:
        """``Transport.execute`` as a coroutine (same arguments, same errors)."""
        who = await self._resolve(user) if user is not None else self.bound_user
        plan = ExecPlan(command, env, cwd, who, stdin, capture, stream, timeout)
        code = await self._exec(plan, timeout)
        if code == 127 and not await self._files(
                trees.program_exists(plan.argv[0], plan.env.get("PATH"))):
            raise CommandNotFound(f"Command not found: {plan.argv[0]}", plan.argv)
        return plan.result(code)

    async def _exec(self, plan: ExecPlan, timeout: float | None) -> int:
        d = self.driver
        resp = await d.send(wire.exec_command(self.name, plan.argv, environment=plan.env,
                                              user=plan.uid, group=plan.gid, cwd=plan.cwd))
        op = wire.operation_of(resp)
        fds = (op.get("metadata") or {}).get("fds") or {}
        sockets: dict[str, aiohttp.ClientWebSocketResponse] = {}
        try:
            for fd in ("control", "0", "1", "2"):
                if fd not in fds:
                    raise CoveError(f"exec answer lacks the websocket secret for {fd}")
                sockets[fd] = await d.websocket(str(op["id"]), str(fds[fd]))
            pumps = [asyncio.ensure_future(_feed(sockets["0"], plan.stdin)),
                     asyncio.ensure_future(_drain(sockets["1"], plan.on_stdout)),
                     asyncio.ensure_future(_drain(sockets["2"], plan.on_stderr))]
            try:
                done = await asyncio.wait_for(adrive(wait(op), d.send), timeout)
            except TimeoutError:
                with contextlib.suppress(Exception):
                    await sockets["control"].send_str(json.dumps(
                        {"command": "signal", "signal": 9}))
                raise Timeout(f"{' '.join(plan.argv)} ran longer than {timeout:g}s in "
                              f"{self.name} and was killed") from None
            except CoveError:
                # LXD fails every exec that exits 127 or 126, the code beside it.
                got = wire.as_dict(await d.send(wire.operation(str(op["id"]))), "exec")
                code = (got.get("metadata") or {}).get("return")
                if code is None:
                    raise
                done = got
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*pumps[1:], return_exceptions=True), 5)
            return int((done.get("metadata") or {}).get("return") or 0)
        finally:
            for ws in sockets.values():
                with contextlib.suppress(Exception):
                    await ws.close()


async def _feed(ws: aiohttp.ClientWebSocketResponse, data: bytes | BinaryIO | None) -> None:
    """stdin, then LXD's end-of-input barrier (a text frame) and a close."""
    with contextlib.suppress(Exception):
        if isinstance(data, (bytes, bytearray, memoryview)):
            if data:
                await ws.send_bytes(bytes(data))
        elif data is not None:
            while True:
                chunk = await asyncio.to_thread(data.read, 65536)
                if not chunk:
                    break
                await ws.send_bytes(chunk)
        await ws.send_str(_END)
        await ws.close()


async def _drain(ws: aiohttp.ClientWebSocketResponse, take: Any) -> None:
    """One output stream until the server ends it (a close or a text barrier)."""
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.BINARY:
            take(msg.data)
        elif msg.type == aiohttp.WSMsgType.TEXT:
            await ws.close()
            return
        else:
            return
