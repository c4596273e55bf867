"""What a session call does on the LXD API, once for sync and asyncio.

Design notes:

* Each public call is a generator that yields the steps of
  ``sessions._steps`` and is sent each answer: ``SessionManager`` performs
  them with any sync driver (as API requests over a ``RestDriver``'s
  client, as ``lxc``/``cove`` commands over a ``CliDriver``, as engine
  calls over a ``LocalDriver``), ``AsyncSessionManager`` as requests over
  an ``AsyncRestDriver``. No algorithm exists twice.
* The realm is an LXD project (made on first use, sharing the default
  project's images and profiles) when the host has projects, else the
  driver's own project with the ``realm`` label alone; ``scoped`` puts
  every step of a flow in the realm's project once it is known.
* The in-flight guard is held by the server, so it holds across processes
  and hosts: the instance name is a function of (realm, user, app), so the
  create itself is the lock (a second create of the name fails), and until
  the start is done the instance carries ``state=starting``, the starter's
  random ``token`` and a ``lease`` (unix time). A start that finds a
  ``starting`` instance whose lease runs raises ``OperationInProgress``; one
  whose lease ran out was left by a starter that died, and is removed like
  any old session. Removing checks the token it saw, so a starter never
  removes the instance another starter has just made.
  Why so, and not a lock table in coved: it needs nothing LXD lacks (the
  conformance suite holds LXD to it), it cannot outlive the instance it
  guards, and a dead starter's lock expires on its own. The lease is the
  starter's clock: hosts that share a realm need clocks closer than the
  lease (120 s by default); ``sweep_stale`` removes what dead starters left.
* The app port is published by a proxy device on a port the kernel of the
  caller's machine says is free (``bind(0)``); two starts that pick the same
  one (or a program that takes it meanwhile) meet at the instance's start,
  which fails for one of them: it picks another and starts again. The
  device is a forwarder process (LXD's forkproxy), or with ``nat`` NAT
  rules and no process (the app listens on the instance's address then).
"""

from __future__ import annotations

import datetime
import errno
import math
import secrets
import socket
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cove import api
from cove.model.errors import BadRequest, Conflict, CoveError, Forbidden, NotFound
from cove.model.names import validate_instance_name
from cove.sessions import _steps as st
from cove.sessions._names import (
    LABEL,
    PORT_DEVICE,
    check_text,
    digest,
    disk_devices,
    limits_config,
    session_env,
    session_name,
)
from cove.sessions._steps import Pause, in_project

__all__ = [
    "MultipleResultsFound",
    "OperationInProgress",
    "Pause",
    "Realm",
    "Session",
    "SessionFlow",
    "find",
    "find_one",
    "image",
    "scoped",
    "start",
    "stop_and_remove",
    "sweep_stale",
]

T = TypeVar("T")


SessionFlow = Generator["st.SessionStep | Pause", Any, T]

_PORT_TRIES = 5
_REMOVE_WAIT = 60.0  # seconds a remove waits out others busy with the instance


class OperationInProgress(Conflict):
    """A start of the same (realm, user, app) is in flight, here or in
    another process or host; ``operation`` names it (``start NAME``)."""

    def __init__(self, message: str, operation: str) -> None:
        super().__init__(message)
        self.operation = operation


class MultipleResultsFound(CoveError):
    """``find_one`` matched more than one session."""


@dataclass(frozen=True)
class Session:
    """One app session: its instance ``name``, who and what it is for, and
    where its app answers (``ip``:``port``, behind ``urlpath``).

    ``status`` is the instance's (``Running``, ``Stopped``...) when it was
    read; ``skipped_volumes`` the host paths of a start that did not exist
    and were not mounted.
    """

    name: str
    user: str
    app_id: str
    url_id: str
    urlpath: str
    ip: str
    port: int
    image: str
    realm: str
    project: str | None = None
    status: str = "Running"
    skipped_volumes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-able data (a spawner's saved state, ``-f json``)."""
        return {"name": self.name, "user": self.user, "app_id": self.app_id,
                "url_id": self.url_id, "urlpath": self.urlpath, "ip": self.ip,
                "port": self.port, "image": self.image, "realm": self.realm,
                "project": self.project, "status": self.status,
                "skipped_volumes": list(self.skipped_volumes)}


def _pick_port(host: str) -> int:
    """A port the kernel says is free on ``host`` now (a clash later, with a
    concurrent start, is caught when the instance starts and retried)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, 0))
            return int(s.getsockname()[1])
    except OSError:
        # not an address of this machine: the server's host says at start
        return 20000 + secrets.randbelow(30000)


def _port_taken(host: str, port: int) -> bool:
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, port))
    except OSError as e:
        return e.errno == errno.EADDRINUSE
    return False


@dataclass
class Realm:
    """What every flow of one manager shares: the realm, how the app port is
    published, and (once ``resolve`` ran) the project it lives in."""

    name: str
    app_port: int = 8888
    host_address: str = "127.0.0.1"
    lease: float = 120.0
    use_project: bool = True
    nat: bool = False  # the app port published by NAT rules, not a forwarder
    project: str | None = None
    resolved: bool = False
    has_projects: bool | None = None  # the host's answer, once asked
    # a host port for the app: picked, and asked whether it is taken
    pick_port: Callable[[str], int] = field(default=_pick_port)
    port_taken: Callable[[str, int], bool] = field(default=_port_taken)


# -- plumbing -------------------------------------------------------------------------------

def scoped(flow: SessionFlow[T], realm: Realm) -> SessionFlow[T]:
    """``flow`` with each step in the realm's project (steps that name
    their project keep it)."""
    resp: Any = None
    error: BaseException | None = None
    while True:
        try:
            req = flow.throw(error) if error is not None else flow.send(resp)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        req = in_project(req, realm.project)
        try:
            resp, error = (yield req), None
        except CoveError as e:  # the drivers throw a step's failure in
            resp, error = None, e


def _get(name: str) -> SessionFlow[dict[str, Any] | None]:
    obj = yield st.GetInstance(name)
    return obj if isinstance(obj, dict) else None


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    config = obj.get("config") or {}
    return {k[len(LABEL):]: str(v) for k, v in config.items() if k.startswith(LABEL)}


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resolve(realm: Realm, *, create: bool = True) -> SessionFlow[bool]:
    """Find the realm's project, and make it when ``create`` (a start); once
    per manager. False: it is not there (and was not made), so the realm
    has nothing yet: reads answer empty rather than make it."""
    if realm.resolved:
        return True
    if realm.has_projects is None:
        realm.has_projects = bool((yield st.HasProjects(project="default")))
    if not (realm.use_project and realm.has_projects):
        realm.project, realm.resolved = None, True
        return True
    if (yield st.GetProject(realm.name, project="default")) is None:
        if not create:
            return False
        # images and profiles of the default project serve every realm
        body = {"name": realm.name, "description": "cove app sessions",
                "config": {"features.images": "false", "features.profiles": "false",
                           "features.storage.volumes": "false"}}
        try:
            yield st.CreateProject(body, project="default")
        except CoveError:
            # made meanwhile by another manager (whatever error the host
            # gives a duplicate): fine when it is there now
            if (yield st.GetProject(realm.name, project="default")) is None:
                raise
    realm.project, realm.resolved = realm.name, True
    return True


# -- images -----------------------------------------------------------------------------------

def image(realm: Realm, name: str) -> SessionFlow[api.Image | None]:
    """The image an alias or a fingerprint (or a unique prefix) names, or None."""
    if not isinstance(name, str) or not name or "/" in name or "\0" in name:
        return None
    there = yield from resolve(realm, create=False)
    # a realm not made yet will share the default project's images
    scope = None if there else "default"
    alias = yield st.GetAlias(name, project=scope)
    fingerprint = name if not isinstance(alias, dict) else str(alias.get("target") or "")
    if not fingerprint:
        return None
    found = yield st.GetImage(fingerprint, project=scope)
    return api.Image.from_wire(found) if isinstance(found, dict) else None


# -- finding -----------------------------------------------------------------------------------

def _session_of(obj: dict[str, Any], realm: Realm) -> Session | None:
    lab = _labels(obj)
    if lab.get("realm") != realm.name or lab.get("state") != "running":
        return None
    try:
        port = int(lab.get("port", ""))
    except ValueError:
        return None
    return Session(name=str(obj.get("name")), user=lab.get("user", ""),
                   app_id=lab.get("app", ""), url_id=lab.get("url-id", ""),
                   urlpath=lab.get("urlpath", ""), ip=lab.get("ip", realm.host_address),
                   port=port, image=lab.get("image", ""), realm=realm.name,
                   project=realm.project, status=str(obj.get("status") or ""))


def find(realm: Realm, *, user: str | None = None, app_id: str | None = None,
         url_id: str | None = None) -> SessionFlow[list[Session]]:
    """The realm's sessions matching all the given facts, by the server's
    ``?filter=`` on the labels (then checked exactly here)."""
    clauses = [f"config.{LABEL}realm eq {realm.name}", f"config.{LABEL}state eq running"]
    if user is not None:
        clauses.append(f"config.{LABEL}user-hash eq {digest(check_text('user', user))}")
    if app_id is not None:
        clauses.append(f"config.{LABEL}app-hash eq {digest(check_text('app id', app_id))}")
    if url_id is not None:
        if not isinstance(url_id, str) or not url_id.isalnum() or not url_id.isascii():
            return []  # no session has it (ours are hex)
        clauses.append(f"config.{LABEL}url-id eq {url_id}")
    if not (yield from resolve(realm, create=False)):
        return []
    objs = yield st.ListInstances(" and ".join(clauses))
    found = []
    for obj in objs:
        s = _session_of(obj, realm) if isinstance(obj, dict) else None
        if s is None or (user is not None and s.user != user) or \
                (app_id is not None and s.app_id != app_id) or \
                (url_id is not None and s.url_id != url_id):
            continue
        found.append(s)
    return sorted(found, key=lambda s: s.name)


def find_one(realm: Realm, *, user: str | None = None, app_id: str | None = None,
             url_id: str | None = None) -> SessionFlow[Session | None]:
    found = yield from find(realm, user=user, app_id=app_id, url_id=url_id)
    if len(found) > 1:
        raise MultipleResultsFound(f"{len(found)} sessions match user={user!r}, "
                                   f"app_id={app_id!r}, url_id={url_id!r}")
    return found[0] if found else None


# -- removing ------------------------------------------------------------------------------------

def _remove(name: str, token: str | None) -> SessionFlow[None]:
    """Stop (force) and delete ``name``; gone is done. With ``token``: only
    while the instance still carries that token (else another start owns it
    now: ``OperationInProgress``). Another remover (or start) busy with the
    instance meanwhile is waited out, up to ``_REMOVE_WAIT`` seconds."""
    deadline = time.monotonic() + _REMOVE_WAIT
    while True:
        obj = yield from _get(name)
        if obj is None:
            return
        if token is not None and _labels(obj).get("token") != token:
            raise OperationInProgress(f"Session {name} was replaced by another start "
                                      "meanwhile", f"start {name}")
        try:
            if str(obj.get("status")) not in ("Stopped", "Error"):
                yield st.ChangeState(name, "stop", force=True)
            yield st.DeleteInstance(name)
            return
        except NotFound:
            return
        except (BadRequest, Conflict):
            # stopped, started or locked by someone else meanwhile: look again
            if time.monotonic() > deadline:
                raise
        yield Pause(0.2)


def stop_and_remove(realm: Realm, name: str) -> SessionFlow[None]:
    """Stop and delete the session ``name``. Idempotent: gone is success.

    Raises:
        BadRequest: no instance name.
        Forbidden: the instance is not a session of this realm (untouched).
    """
    validate_instance_name(name)
    if not (yield from resolve(realm, create=False)):
        return
    obj = yield from _get(name)
    if obj is None:
        return
    owner = _labels(obj).get("realm")
    if owner != realm.name:
        raise Forbidden(f"Refusing to remove {name}: it belongs to "
                        f"{'realm ' + repr(owner) if owner else 'no session realm'}, "
                        f"not {realm.name!r}")
    yield from _remove(name, None)


def sweep_stale(realm: Realm) -> SessionFlow[list[str]]:
    """Remove the realm's starts whose lease ran out (their starter died);
    the names removed. Starts in flight are left alone."""
    if not (yield from resolve(realm, create=False)):
        return []
    clause = f"config.{LABEL}realm eq {realm.name} and config.{LABEL}state eq starting"
    removed = []
    for obj in (yield st.ListInstances(clause)):
        lab = _labels(obj) if isinstance(obj, dict) else {}
        if lab.get("realm") != realm.name or lab.get("state") != "starting":
            continue
        try:
            _guard(str(obj["name"]), obj)
        except OperationInProgress:
            continue
        try:
            yield from _remove(str(obj["name"]), lab.get("token"))
        except OperationInProgress:
            continue  # taken over meanwhile by a new start
        removed.append(str(obj["name"]))
    return removed


# -- starting --------------------------------------------------------------------------------------

def _guard(name: str, obj: dict[str, Any]) -> None:
    """Raise ``OperationInProgress`` when ``obj`` is a start in flight."""
    lab = _labels(obj)
    if lab.get("state") != "starting":
        return
    try:
        lease = float(lab.get("lease", "0"))
    except ValueError:
        lease = 0.0
    if lease > time.time():
        raise OperationInProgress(
            f"Session {name} is being started (user {lab.get('user')!r}, app "
            f"{lab.get('app')!r}, since {lab.get('since', '?')}, lease until "
            f"{_iso(lease)}): operation 'start {name}' token {lab.get('token')}",
            f"start {name}")


def _proxy(realm: Realm, port: int) -> dict[str, str]:
    host = f"[{realm.host_address}]" if ":" in realm.host_address else realm.host_address
    if realm.nat:
        # 0.0.0.0: the instance's own address (LXD's rule for NAT)
        return {"type": "proxy", "nat": "true", "listen": f"tcp:{host}:{port}",
                "connect": f"tcp:0.0.0.0:{realm.app_port}"}
    return {"type": "proxy", "listen": f"tcp:{host}:{port}",
            "connect": f"tcp:127.0.0.1:{realm.app_port}"}


def _start_on_a_port(realm: Realm, name: str, port: int) -> SessionFlow[int]:
    """Start ``name``; when its port was taken meanwhile (another start or
    program got it first), publish another and try again. Returns the port."""
    for attempt in range(_PORT_TRIES):
        try:
            yield st.ChangeState(name, "start")
            return port
        except CoveError as e:
            # a NAT-published port binds nothing: the host's Conflict says it
            # is another instance's (or a listener's)
            clash = realm.port_taken(realm.host_address, port) or (
                realm.nat and isinstance(e, Conflict))
            if attempt + 1 == _PORT_TRIES or not clash:
                raise
        port = realm.pick_port(realm.host_address)
        yield st.PatchInstance(name, {"devices": {PORT_DEVICE: _proxy(realm, port)},
                                      "config": {f"{LABEL}port": str(port)}})
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class StartRequest:
    user: str
    image: str
    app_id: str
    base_urlpath: str
    volumes: Any = None
    environment: Any = None
    limits: Any = None
    profiles: Any = None
    config: Any = None


def _check(req: StartRequest, exists: Callable[[str], bool]) -> tuple[
        dict[str, dict[str, str]], list[str], dict[str, str]]:
    check_text("user", req.user)
    check_text("app id", req.app_id)
    if not isinstance(req.image, str) or not req.image:
        raise BadRequest(f"Bad image {req.image!r}")
    if not isinstance(req.base_urlpath, str) or not req.base_urlpath.startswith("/"):
        raise BadRequest(f"Bad base_urlpath {req.base_urlpath!r}: a path starting with '/'")
    devices, skipped = disk_devices(req.volumes, exists)
    config = {str(k): str(v) for k, v in (req.config or {}).items()}
    if any(k.startswith(LABEL) for k in config):
        raise BadRequest(f"config keys {LABEL}* are the session's own")
    config.update(limits_config(req.limits))
    return devices, skipped, config


def start(realm: Realm, req: StartRequest, exists: Callable[[str], bool]) -> SessionFlow[Session]:
    """Start a fresh session of (user, app); see ``SessionManager.start``."""
    devices, skipped, config = _check(req, exists)
    name = session_name(realm.name, req.user, req.app_id)
    img = yield from image(realm, req.image)
    if img is None:
        raise NotFound(f"No image {req.image!r}")
    yield from resolve(realm)
    old = yield from _get(name)
    if old is not None:
        _guard(name, old)
        yield from _remove(name, _labels(old).get("token"))
    url_id = secrets.token_hex(8)
    urlpath = req.base_urlpath.rstrip("/") + "/containers/" + url_id
    token = secrets.token_hex(8)
    port = realm.pick_port(realm.host_address)
    env = session_env(req.user, url_id, req.base_urlpath, req.environment)
    now = time.time()
    labels = {"realm": realm.name, "user": req.user, "app": req.app_id,
              "user-hash": digest(req.user), "app-hash": digest(req.app_id),
              "url-id": url_id, "urlpath": urlpath, "image": req.image,
              "ip": realm.host_address, "port": str(port), "state": "starting",
              "token": token, "since": _iso(now), "lease": str(math.ceil(now + realm.lease))}
    config.update({f"environment.{k}": v for k, v in env.items()})
    config.update({LABEL + k: v for k, v in labels.items()})
    devices[PORT_DEVICE] = _proxy(realm, port)
    post = api.InstancesPost(
        name=name, source=api.InstanceSource.from_wire(
            {"type": "image", "fingerprint": img.fingerprint}),
        config=config, devices=devices,
        profiles=list(req.profiles) if req.profiles is not None else None)
    try:
        yield st.CreateInstance(post)
    except CoveError as e:
        # the name is the lock: a create that lost it finds another's start
        now_there = yield from _get(name)
        if now_there is not None and _labels(now_there).get("token") != token:
            _guard(name, now_there)
            raise OperationInProgress(f"Session {name} was made by another start meanwhile",
                                      f"start {name}") from None
        if now_there is None and isinstance(e, Conflict):
            # the other create is still running (coved names its operation)
            raise OperationInProgress(f"Session {name} is being made by another start: {e}",
                                      f"start {name}") from None
        if now_there is not None:
            yield from _remove(name, token)
        raise
    try:
        port = yield from _start_on_a_port(realm, name, port)
        mine = yield from _get(name)
        if mine is None or _labels(mine).get("token") != token:
            # stopped (and maybe started again by another) while we started
            raise OperationInProgress(f"Session {name} was removed or replaced while "
                                      "this start ran", f"start {name}")
        yield st.PatchInstance(name, {"config": {f"{LABEL}state": "running"}})
    except CoveError:
        yield from _remove(name, token)  # a failed start leaves nothing
        raise
    return Session(name=name, user=req.user, app_id=req.app_id, url_id=url_id, urlpath=urlpath,
                   ip=realm.host_address, port=port, image=req.image, realm=realm.name,
                   project=realm.project, status="Running", skipped_volumes=tuple(skipped))
