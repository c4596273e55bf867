"""``SessionManager`` and ``AsyncSessionManager``: the flows of
``sessions._flows`` driven over any sync driver (REST, CLI, in-process) or,
as coroutines, over an ``AsyncRestDriver``."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from cove.client._flow import adrive, drive
from cove.client.drivers.base import Driver
from cove.client.drivers.cli import CliDriver
from cove.client.drivers.local import LocalDriver
from cove.model.errors import BadRequest
from cove.sessions import _flows as flows
from cove.sessions import _perform_host, _perform_rest
from cove.sessions._flows import Realm, Session, StartRequest
from cove.sessions._names import check_realm
from cove.sessions._steps import Pause, SessionStep

if TYPE_CHECKING:
    from cove import api
    from cove.client._http import Response
    from cove.client._wire import Request

__all__ = ["AsyncSessionManager", "SessionManager"]

T = TypeVar("T")
Volumes = Mapping[str, Mapping[str, str]]


def _realm(realm: str, app_port: int, host_address: str, lease: float,
           use_project: bool, publish: str) -> Realm:
    if not isinstance(app_port, int) or not 0 < app_port < 65536:
        raise BadRequest(f"Bad app_port {app_port!r}: a TCP port (1-65535)")
    if not isinstance(host_address, str) or not host_address:
        raise BadRequest(f"Bad host_address {host_address!r}")
    if not isinstance(lease, (int, float)) or lease <= 0:
        raise BadRequest(f"Bad lease {lease!r}: seconds, more than 0")
    if publish not in ("proxy", "nat"):
        raise BadRequest(f"Bad publish {publish!r}: 'proxy' or 'nat'")
    if publish == "nat" and ":" in host_address:
        raise BadRequest(f"Bad host_address {host_address!r}: publish='nat' is IPv4 only")
    return Realm(name=check_realm(realm), app_port=app_port, host_address=host_address,
                 lease=float(lease), use_project=use_project, nat=publish == "nat")


def _name_of(session: Session | str) -> str:
    return session.name if isinstance(session, Session) else session


class _Common:
    """What both managers say the same way."""

    realm: Realm

    @property
    def project(self) -> str | None:
        """The project the realm lives in (None: the driver's own; known
        after the first call)."""
        return self.realm.project

    def _start(self, user: str, image: str, app_id: str, base_urlpath: str,
               volumes: Volumes | None, environment: Mapping[str, Any] | None,
               limits: Mapping[str, Any] | None, profiles: Sequence[str] | None,
               config: Mapping[str, Any] | None) -> flows.SessionFlow[Session]:
        req = StartRequest(user=user, image=image, app_id=app_id, base_urlpath=base_urlpath,
                           volumes=volumes, environment=environment, limits=limits,
                           profiles=profiles, config=config)
        return flows.scoped(flows.start(self.realm, req, self.path_exists), self.realm)

    # a volume's host path is looked for here (simphony's rule): the sessions
    # of a local cove host; a caller on another machine passes its own test
    path_exists: Callable[[str], bool] = staticmethod(os.path.exists)


class SessionManager(_Common):
    """App sessions of one realm on a cove (or LXD) host: one container per
    (user, app), found by labels, reached on a published host port.

    ``driver`` is any sync driver: a ``RestDriver`` (or a
    ``cove.client.Client``) on coved, LXD or Incus, a ``CliDriver`` driving
    ``lxc`` or ``cove``, or a ``LocalDriver``. ``realm``
    names the realm (letters, digits, ``-``): its project when the host has
    projects (made on first use; ``use_project=False``: the driver's project,
    told apart by labels). ``app_port`` is the app's port in the container,
    published on a free port of ``host_address``: by a forwarder process
    (``publish="proxy"``, LXD's proxy device: the app may listen on the
    container's loopback), or by NAT rules (``publish="nat"``, the proxy
    device's ``nat=true``: no process, but the app must listen on the
    container's NIC address, the instance needs a NIC on a bridge network,
    and LXD needs that NIC's address static). ``lease``: seconds a start
    may take before another start may take over its (realm, user, app).

    Every method raises ``cove.model.errors`` classes (``BadRequest`` for bad
    arguments, before anything is made) and ``ConnectionFailed``.
    """

    def __init__(self, driver: Any, realm: str = "cove", app_port: int = 8888,
                 host_address: str = "127.0.0.1", *, lease: float = 120.0,
                 use_project: bool = True, publish: str = "proxy") -> None:
        self._perform: Callable[[SessionStep], Any]
        if isinstance(driver, CliDriver):
            self._perform = lambda step: _perform_host.perform_cli(driver, step)
        elif isinstance(driver, LocalDriver):
            self._perform = lambda step: _perform_host.perform_local(driver, step)
        else:
            # a RestDriver's client, or anything that sends one request and
            # gives the whole response (a Client)
            client = getattr(driver, "client", None if isinstance(driver, Driver) else driver)
            send = getattr(client, "send", None)
            if send is None or inspect.iscoroutinefunction(send):
                raise BadRequest(f"{driver!r} is no sync cove driver: SessionManager takes a "
                                 "RestDriver (or a Client), a CliDriver or a LocalDriver; "
                                 "AsyncSessionManager takes an AsyncRestDriver")
            self._send: Callable[[Request], Response] = send
            self._perform = lambda step: drive(_perform_rest.perform(step), self._send)
        self.driver = driver
        self.realm = _realm(realm, app_port, host_address, lease, use_project, publish)

    def _do(self, what: SessionStep | Pause) -> Any:
        if isinstance(what, Pause):
            time.sleep(what.seconds)
            return None
        return self._perform(what)

    def _run(self, flow: flows.SessionFlow[T]) -> T:
        return drive(flows.scoped(flow, self.realm), self._do)

    def start(self, user: str, image: str, app_id: str, *, base_urlpath: str,
              volumes: Volumes | None = None, environment: Mapping[str, Any] | None = None,
              limits: Mapping[str, Any] | None = None, profiles: Sequence[str] | None = None,
              config: Mapping[str, Any] | None = None) -> Session:
        """Start a fresh session of ``app_id`` for ``user`` from ``image``
        (an alias or fingerprint) and return it once its instance runs.

        A session of the same user and app is stopped and removed first.
        The app's port is published on a free port of the host; the app gets
        ``environment`` with ``JPY_USER``, ``JPY_BASE_USER_URL``, ``USER``
        and ``URL_ID`` on top. ``volumes`` (``{host_path: {"bind": path,
        "mode": "ro"|"rw"}}``) become disk devices; missing host paths are
        skipped and listed in ``Session.skipped_volumes``. ``limits`` are
        ``limits.*`` keys (the prefix may be left out); ``profiles`` and
        ``config`` go to the instance as given. Not idempotent: each call
        is a new start; one that fails removes what it made.

        Raises:
            OperationInProgress: a start of the same user and app is in
                flight (any process, any host); nothing is touched.
            NotFound: no such image.
            BadRequest: bad arguments (a volume path with ``..``...).
        """
        return drive(self._start(user, image, app_id, base_urlpath, volumes, environment,
                                 limits, profiles, config), self._do)

    def stop_and_remove(self, session: Session | str) -> None:
        """Stop and delete a session (or the instance named so). Idempotent,
        also when others remove it at the same time. A start of it in flight
        is cut short (that start fails, as a hub's cancelled spawn should).

        Raises:
            Forbidden: it is no session of this realm (nothing is touched).
        """
        self._run(flows.stop_and_remove(self.realm, _name_of(session)))

    def find(self, *, user: str | None = None, app_id: str | None = None,
             url_id: str | None = None) -> list[Session]:
        """The realm's sessions matching all the given facts (all: every one)."""
        return self._run(flows.find(self.realm, user=user, app_id=app_id, url_id=url_id))

    def find_one(self, *, user: str | None = None, app_id: str | None = None,
                 url_id: str | None = None) -> Session | None:
        """The one session matching, or None.

        Raises:
            MultipleResultsFound: more than one matches.
        """
        return self._run(flows.find_one(self.realm, user=user, app_id=app_id, url_id=url_id))

    def image(self, name: str) -> api.Image | None:
        """The image ``name`` (alias or fingerprint) names, or None."""
        return self._run(flows.image(self.realm, name))

    def sweep_stale(self) -> list[str]:
        """Remove the instances of starts whose starter died (their lease ran
        out; a new start of the same user and app would remove them too);
        returns their names. Idempotent."""
        return self._run(flows.sweep_stale(self.realm))


class AsyncSessionManager(_Common):
    """``SessionManager`` for asyncio over an ``AsyncRestDriver``: the same
    methods, as coroutines, the same flows."""

    def __init__(self, driver: Any, realm: str = "cove", app_port: int = 8888,
                 host_address: str = "127.0.0.1", *, lease: float = 120.0,
                 use_project: bool = True, publish: str = "proxy") -> None:
        if not inspect.iscoroutinefunction(getattr(driver, "send", None)):
            raise BadRequest(f"{driver!r} is no asyncio REST driver: AsyncSessionManager "
                             "needs an AsyncRestDriver")
        self.driver = driver
        self.realm = _realm(realm, app_port, host_address, lease, use_project, publish)

    async def _do(self, what: SessionStep | Pause) -> Any:
        if isinstance(what, Pause):
            await asyncio.sleep(what.seconds)
            return None
        return await adrive(_perform_rest.perform(what), self.driver.send)

    async def _run(self, flow: flows.SessionFlow[T]) -> T:
        return await adrive(flows.scoped(flow, self.realm), self._do)

    async def start(self, user: str, image: str, app_id: str, *, base_urlpath: str,
                    volumes: Volumes | None = None,
                    environment: Mapping[str, Any] | None = None,
                    limits: Mapping[str, Any] | None = None,
                    profiles: Sequence[str] | None = None,
                    config: Mapping[str, Any] | None = None) -> Session:
        """See ``SessionManager.start``."""
        return await adrive(self._start(user, image, app_id, base_urlpath, volumes,
                                        environment, limits, profiles, config),
                            self._do)

    async def stop_and_remove(self, session: Session | str) -> None:
        """See ``SessionManager.stop_and_remove``."""
        await self._run(flows.stop_and_remove(self.realm, _name_of(session)))

    async def find(self, *, user: str | None = None, app_id: str | None = None,
                   url_id: str | None = None) -> list[Session]:
        """See ``SessionManager.find``."""
        return await self._run(flows.find(self.realm, user=user, app_id=app_id, url_id=url_id))

    async def find_one(self, *, user: str | None = None, app_id: str | None = None,
                       url_id: str | None = None) -> Session | None:
        """See ``SessionManager.find_one``."""
        return await self._run(flows.find_one(self.realm, user=user, app_id=app_id,
                                              url_id=url_id))

    async def image(self, name: str) -> api.Image | None:
        """See ``SessionManager.image``."""
        return await self._run(flows.image(self.realm, name))

    async def sweep_stale(self) -> list[str]:
        """See ``SessionManager.sweep_stale``."""
        return await self._run(flows.sweep_stale(self.realm))
