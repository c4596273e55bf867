"""A fake engine for the server's tests (no tests here).

``FakeEngine`` is composed as ``Engine`` is: small in-memory services
(``FakeInstances``, ``FakeAccess``, ``FakeImages``, ``FakeNetworks``,
``FakeProfiles``) next to the real ``Trust`` and ``Storage`` (on a real store in the root),
``Operations`` and ``EventBus``. mypy holds it to ``EngineAPI``, so the
server gets it as it is, never through ``cast(Engine, fake)``.
``FakeExecSession`` runs a tiny scripted "command" in a thread behind real
pipes (or a real pty), so the exec websocket code and the real detached-exec
body (``run_detached``) are exercised against real descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cove import api
from cove.api import InstanceExecPost, InstanceSource, InstancesPost
from cove.engine import (
    EventBus,
    FileInfo,
    Operation,
    Operations,
    Reader,
    Trust,
)
from cove.engine._exec_out import (
    CONSOLE_LOG,
    CONSOLE_NAMES,
    check_log_name,
    file_reader,
    run_detached,
)
from cove.engine._image_pull import check_source
from cove.engine._profiles import DefaultNetwork, Profiles
from cove.engine._projects import Projects
from cove.engine._runs import Paths
from cove.engine._storage import Storage
from cove.engine.types import Listed
from cove.model.config import resources_from_config, validate_config
from cove.model.errors import BadRequest, Conflict, NotFound
from cove.model.projects import instance_key, instance_url, split_key
from cove.model.records import Alias, Backup, Image, Instance, Lease, Network, Snapshot
from cove.model.states import Status
from cove.network.model import validate_network_config, validate_network_name
from cove.server import make_app
from cove.server.listen import bind_unix
from cove.storage.export import ExportPart
from cove.store import Store

__all__ = ["FakeAccess", "FakeEngine", "FakeExecSession", "FakeFile", "FakeImages",
           "FakeInstances", "FakeNetworks", "FakeProfiles", "have", "run_app", "serve_unix",
           "short_socket_path", "wait_op"]


class FakeExecSession:
    """A scripted command behind real pipes; ``command[0]`` picks the script."""

    def __init__(self, req: InstanceExecPost) -> None:
        self.req = req
        self.resizes: list[tuple[int, int]] = []
        self.signals: list[int] = []
        self.killed = False
        self.closed = False
        self._signalled = threading.Event()
        self._done = threading.Event()
        self._code: int | None = None
        self.pty_fd: int | None = None
        self.stdin_fd: int | None = None
        self.stdout_fd: int | None = None
        self.stderr_fd: int | None = None
        if req.interactive:
            master, slave = os.openpty()
            self.pty_fd = master
            child = (slave, slave, slave)
        else:
            in_r, in_w = os.pipe()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            self.stdin_fd, self.stdout_fd, self.stderr_fd = in_w, out_r, err_r
            child = (in_r, out_w, err_w)
        threading.Thread(target=self._main, args=child, daemon=True).start()

    def _main(self, stdin: int, stdout: int, stderr: int) -> None:
        try:
            code = self._script(stdin, stdout, stderr)
        finally:
            for fd in {stdin, stdout, stderr}:
                os.close(fd)
        self._code = code
        self._done.set()

    def _script(self, stdin: int, stdout: int, stderr: int) -> int:
        cmd, args = self.req.command[0], self.req.command[1:]
        if cmd == "echo":
            os.write(stdout, (" ".join(args) + "\n").encode())
            return 0
        if cmd == "cat":  # stdin to stdout until EOF
            while data := os.read(stdin, 65536):
                os.write(stdout, data)
            return 0
        if cmd == "fail":
            os.write(stdout, b"some out\n")
            os.write(stderr, b"boom\n")
            return 3
        if cmd == "big":  # more than any pipe or socket buffer
            chunk = b"x" * 65536
            for _ in range(int(args[0]) // len(chunk)):
                os.write(stdout, chunk)
            return 0
        if cmd == "env":
            os.write(stdout, json.dumps({"env": self.req.environment, "user": self.req.user,
                                         "cwd": self.req.cwd}).encode())
            return 0
        if cmd == "daemon":  # exits, but a "child" keeps stdout open a while
            held = os.dup(stdout)
            os.write(stdout, b"started\n")
            timer = threading.Timer(float(args[0]), os.close, (held,))
            timer.daemon = True
            timer.start()
            return 0
        if cmd == "sleep":  # until signalled
            self._signalled.wait(10)
            return 128 + (self.signals[-1] if self.signals else 0)
        if cmd == "sh":  # interactive: echo lines back until "exit"
            buf = b""
            while b"exit" not in buf:
                data = os.read(stdin, 1024)
                if not data:
                    break
                buf += data
                os.write(stdout, b"got:" + data)
            return 7
        os.write(stderr, f"{cmd}: not found\n".encode())
        return 127

    def wait(self, timeout: float | None = None) -> int | None:
        self._done.wait(timeout)
        return self._code

    def resize(self, width: int, height: int) -> None:
        self.resizes.append((width, height))

    def signal(self, signum: int) -> None:
        self.signals.append(signum)
        self._signalled.set()

    def kill(self) -> None:
        self.killed = True
        self.signal(9)

    def close(self) -> None:
        self.closed = True
        for name in ("pty_fd", "stdin_fd", "stdout_fd", "stderr_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)


class FakeConsoleSession:
    """A console whose "shell" answers each input packet with ``got:`` and
    it, through a real SEQPACKET socket pair; ``end()`` is the instance
    stopping."""

    def __init__(self, width: int, height: int) -> None:
        self.resizes: list[tuple[int, int]] = [(width, height)] if width and height else []
        self.closed = False
        self._ours, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._ours.setblocking(False)
        self._theirs.sendall(b"login: ")
        threading.Thread(target=self._shell, daemon=True).start()

    def _shell(self) -> None:
        with contextlib.suppress(OSError):
            while data := self._theirs.recv(8192):
                self._theirs.sendall(b"got:" + data)

    def end(self) -> None:
        with contextlib.suppress(OSError):
            self._theirs.shutdown(socket.SHUT_RDWR)

    def fileno(self) -> int:
        return self._ours.fileno()

    def read(self) -> bytes | None:
        try:
            return self._ours.recv(8192)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def write(self, data: bytes) -> None:
        self._ours.sendall(data)

    def resize(self, width: int, height: int) -> None:
        self.resizes.append((width, height))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._ours.close()
            self._theirs.close()


class FakeConsole:
    """``ConsoleAPI``: running instances have a console, one client at a time."""

    def __init__(self, instances: FakeInstances) -> None:
        self._instances = instances
        self.sessions: list[FakeConsoleSession] = []
        self.cleared: list[str] = []

    def attach(self, name: str, width: int = 0, height: int = 0) -> FakeConsoleSession:
        if self._instances.get(name).status is not Status.RUNNING:
            raise BadRequest("Instance is not running")
        if any(not s.closed for s in self.sessions):
            raise Conflict(f"The console of {name} is already in use by another client")
        session = FakeConsoleSession(width, height)
        self.sessions.append(session)
        return session

    def clear_log(self, name: str) -> None:
        self._instances.get(name)
        self.cleared.append(name)


@dataclass
class FakeFile:
    type: str
    data: bytes = b""
    uid: int = 0
    gid: int = 0
    mode: int = 0o644
    target: str = ""


class FakeInstances:
    """``InstancesAPI`` in memory: ``by_name`` is the table tests read and
    change; ``op_delay`` slows every operation's body (to catch one running)."""

    def __init__(self, operations: Operations, images: FakeImages) -> None:
        self.by_name: dict[str, Instance] = {}
        self.op_delay = 0.0
        self.states_asked: list[bool] = []  # ``network`` of each states() call
        self._operations = operations
        self._images = images

    def _op(self, description: str, name: str, fn: Callable[[Operation], Any]) -> Operation:
        def body(op: Operation) -> Any:
            if self.op_delay:
                time.sleep(self.op_delay)
            return fn(op)
        return self._operations.run(body, description=description,
                                    resources={"instances": [instance_url(name)]},
                                    lock=f"instance:{name}",
                                    project=self.by_name[name].project
                                    if name in self.by_name else "default")

    def all(self, *, project: str | None = "default") -> list[Instance]:
        return [i for i in self.by_name.values() if project is None or i.project == project]

    def listed(self, project: str | None = "default") -> list[Listed]:
        return [Listed(i, api.instance_json(i), api.instance(i))
                for i in self.all(project=project)]

    def get(self, name: str, *, project: str = "default") -> Instance:
        if "_" in name:  # as Instances._key: no instance's name has "_"
            raise NotFound(f"Instance not found: {name}")
        return self.by_key(instance_key(project, name))

    def by_key(self, key: str) -> Instance:
        """The instance keyed ``key`` (what the access calls are given)."""
        try:
            return self.by_name[key]
        except KeyError:
            raise NotFound(f"Instance not found: {key}") from None

    def state(self, name: str, *, project: str = "default") -> dict[str, Any]:
        inst = self.get(name, project=project)
        return {"status": inst.status.value, "status_code": inst.status.code,
                "pid": 42 if inst.status is Status.RUNNING else 0, "processes": 1,
                "memory": {"usage": 1, "usage_peak": 2, "swap_usage": 0, "swap_usage_peak": 0},
                "cpu": {"usage": 5}, "disk": {}, "network": None}

    def states(self, insts: list[Instance], *, network: bool = True,
               counters: bool = True) -> dict[str, dict[str, Any]]:
        self.states_asked.append(network)
        return {i.name: self.state(split_key(i.name)[1], project=i.project) for i in insts}

    def states_json(self, insts: list[Instance], *, network: bool = True) -> dict[str, str]:
        return {k: api.state_json(v) for k, v in self.states(insts, network=network).items()}

    def create(self, req: InstancesPost, *, project: str = "default",
               wait_for_lock: float = 0) -> Operation:
        key = instance_key(project, req.name)
        if key in self.by_name:
            raise Conflict(f"Instance {req.name} already exists")
        image = req.source.image_ref()
        if not any(image == fp or any(a.name == image for a in img.aliases)
                   for fp, img in self._images.by_fingerprint.items()):
            raise NotFound(f"Image not found: {image}")

        def make(op: Operation) -> None:
            self.by_name[key] = Instance(
                name=key, image=image, config=req.config, devices=req.devices,
                profiles=req.profiles_or_default, ephemeral=req.ephemeral,
                description=req.description, project=project,
                status=Status.RUNNING if req.start else Status.STOPPED)
        return self._op("Creating instance", key, make)

    def change_state(self, name: str, action: str, *, project: str = "default",
                     timeout: float = -1, force: bool = False,
                     wait_for_lock: float = 0) -> Operation:
        inst = self.get(name, project=project)
        to = {"start": Status.RUNNING, "stop": Status.STOPPED, "restart": Status.RUNNING,
              "freeze": Status.FROZEN, "unfreeze": Status.RUNNING}.get(action)
        if to is None:
            raise BadRequest(f"Unknown action: {action}")

        def change(op: Operation) -> None:
            inst.status = to
        return self._op(f"Changing instance state: {action}", inst.name, change)

    def update(self, name: str, *, project: str = "default",
               config: dict[str, Any] | None = None,
               devices: dict[str, dict[str, str]] | None = None,
               profiles: list[str] | None = None, description: str | None = None,
               ephemeral: bool | None = None, patch: bool = False) -> None:
        inst = self.get(name, project=project)
        if config is not None:
            if any(k.startswith("bad.") for k in config):
                raise BadRequest("Unknown configuration key: bad.key")
            inst.config = {**inst.config, **config} if patch else dict(config)
        if devices is not None:
            inst.devices = {**inst.devices, **devices} if patch else dict(devices)
        if profiles is not None:
            inst.profiles = profiles
        if description is not None:
            inst.description = description
        if ephemeral is not None:
            inst.ephemeral = ephemeral

    def rename(self, name: str, new_name: str, *, project: str = "default") -> Operation:
        inst = self.get(name, project=project)
        key, new_key = inst.name, instance_key(project, new_name)

        def rename(op: Operation) -> None:
            del self.by_name[key]
            inst.name = new_key
            self.by_name[new_key] = inst
        return self._op("Renaming instance", key, rename)

    def delete(self, name: str, *, project: str = "default", force: bool = False,
               wait_for_lock: float = 0) -> Operation:
        inst = self.get(name, project=project)
        if inst.status is Status.RUNNING and not force:
            raise BadRequest("Instance is running")
        key = inst.name
        return self._op("Deleting instance", key, lambda op: self.by_name.pop(key))


class FakeAccess:
    """``AccessAPI`` on fake sessions and in-memory ``files``; the logs are
    real files under the root, laid out as the real service lays them out
    (``console.log`` is plain text at ``logs/NAME.log``, to be written by
    tests). ``exec_detached`` runs the real ``run_detached``."""

    def __init__(self, root: Path, operations: Operations, instances: FakeInstances) -> None:
        self.files: dict[tuple[str, str], FakeFile] = {}
        self.sessions: list[FakeExecSession] = []
        self._root = root
        self._paths = Paths(root)
        self._operations = operations
        self._instances = instances

    # -- exec ------------------------------------------------------------------
    def settle(self, name: str, *, project: str = "default") -> None:
        pass

    def exec(self, name: str, req: InstanceExecPost, *,
             project: str = "default") -> FakeExecSession:
        name = instance_key(project, name)
        if self._instances.by_key(name).status is not Status.RUNNING:
            raise BadRequest("Instance is not running")
        if req.command[0] == "nouser":
            raise BadRequest("User not found: nobody")
        session = FakeExecSession(req)
        self.sessions.append(session)
        return session

    def exec_detached(self, name: str, req: InstanceExecPost, *, project: str = "default",
                      record: bool) -> Operation:
        name = instance_key(project, name)
        session = self.exec(name, req)
        log_dir = self._paths.exec_log_dir(name) if record else None
        try:
            return self._operations.run(
                lambda op: run_detached(session, log_dir, name, op),
                description="Executing command",
                resources={"instances": [instance_url(name)]})
        except BaseException:
            session.close()
            raise

    # -- files -----------------------------------------------------------------
    def file_get(self, name: str, path: str, *, project: str = "default") -> FileInfo:
        name = instance_key(project, name)
        self._instances.by_key(name)
        f = self.files.get((name, path))
        if f is None:
            raise NotFound(f"Not found: {path}")
        info = FileInfo(type=f.type, uid=f.uid, gid=f.gid, mode=f.mode, size=len(f.data))
        if f.type == "file":
            r, w = os.pipe()
            threading.Thread(target=_feed, args=(w, f.data), daemon=True).start()
            info.fd = r
        elif f.type == "directory":
            prefix = path.rstrip("/") + "/"
            info.entries = sorted(p[len(prefix):] for (n, p) in self.files
                                  if n == name and p.startswith(prefix)
                                  and "/" not in p[len(prefix):])
        else:
            info.target = f.target
        return info

    def file_put(self, name: str, path: str, *, project: str = "default", type: str = "file",
                 data: BinaryIO | bytes | None = None, uid: int | None = None,
                 gid: int | None = None, mode: int | None = None,
                 write: str = "overwrite", target: str | None = None,
                 make_parents: bool = False) -> None:
        name = instance_key(project, name)
        self._instances.by_key(name)
        raw = data if isinstance(data, bytes) else (data.read() if data is not None else b"")
        old = self.files.get((name, path))
        if write == "append" and old is not None:
            raw = old.data + raw
        self.files[(name, path)] = FakeFile(
            type=type, data=raw, uid=uid or 0, gid=gid or 0,
            mode=mode if mode is not None else (0o755 if type == "directory" else 0o644),
            target=target or "")

    def file_delete(self, name: str, path: str, *, project: str = "default") -> None:
        name = instance_key(project, name)
        self._instances.by_key(name)
        if self.files.pop((name, path), None) is None:
            raise NotFound(f"Not found: {path}")

    # -- logs --------------------------------------------------------------------
    def console_log(self, name: str, *, project: str = "default") -> Path:
        name = instance_key(project, name)
        self._instances.by_key(name)
        return self._root / "logs" / f"{name}.log"

    def read_console(self, name: str, offset: int = 0, *,
                     project: str = "default") -> tuple[bytes, int]:
        """Whole lines of the (plain text) log from ``offset`` on."""
        name = instance_key(project, name)
        try:
            with open(self.console_log(name), "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return b"", 0
        end = data.rfind(b"\n") + 1
        return data[:end], offset + end

    def log_names(self, name: str, *, project: str = "default") -> list[str]:
        name = instance_key(project, name)
        self._instances.by_key(name)
        try:
            recorded = sorted(p.name for p in self._paths.exec_log_dir(name).iterdir()
                              if p.is_file())
        except FileNotFoundError:
            recorded = []
        return [CONSOLE_LOG, *recorded]

    def log_reader(self, name: str, file: str, *, project: str = "default") -> Reader:
        name = instance_key(project, name)
        check_log_name(file)
        self._instances.by_key(name)
        if file in CONSOLE_NAMES:
            return functools.partial(self.read_console, name)
        path = self._paths.exec_log_dir(name) / file
        if not path.is_file():
            raise NotFound(f"Log file not found: {file}")
        return file_reader(path)

    def delete_log(self, name: str, file: str, *, project: str = "default") -> None:
        name = instance_key(project, name)
        check_log_name(file)
        if file in CONSOLE_NAMES:
            raise BadRequest("The console log cannot be deleted; only exec output logs can")
        self._instances.by_key(name)
        try:
            os.unlink(self._paths.exec_log_dir(name) / file)
        except FileNotFoundError:
            raise NotFound(f"Log file not found: {file}") from None


class FakeImages:
    """``ImagesAPI`` in memory: ``by_fingerprint`` is the table (aliases live
    on the images); ``imported`` records what each import was given."""

    def __init__(self, operations: Operations) -> None:
        self.by_fingerprint: dict[str, Image] = {}
        self.imported: list[dict[str, Any]] = []
        self._operations = operations

    def add(self, fingerprint: str, *aliases: str) -> Image:
        """Put an image (and its aliases) in the table, as if imported."""
        img = Image(fingerprint=fingerprint, size=1234, filename="img.tar.gz",
                    properties={"os": "busybox"}, created_at=1700000000,
                    uploaded_at=1700000001)
        for a in aliases:
            img.aliases.append(Alias(a, fingerprint, f"alias {a}"))
        self.by_fingerprint[fingerprint] = img
        return img

    # one set of images for every project (as features.images=false): the
    # real per-project images are tested on the engine
    def all(self, *, project: str = "default") -> list[Image]:
        return list(self.by_fingerprint.values())

    def get(self, fingerprint: str, *, project: str = "default") -> Image:
        found = [img for fp, img in self.by_fingerprint.items() if fp.startswith(fingerprint)]
        if not found:
            raise NotFound(f"Image not found: {fingerprint}")
        if len(found) > 1:
            raise BadRequest(f"Image fingerprint prefix is ambiguous: {fingerprint}")
        return found[0]

    def resolve(self, ref: str, *, project: str = "default") -> Image:
        with contextlib.suppress(NotFound):
            return self.get(self.get_alias(ref).target)
        return self.get(ref)

    def import_file(self, path: Path, *, filename: str = "", public: bool = False,
                    aliases: list[str] | None = None, meta_path: Path | None = None,
                    properties: dict[str, str] | None = None,
                    project: str = "default") -> Operation:
        data = path.read_bytes()
        if data == b"refuse":
            raise BadRequest("Not an image tarball")
        meta = meta_path.read_bytes() if meta_path else None
        path.unlink()
        if meta_path:
            meta_path.unlink()
        self.imported.append({"data": data, "meta": meta, "filename": filename,
                              "public": public, "properties": properties})
        fp = format(abs(hash(data)), "x").rjust(64, "0")

        def store(op: Operation) -> Image:
            img = self.add(fp)
            img.public, img.filename = public, filename
            img.properties = properties or {}
            op.update(fingerprint=fp, size=len(data))
            return img
        return self._operations.run(store, description="Importing image",
                                    resources={"images": [f"/1.0/images/{fp}"]})

    def update(self, fingerprint: str, *, properties: dict[str, str] | None = None,
               public: bool | None = None, patch: bool = True,
               project: str = "default", auto_update: bool | None = None) -> None:
        img = self.get(fingerprint)
        if auto_update:
            raise BadRequest("Image auto-update needs a source")
        if patch and properties is not None:
            properties = {**img.properties, **properties}
        if not patch and properties is None:
            properties = {}
        if properties is not None:
            img.properties = properties
        if public is not None:
            img.public = public

    def delete(self, fingerprint: str, *, project: str = "default") -> Operation:
        img = self.get(fingerprint)
        return self._operations.run(lambda op: self.by_fingerprint.pop(img.fingerprint),
                                    description="Deleting image")

    def list_aliases(self, *, project: str = "default") -> list[Alias]:
        return [a for img in self.by_fingerprint.values() for a in img.aliases]

    def get_alias(self, name: str, *, project: str = "default") -> Alias:
        for a in self.list_aliases():
            if a.name == name:
                return a
        raise NotFound(f"Alias not found: {name}")

    def add_alias(self, name: str, target: str, description: str = "", *,
                  project: str = "default") -> None:
        if any(a.name == name for a in self.list_aliases()):
            raise Conflict(f"Alias already exists: {name}")
        self.get(target).aliases.append(Alias(name, target, description))

    def update_alias(self, name: str, target: str, description: str = "", *,
                     project: str = "default") -> None:
        self.delete_alias(name)
        self.get(target).aliases.append(Alias(name, target, description))

    def rename_alias(self, name: str, new_name: str, *, project: str = "default") -> None:
        self.get_alias(name).name = new_name

    def delete_alias(self, name: str, *, project: str = "default") -> None:
        a = self.get_alias(name)
        for img in self.by_fingerprint.values():
            if a in img.aliases:
                img.aliases.remove(a)


class FakeNetworks:
    """``NetworksAPI`` in memory, with the engine's validation rules:
    ``by_name`` is the table, ``lease_list`` the addresses instances hold."""

    def __init__(self, instances: FakeInstances) -> None:
        self.by_name: dict[str, Network] = {}
        self.lease_list: list[Lease] = []
        self._instances = instances

    def all(self) -> list[Network]:
        return [self.by_name[k] for k in sorted(self.by_name)]

    def get(self, name: str) -> Network:
        try:
            return self.by_name[name]
        except KeyError:
            raise NotFound(f"Network not found: {name}") from None

    def used_by(self, name: str) -> list[str]:
        return [f"/1.0/instances/{i.name}" for i in self._instances.all()
                if any(d.get("type") == "nic" and d.get("network") == name
                       for d in i.devices.values())]

    def leases(self, name: str) -> list[Lease]:
        self.get(name)
        return [x for x in self.lease_list if x.network == name]

    def state(self, name: str) -> dict[str, Any]:
        net = self.get(name)
        addr, _, plen = net.config.get("ipv4.address", "").partition("/")
        return {"addresses": [{"family": "inet", "address": addr, "netmask": plen,
                               "scope": "global"}], "counters": {}, "hwaddr": "", "mtu": 1500,
                "state": "up", "type": "broadcast"}

    def create(self, name: str, *, config: dict[str, Any] | None = None,
               description: str = "", type: str = "bridge") -> Network:
        validate_network_name(name)
        if type != "bridge":
            raise BadRequest(f"Network type {type!r} is not supported")
        conf = validate_network_config(config or {})
        if name in self.by_name:
            raise Conflict(f"Network {name!r} already exists")
        conf.setdefault("ipv4.address", "10.1.2.1/24")
        self.by_name[name] = Network(name=name, config=conf, description=description)
        return self.by_name[name]

    def update(self, name: str, *, config: dict[str, Any] | None = None,
               description: str | None = None, patch: bool = False) -> None:
        net = self.get(name)
        if config is not None:
            new = dict(net.config) if patch else {}
            new.update(validate_network_config(config))
            net.config = new
        if description is not None:
            net.description = description

    def delete(self, name: str) -> None:
        self.get(name)
        used = self.used_by(name)
        if used:
            raise BadRequest(f"The network is currently in use by {', '.join(used)}")
        del self.by_name[name]


class FakeProfileUsers:
    """``ProfileUsers`` over the fake instances: config is checked for real,
    a device of type ``bad`` is refused, and what was applied is recorded."""

    def __init__(self, instances: FakeInstances) -> None:
        self._instances = instances
        self.applied: list[tuple[str, dict[str, str], dict[str, dict[str, str]]]] = []

    def using_profile(self, profile: str, project: str) -> list[Instance]:
        return [i for i in self._instances.all() if profile in i.profiles]

    def validate_devices(self, devices: Any) -> dict[str, dict[str, str]]:
        out = {str(k): {str(a): str(b) for a, b in v.items()} for k, v in (devices or {}).items()}
        for name, dev in out.items():
            if dev.get("type") == "bad":
                raise BadRequest(f"Device {name!r}: type 'bad' is not supported")
        return out

    def check_expansion(self, inst: Instance, config: dict[str, str],
                        devices: dict[str, dict[str, str]]) -> None:
        resources_from_config(validate_config(config))

    def apply_expansion(self, inst: Instance,
                        old: tuple[dict[str, str], dict[str, dict[str, str]]],
                        config: dict[str, str], devices: dict[str, dict[str, str]]) -> None:
        self.applied.append((inst.name, config, devices))


class FakeProfiles(Profiles):
    """The real ``Profiles`` on the fake engine's store, over ``FakeProfileUsers``
    (no default network, so the default profile has no devices)."""

    def __init__(self, store: Store, instances: FakeInstances, events: EventBus) -> None:
        super().__init__(store, DefaultNetwork(store), events)
        self.users = FakeProfileUsers(instances)
        self.bind(self.users)


class FakeMetrics:
    """``MetricsAPI``: one sample per running fake instance, the project asked recorded."""

    def __init__(self, instances: FakeInstances) -> None:
        self._instances = instances
        self.asked: list[str | None] = []

    def text(self, *, project: str | None = None) -> str:
        from cove.api import MetricSet

        self.asked.append(project)
        out = MetricSet()
        for inst in self._instances.all():
            if inst.status is Status.RUNNING and project in (None, "default"):
                out.add("procs", 1, {"name": inst.name, "project": "default",
                                     "type": "container"})
        return out.render()


class FakeCopies:
    """``CopiesAPI`` in memory, over ``FakeInstances``' table: a copy takes
    the source's config (no ``volatile.*``) and profiles; ``rebuilt`` records
    each rebuild asked for (name, image ref or "")."""

    def __init__(self, operations: Operations, instances: FakeInstances) -> None:
        self.rebuilt: list[tuple[str, str]] = []
        self._operations = operations
        self._instances = instances

    def copy(self, req: InstancesPost, *, project: str = "default") -> Operation:
        if not req.source.source:
            raise BadRequest("Must specify a source instance")
        src = self._instances.get(req.source.source.split("/")[0],
                                  project=req.source.project or project)
        key = instance_key(project, req.name)
        if key in self._instances.by_name:
            raise Conflict(f"Instance {req.name} already exists")
        config = {k: v for k, v in src.config.items() if not k.startswith("volatile.")}
        config.update(req.config)

        def make(op: Operation) -> None:
            self._instances.by_name[key] = Instance(
                name=key, image=src.image, config=config,
                devices={**src.devices, **req.devices},
                profiles=src.profiles if req.profiles is None else req.profiles,
                description=req.description, project=project)
        return self._operations.run(make, description="Creating instance",
                                    resources={"instances": [instance_url(key)]},
                                    lock=f"instance:{key}", project=project)

    def rebuild(self, name: str, source: InstanceSource, *,
                project: str = "default") -> Operation:
        inst = self._instances.get(name, project=project)
        if inst.status is not Status.STOPPED:
            raise BadRequest("Instance must be stopped to be rebuilt")
        ref = "" if source.type == "none" else source.image_ref()

        def work(op: Operation) -> None:
            self.rebuilt.append((inst.name, ref))
        return self._operations.run(work, description="Rebuilding instance",
                                    resources={"instances": [instance_url(inst.name)]},
                                    lock=f"instance:{inst.name}", project=project)
class FakeInstanceMetadata:
    """``InstanceMetadataAPI`` in memory: one metadata dict and template files
    per instance (a name the fake instances lack is NotFound)."""

    def __init__(self, instances: FakeInstances) -> None:
        self._instances = instances
        self.meta: dict[str, dict[str, Any]] = {}
        self.files: dict[str, dict[str, bytes]] = {}

    def _known(self, name: str, project: str) -> str:
        self._instances.get(name, project=project)  # NotFound as the real one
        return name

    def get(self, name: str, *, project: str = "default") -> dict[str, Any]:
        return dict(self.meta.get(self._known(name, project), {"templates": {}}))

    def put(self, name: str, body: object, *, project: str = "default") -> None:
        if not isinstance(body, dict):
            raise BadRequest("metadata must be an object")
        self.meta[self._known(name, project)] = dict(body)

    def template_names(self, name: str, *, project: str = "default") -> list[str]:
        return sorted(self.files.get(self._known(name, project), {}))

    def template_get(self, name: str, path: str, *, project: str = "default") -> bytes:
        try:
            return self.files[self._known(name, project)][path]
        except KeyError:
            raise NotFound("Template not found") from None

    def template_put(self, name: str, path: str, data: bytes, *,
                     project: str = "default") -> None:
        self.files.setdefault(self._known(name, project), {})[path] = data

    def template_delete(self, name: str, path: str, *, project: str = "default") -> None:
        if self.files.get(self._known(name, project), {}).pop(path, None) is None:
            raise NotFound("Template not found")


class FakeOci:
    """``OciImagesAPI`` in memory: ``archives`` records each upload's ref."""

    def __init__(self, operations: Operations) -> None:
        self.archives: list[str | None] = []
        self._operations = operations

    def import_archive(self, path: Path, ref: str | None = None, *, public: bool = False,
                       aliases: list[str] | None = None, filename: str = "",
                       project: str = "default") -> Operation:
        self.archives.append(ref)
        path.unlink(missing_ok=True)
        return self._operations.run(lambda op: None, description="Importing image",
                                    resources={"images": []}, project=project)

    def import_oci_layout(self, layout: Path, ref: str | None, *, op: Operation,
                          project: str = "default", aliases: list[str] | None = None,
                          source_label: str = "", public: bool = False) -> str:
        raise NotFound("no layouts in the fake")


class FakeRegistryPulls:
    """``RegistryPullsAPI`` in memory: ``pulls``, ``creates`` and ``pushes``
    record what was asked (a pull's result fingerprint is ``PULLED``)."""

    PULLED = "ab" * 32

    def __init__(self, operations: Operations) -> None:
        self.pulls: list[tuple[dict[str, Any], list[str] | None, bool, str]] = []
        self.creates: list[tuple[str, dict[str, Any], str]] = []
        self.pushes: list[tuple[str, dict[str, Any], str]] = []
        self._operations = operations

    def pull(self, src: InstanceSource, *, aliases: list[str] | None = None,
             public: bool = False, project: str = "default") -> Operation:
        self.pulls.append((src.to_wire(), aliases, public, project))

        def work(op: Operation) -> None:
            op.update(fingerprint=self.PULLED, size=1)
        return self._operations.run(work, description="Downloading image", project=project)

    def create_instance(self, req: InstancesPost, *, project: str = "default") -> Operation:
        self.creates.append((req.name, req.source.to_wire(), project))
        return self._operations.run(lambda op: None, description="Creating instance",
                                    project=project)

    def push(self, fingerprint: str, dest: InstanceSource, *,
             project: str = "default") -> Operation:
        self.pushes.append((fingerprint, dest.to_wire(), project))
        return self._operations.run(lambda op: None, description="Pushing image",
                                    project=project)


class FakePublisher:
    """``PublisherAPI`` in memory: ``published`` records each publish asked
    for (its operation's fingerprint is ``PUBLISHED``); ``exports`` maps a
    fingerprint to its parts as ``(name, filename, bytes)``."""

    PUBLISHED = "cd" * 32

    def __init__(self, operations: Operations, images: FakeImages) -> None:
        self.published: list[dict[str, Any]] = []
        self.exports: dict[str, list[tuple[str, str, bytes]]] = {}
        self._operations = operations
        self._images = images

    def publish(self, source_type: str, name: str, *, aliases: list[str] | None = None,
                properties: dict[str, str] | None = None, public: bool = False,
                filename: str = "", project: str = "default") -> Operation:
        self.published.append({"type": source_type, "name": name, "aliases": aliases,
                               "properties": properties, "public": public,
                               "project": project})

        def work(op: Operation) -> None:
            op.update(fingerprint=self.PUBLISHED, size=1)

        return self._operations.run(work, description="Publishing image")

    def export(self, fingerprint: str, *, project: str = "default") -> list[ExportPart]:
        img = self._images.get(fingerprint, project=project)
        return [ExportPart(n, f, len(b), functools.partial(io.BytesIO, b))
                for n, f, b in self.exports.get(img.fingerprint, [])]


class FakeImagePulls:
    """``ImagePullsAPI`` in memory: ``pulls`` records each pull or remote
    create asked for (the source's wire form) once the real ``check_source``
    passed it; the operations succeed."""

    def __init__(self, operations: Operations) -> None:
        self.pulls: list[dict[str, Any]] = []
        self._operations = operations

    def pull(self, src: InstanceSource, *, aliases: list[str] | None = None,
             public: bool = False, auto_update: bool = False,
             project: str = "default") -> Operation:
        check_source(src)  # the real checks: they are pure
        self.pulls.append({"source": src.to_wire(), "aliases": aliases, "public": public,
                           "auto_update": auto_update, "project": project})
        return self._operations.run(lambda op: None, description="Downloading image")

    def create_instance(self, req: InstancesPost, *, project: str = "default") -> Operation:
        check_source(req.source)
        self.pulls.append({"source": req.source.to_wire(), "name": req.name,
                           "project": project})
        return self._operations.run(lambda op: None, description="Creating instance")


class FakeBackups:
    """``BackupsAPI`` in memory: ``by_key`` maps (instance key, name) to the
    record and ``data`` to its tarball's bytes; ``imported`` records each import."""

    def __init__(self, operations: Operations, instances: FakeInstances) -> None:
        self.by_key: dict[tuple[str, str], Backup] = {}
        self.data: dict[tuple[str, str], bytes] = {}
        self.imported: list[tuple[bytes, str, str, str]] = []
        self._operations = operations
        self._instances = instances

    def all(self, name: str, *, project: str = "default") -> list[Backup]:
        key = self._instances.get(name, project=project).name
        return [b for (k, _), b in sorted(self.by_key.items()) if k == key]

    def get(self, name: str, backup: str, *, project: str = "default") -> Backup:
        key = self._instances.get(name, project=project).name
        try:
            return self.by_key[(key, backup)]
        except KeyError:
            raise NotFound(f"Backup not found: {backup}") from None

    def open(self, name: str, backup: str, *, project: str = "default") -> BinaryIO:
        import io

        b = self.get(name, backup, project=project)
        return io.BytesIO(self.data.get((b.instance, b.name), b""))

    def _op(self, key: str, fn: Callable[[Operation], Any]) -> Operation:
        return self._operations.run(fn, description="Backup",
                                    resources={"instances": [instance_url(key)]},
                                    lock=f"instance:{key}")

    def create(self, name: str, backup: str = "", *, project: str = "default",
               expires_at: float = 0.0, instance_only: bool = False,
               optimized_storage: bool = False, compression: str = "",
               since: str = "") -> Operation:
        inst = self._instances.get(name, project=project)
        backup = backup or f"backup{len(self.all(name, project=project))}"
        if "/" in backup:
            raise BadRequest("Backup names may not contain slashes")
        if (inst.name, backup) in self.by_key:
            raise Conflict(f"Backup {backup!r} already exists")
        record = Backup(instance=inst.name, name=backup, file="f" + backup,
                        created_at=1700000001.0, expires_at=expires_at,
                        instance_only=instance_only, compression=compression or "gzip")

        def work(op: Operation) -> Backup:
            self.by_key[(inst.name, backup)] = record
            self.data[(inst.name, backup)] = b"tarball of " + inst.name.encode()
            return record
        return self._op(inst.name, work)

    def rename(self, name: str, backup: str, new_name: str, *,
               project: str = "default") -> Operation:
        b = self.get(name, backup, project=project)

        def work(op: Operation) -> None:
            del self.by_key[(b.instance, backup)]
            b.name = new_name
            self.by_key[(b.instance, new_name)] = b
        return self._op(b.instance, work)

    def delete(self, name: str, backup: str, *, project: str = "default") -> Operation:
        b = self.get(name, backup, project=project)
        return self._op(b.instance, lambda op: self.by_key.pop((b.instance, backup)))

    def import_file(self, path: Path, *, name: str = "", pool: str = "",
                    project: str = "default") -> Operation:
        data = path.read_bytes()
        path.unlink()
        if not data.startswith(b"\x1f\x8b"):
            raise BadRequest("not a valid backup archive")
        self.imported.append((data, name, pool, project))
        return self._op(instance_key(project, name or "imported"), lambda op: None)


class FakeSnapshots:
    """``SnapshotsAPI`` in memory: ``by_key`` maps (instance key, name) to
    the record; ``restored`` records each restore asked for."""

    def __init__(self, operations: Operations, instances: FakeInstances) -> None:
        self.by_key: dict[tuple[str, str], Snapshot] = {}
        self.restored: list[tuple[str, str]] = []
        self._operations = operations
        self._instances = instances

    def all(self, name: str, *, project: str = "default") -> list[Snapshot]:
        key = self._instances.get(name, project=project).name
        return [s for (k, _), s in sorted(self.by_key.items()) if k == key]

    def by_instance(self, keys: list[str]) -> dict[str, list[Snapshot]]:
        return {k: [s for (i, _), s in sorted(self.by_key.items()) if i == k] for k in keys}

    def get(self, name: str, snapshot: str, *, project: str = "default") -> Snapshot:
        key = self._instances.get(name, project=project).name
        try:
            return self.by_key[(key, snapshot)]
        except KeyError:
            raise NotFound(f"Snapshot not found: {snapshot}") from None

    def _op(self, key: str, fn: Callable[[Operation], Any]) -> Operation:
        return self._operations.run(fn, description="Snapshot",
                                    resources={"instances": [instance_url(key)]},
                                    lock=f"instance:{key}")

    def create(self, name: str, snapshot: str | None = None, *, project: str = "default",
               stateful: bool = False, expires_at: float | None = None,
               description: str = "") -> Operation:
        from cove.model.names import validate_snapshot_name

        inst = self._instances.get(name, project=project)
        snap = validate_snapshot_name(snapshot or f"snap{len(self.all(name, project=project))}")
        if (inst.name, snap) in self.by_key:
            raise Conflict(f"Snapshot {snap!r} already exists")
        record = Snapshot(instance=inst.name, name=snap, dir="d" + snap,
                          created_at=1700000001.0, expires_at=expires_at or 0.0,
                          config=dict(inst.config), profiles=list(inst.profiles), size=4096)

        def work(op: Operation) -> Snapshot:
            self.by_key[(inst.name, snap)] = record
            return record
        return self._op(inst.name, work)

    def update(self, name: str, snapshot: str, *, project: str = "default",
               description: str | None = None, expires_at: float | None = None) -> Snapshot:
        snap = self.get(name, snapshot, project=project)
        if expires_at is not None:
            snap.expires_at = expires_at
        return snap

    def rename(self, name: str, snapshot: str, new_name: str, *,
               project: str = "default") -> Operation:
        snap = self.get(name, snapshot, project=project)

        def work(op: Operation) -> None:
            del self.by_key[(snap.instance, snapshot)]
            snap.name = new_name
            self.by_key[(snap.instance, new_name)] = snap
        return self._op(snap.instance, work)

    def delete(self, name: str, snapshot: str, *, project: str = "default") -> Operation:
        snap = self.get(name, snapshot, project=project)
        return self._op(snap.instance,
                        lambda op: self.by_key.pop((snap.instance, snapshot)) and None)

    def restore(self, name: str, snapshot: str, *, project: str = "default",
                stateful: bool = False) -> Operation:
        snap = self.get(name, snapshot.rsplit("/", 1)[-1], project=project)
        return self._op(snap.instance,
                        lambda op: self.restored.append((snap.instance, snap.name)))


class FakeResources:
    """``ResourcesAPI``: a fixed two-CPU host."""

    def get(self) -> dict[str, Any]:
        return {"cpu": {"architecture": "x86_64", "sockets": [], "total": 2},
                "memory": {"nodes": [], "used": 1, "total": 2}}


class FakeApps:
    """``AppsAPI``: a start with another command, recorded in ``once``."""

    def __init__(self, instances: FakeInstances) -> None:
        self.instances = instances
        self.once: list[tuple[str, list[str]]] = []

    def start_once(self, name: str, command: list[str], *, project: str = "default",
                   wait_for_lock: float = 0) -> Operation:
        self.once.append((name, list(command)))
        return self.instances.change_state(name, "start", project=project)


class FakeEngine:
    """The fake services composed as ``Engine`` composes the real ones, plus
    the real ``Trust`` (on a store in ``root``), ``Operations`` and
    ``EventBus``. Satisfies ``EngineAPI``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = Store(root / "cove.db")
        self.events = EventBus()
        self.operations = Operations(
            on_change=lambda op: self.events.publish("operation", op.to_dict()))
        self.images = FakeImages(self.operations)
        self.instances = FakeInstances(self.operations, self.images)
        self.access = FakeAccess(root, self.operations, self.instances)
        self.console = FakeConsole(self.instances)
        self.networks = FakeNetworks(self.instances)
        self.profiles = FakeProfiles(self.store, self.instances, self.events)
        self.trust = Trust(root, self.store, self.events, time.time)
        self.metrics = FakeMetrics(self.instances)
        self.resources = FakeResources()
        self.snapshots = FakeSnapshots(self.operations, self.instances)
        self.copies = FakeCopies(self.operations, self.instances)
        self.apps = FakeApps(self.instances)
        self.publisher = FakePublisher(self.operations, self.images)
        self.oci = FakeOci(self.operations)
        self.metadata = FakeInstanceMetadata(self.instances)
        self.registry_pulls = FakeRegistryPulls(self.operations)
        self.backups = FakeBackups(self.operations, self.instances)
        self.image_pulls = FakeImagePulls(self.operations)
        self.projects = Projects(self.store, self.operations, self.events)
        self.profiles.bind_projects(self.projects.profiles_project)
        self.projects.bind(self.profiles)
        # the real storage service on the store in ``root`` (it sees the store's
        # instances, so volume used_by is empty for FakeInstances' ones)
        self.storage = Storage(root, self.store, self.profiles, self.events, time.time)
        self.storage.bind_projects(self.projects.volumes_project)

    # -- helpers for tests ---------------------------------------------------------
    def add(self, name: str, status: Status = Status.RUNNING, *, project: str = "default",
            **kw: Any) -> Instance:
        """Put an instance (of ``project``) in the table, as if created."""
        key = instance_key(project, name)
        inst = Instance(name=key, image="f" * 64, status=status, created_at=1700000000.5,
                        project=project, **kw)
        self.instances.by_name[key] = inst
        return inst

    def add_image(self, fingerprint: str, *aliases: str) -> Image:
        return self.images.add(fingerprint, *aliases)

    # -- the engine's own calls ------------------------------------------------------
    def server_environment(self) -> dict[str, Any]:
        return {"driver": "runc", "driver_version": "1.1.5", "kernel_version": "6.1.0"}

    def startup(self) -> None:
        pass

    def close(self) -> None:
        self.store.close()


def _feed(fd: int, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError):
        os.write(fd, data)
    os.close(fd)


def run_app(fake: FakeEngine, fn: Callable[[TestClient[web.Request, web.Application]],
                                           Awaitable[None]]) -> None:
    """Serve ``fake`` in process and run ``fn(client)`` against it."""
    async def main() -> None:
        app = make_app(fake)
        async with TestClient(TestServer(app)) as client:
            await fn(client)
    asyncio.run(main())


async def wait_op(client: TestClient[web.Request, web.Application], url: str,
                  timeout: float = 10) -> dict[str, Any]:
    resp = await client.get(f"{url}/wait?timeout={timeout}")
    assert resp.status == 200
    body = await resp.json()
    return cast(dict[str, Any], body["metadata"])


@contextlib.contextmanager
def serve_unix(fake: FakeEngine, path: Path) -> Iterator[Path]:
    """Serve ``fake`` on a real unix socket from a background thread."""
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    runner: list[web.AppRunner] = []

    async def main() -> None:
        r = web.AppRunner(make_app(fake), shutdown_timeout=2)
        await r.setup()
        runner.append(r)
        await web.SockSite(r, bind_unix(path)).start()
        ready.set()
        await stop.wait()
        await r.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10), "server did not start"
    try:
        yield path
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)
        loop.close()
        path.unlink(missing_ok=True)


def have(binary: str) -> bool:
    return shutil.which(binary) is not None


def short_socket_path(tmp: Path) -> Path:
    """A socket path under 108 bytes (pytest's ``tmp_path`` can be longer)."""
    p = tmp / "s.sock"
    if len(str(p)) < 100:
        return p
    return Path(f"/tmp/cove-test-{os.getpid()}-{time.monotonic_ns()}.sock")

