"""``CoveSpawner``: a JupyterHub spawner that runs each user's server as a
cove app session.

Design notes:

* A server is one session of ``cove.sessions.AsyncSessionManager`` in the
  spawner's realm (a cove project): the instance name, the labels a
  restarted hub finds it by, the in-flight guard held by coved, the host
  port the app port is published on and the clean-up of a failed start are
  the session manager's. The spawner adds what JupyterHub needs on top: the
  command (``cove.cmd``), the hub's environment, limits and volumes from
  the hub's config, and a way back to the hub.
* The way back to the hub: the single-user server calls the hub's API
  (``JUPYTERHUB_API_URL``). The hub usually listens on loopback, which a
  container's network namespace does not share. So the spawner keeps one
  profile per hub (``jupyterhub-<hash of the API address>``) holding a
  ``proxy`` device with ``bind=instance``: it listens on the container's
  own ``127.0.0.1:<hub port>`` and connects on the host to the hub's API
  address, and the server is given ``http://127.0.0.1:<hub port>/hub/api``.
  No bridge, route or firewall rule is needed, the hub may stay on
  loopback, and LXD has the same device. ``hub_connect="direct"`` leaves
  the URL alone (a hub on an address the containers route to).
* The hub's profile goes with the hub's last server: ``stop`` deletes it
  when no spawn of this process is using it and no instance is (the host
  refuses to delete a profile in use, so another hub process's servers
  keep it). The profile carries ``user.cove.jupyterhub.seen``, the last
  time a hub made sure of it; a hub makes sure again when its own check
  is older than half of ``hub_profile_ttl``. So orphans (a hub killed, or
  moved to another port) are swept once per hub process: a CoveSpawner
  profile that no instance uses and that no hub has seen for
  ``hub_profile_ttl`` is deleted, which never breaks a live hub (it made
  sure of its profile within the last half of that time, and will again
  before its next spawn). Sweeping is idempotent.
* The app listens on ``0.0.0.0:app_port`` inside; the hub (and its proxy)
  reach it on the published ``host_address:port`` that ``start`` returns.
* State is the session's instance name and realm. A hub restarted with
  ``cleanup_servers = False`` loads it and ``poll`` finds the container by
  its labels; a coved that cannot be reached makes ``poll`` say "running"
  (a hub must not drop servers because cove restarted).
* A hub killed after its spawn made the container but before it saved the
  state (it records the server before it starts it, the state after) left
  a container it has no name of. Restarted, it polls that server. As
  DockerSpawner finds its container by name, not by a saved id, ``poll``
  finds the server's running session by its labels and adopts it; the hub
  then reads its address (``get_url``, from the labels) and waits for it
  to answer: it keeps a server that answers, and stops one that does not
  (JupyterHub calls ``stop`` only for a server ``poll`` says runs). A
  start the dead hub left half-way (``state=starting``) is no server: its
  lease runs out and ``cove session sweep`` (or the next spawn) removes
  it. ``stop`` removes the server's session by its name, a function of
  (realm, user, server), with or without a state.
* One ``AsyncRestDriver`` per endpoint (and project) is shared by all
  spawners of the hub process: one connection pool, not one per user.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import shlex
import time
from typing import Any
from urllib.parse import urlparse, urlunparse

from jupyterhub.spawner import Spawner
from traitlets import Bool, Dict, Enum, Float, Int, List, Unicode, Union, default

from cove.client._http import ConnectionFailed
from cove.client.aio import AsyncRestDriver
from cove.model.errors import CoveError
from cove.sessions import AsyncSessionManager, Session, session_name

__all__ = ["CoveSpawner"]

_HUB_DEVICE = "jupyterhub-api"
_SEEN = "user.cove.jupyterhub.seen"  # the mark of CoveSpawner's hub profiles
_drivers: dict[tuple[Any, ...], AsyncRestDriver] = {}
_managers: dict[tuple[Any, ...], AsyncSessionManager] = {}
_profiles_made: dict[tuple[Any, ...], float] = {}  # -> when it was last made sure of
_profile_users: dict[tuple[str, str], int] = {}  # (endpoint, name) -> spawns using it now
_swept: set[str] = set()  # endpoints whose orphan profiles this process swept
_profile_lock: asyncio.Lock | None = None


def _lock() -> asyncio.Lock:
    global _profile_lock  # noqa: PLW0603 - one lock per hub process
    if _profile_lock is None:
        _profile_lock = asyncio.Lock()
    return _profile_lock


async def sweep_hub_profiles(driver: AsyncRestDriver, ttl: float,
                             keep: str | None = None) -> list[str]:
    """Delete CoveSpawner's hub profiles (those marked ``user.cove.jupyterhub.seen``)
    that no instance uses and no hub made sure of for ``ttl`` seconds; never
    ``keep`` nor a profile without the mark. Idempotent; returns the names
    deleted (a profile taken into use meanwhile is refused by the host, and
    kept)."""
    deleted = []
    now = time.time()
    for prof in await driver.profiles():
        try:
            seen = float(prof.config.get(_SEEN, ""))
        except ValueError:
            continue
        if prof.name == keep or prof.used_by or seen > now - ttl:
            continue
        try:
            await driver.delete_profile(prof.name)
        except CoveError:
            continue
        deleted.append(prof.name)
    return deleted


def _hub_target(api_url: str) -> tuple[str, int]:
    """(host, port) the host connects to for the hub's API."""
    u = urlparse(api_url)
    host = u.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    port = u.port or (443 if u.scheme == "https" else 80)
    return host, port


def _size(value: int) -> str:
    mib = 1024 * 1024
    return f"{value // mib}MiB" if value % mib == 0 else str(value)


class CoveSpawner(Spawner):  # type: ignore[misc]  # jupyterhub has no type hints
    """Spawn each single-user server in a cove container (``cove.sessions``).

    ``start()`` returns ``(ip, port)`` once the server answers HTTP;
    ``stop()`` stops and removes the container (idempotent: gone is
    success); ``poll()`` is None while it runs. Errors of cove are raised as
    ``cove.model.errors`` classes (``NotFound`` for an unknown image,
    ``OperationInProgress`` for a spawn of the same server in flight).
    """

    endpoint = Unicode(
        "", config=True,
        help="The cove host: a unix socket path, or https://HOST:PORT (with "
             "client_cert/client_key); empty: cove's own socket.")
    tls_verify = Union([Bool(), Unicode()], default_value=True, config=True,
                       help="Verify the HTTPS host: True, False, or a CA bundle path.")
    client_cert = Unicode(None, allow_none=True, config=True,
                          help="Client certificate (PEM) for an https endpoint.")
    client_key = Unicode(None, allow_none=True, config=True,
                         help="Its key (PEM).")
    realm = Unicode("jupyterhub", config=True,
                    help="The session realm: a cove project of its own (see use_project).")
    use_project = Bool(True, config=True,
                       help="Put the realm in its own project (else: labels only).")
    image = Unicode("jupyter", config=True, help="Image alias or fingerprint.")
    profiles = List(Unicode(), default_value=["default"], config=True,
                    help="Profiles of each container (the hub's own is added).")
    limits = Dict(config=True,
                  help='limits.* keys, e.g. {"memory": "1GiB", "cpu": "1"}; '
                       "mem_limit and cpu_limit fill memory and cpu when unset here.")
    volumes = Dict(config=True,
                   help='{host_path: {"bind": path, "mode": "ro"|"rw"}} or {host_path: path}; '
                        "{username} and {servername} are filled in both paths.")
    extra_config = Dict(config=True,
                        help="More instance config (cove.uid, cove.cwd, security.*, ...).")
    remove = Bool(True, config=True,
                  help="Remove the container on stop (else only stop it; the next "
                       "start replaces it).")
    app_port = Int(8888, config=True, help="The server's port inside the container.")
    host_address = Unicode("127.0.0.1", config=True,
                           help="Host address the server's port is published on.")
    publish = Enum(["proxy", "nat"], default_value="proxy", config=True,
                   help="How the server's port is published: proxy, a forwarder process "
                        "per server (LXD's proxy device); nat, NAT rules and no process "
                        "(the proxy device's nat=true: the containers need a NIC on a "
                        "bridge network, and on LXD a static address).")
    hub_connect = Enum(["proxy", "direct"], default_value="proxy", config=True,
                       help="proxy: reach the hub through a proxy device in each container "
                            "(the hub may listen on loopback); direct: use the hub's URL.")
    stop_timeout = Float(10.0, config=True, help="Seconds a stop waits before killing.")
    hub_profile_ttl = Float(
        24 * 3600.0, config=True,
        help="Seconds after which an unused hub profile no hub has made sure of is an "
             "orphan (a hub that went away): the first spawn of a hub process deletes "
             "those; a live hub makes sure of its own every half of this.")
    spawn_lease = Float(
        120.0, config=True,
        help="Seconds a spawn in flight holds its server against other spawns (coved keeps "
             "the guard, so it holds across hubs); a hub that died mid-spawn blocks a new "
             "spawn of that server until it runs out.")

    @default("ip")
    def _default_ip(self) -> str:
        return "0.0.0.0"

    @default("port")
    def _default_port(self) -> int:
        return int(self.app_port)

    # -- state ---------------------------------------------------------------------------
    instance_name: str | None = None

    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = super().get_state()
        if self.instance_name:
            state["cove_name"] = self.instance_name
            state["cove_realm"] = self.realm
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if state.get("cove_name") and state.get("cove_realm", self.realm) == self.realm:
            self.instance_name = state["cove_name"]

    def clear_state(self) -> None:
        super().clear_state()
        self.instance_name = None

    # -- plumbing -------------------------------------------------------------------------
    @property
    def app_id(self) -> str:
        return f"jupyterhub/{self.name}" if self.name else "jupyterhub"

    def driver(self, project: str | None = None) -> AsyncRestDriver:
        key = (self.endpoint, self.tls_verify, self.client_cert, self.client_key, project,
               id(asyncio.get_running_loop()))
        drv = _drivers.get(key)
        if drv is None:
            drv = _drivers[key] = AsyncRestDriver(
                self.endpoint or None, verify=self.tls_verify, client_cert=self.client_cert,
                client_key=self.client_key, project=project)
        return drv

    def manager(self) -> AsyncSessionManager:
        # shared, so the realm's project is looked up once per hub, not per call
        drv = self.driver()
        key = (id(drv), self.realm, self.app_port, self.host_address, self.use_project,
               self.spawn_lease, self.publish)
        mgr = _managers.get(key)
        if mgr is None:
            mgr = _managers[key] = AsyncSessionManager(
                drv, realm=self.realm, app_port=self.app_port, host_address=self.host_address,
                lease=self.spawn_lease, use_project=self.use_project, publish=self.publish)
        return mgr

    def hub_profile(self) -> tuple[str, dict[str, str]]:
        """The per-hub profile's name and its proxy device.

        Raises:
            ValueError: the hub's API port is the app's port, which the
                device would take inside the container.
        """
        host, port = _hub_target(self.hub.api_url)
        if port == self.app_port:
            raise ValueError(f"the hub's API port {port} is CoveSpawner.app_port: the "
                             "container cannot listen on both (change one, or hub_connect="
                             "'direct')")
        tag = hashlib.sha256(f"{host}:{port}".encode()).hexdigest()[:10]
        connect = f"tcp:[{host}]:{port}" if ":" in host else f"tcp:{host}:{port}"
        return f"jupyterhub-{tag}", {"type": "proxy", "bind": "instance",
                                     "listen": f"tcp:127.0.0.1:{port}", "connect": connect}

    def _profile_key(self) -> tuple[Any, ...]:
        name, device = self.hub_profile()
        return (self.endpoint, name, tuple(sorted(device.items())))

    async def ensure_hub_profile(self) -> str:
        """Create (or correct) the hub's profile, and mark it seen, when this
        process has not within half of ``hub_profile_ttl``; its name. The
        first call of a process sweeps orphan hub profiles first."""
        name, device = self.hub_profile()
        key = self._profile_key()
        if time.monotonic() - _profiles_made.get(key, -math.inf) < self.hub_profile_ttl / 2:
            return name
        async with _lock():
            if time.monotonic() - _profiles_made.get(key, -math.inf) < self.hub_profile_ttl / 2:
                return name
            drv = self.driver()
            if self.endpoint not in _swept:
                _swept.add(self.endpoint)
                try:
                    for gone in await sweep_hub_profiles(drv, self.hub_profile_ttl, keep=name):
                        self.log.info("cove: removed orphan hub profile %s", gone)
                except CoveError as e:
                    self.log.warning("cove: sweeping orphan hub profiles: %s", e)
            desc = f"JupyterHub API at {device['connect']} (CoveSpawner)"
            seen = {_SEEN: str(int(time.time()))}
            await drv.create_profile(name, devices={_HUB_DEVICE: device}, config=seen,
                                     description=desc)
            # made by another process, or before: correct it and mark it seen
            await drv.update_profile(name, devices={_HUB_DEVICE: device}, config=seen,
                                     description=desc)
            _profiles_made[key] = time.monotonic()
        return name

    async def release_hub_profile(self) -> None:
        """Delete the hub's profile when no spawn of this process uses it and
        no instance does (the host refuses one in use: kept). Idempotent."""
        try:
            name, _ = self.hub_profile()
        except ValueError:  # a hub this spawner never could use: no profile
            return
        if _profile_users.get((self.endpoint, name)):
            return
        async with _lock():
            if _profile_users.get((self.endpoint, name)):
                return
            # a spawn from now on makes it again (it waits for this lock)
            _profiles_made.pop(self._profile_key(), None)
            try:
                await self.driver().delete_profile(name)
            except CoveError as e:  # in use by an instance: it stays
                self.log.debug("cove: hub profile %s kept: %s", name, e)

    def get_env(self) -> dict[str, str]:
        env: dict[str, str] = super().get_env()
        if self.hub_connect == "proxy":
            _, port = _hub_target(self.hub.api_url)
            for key in ("JUPYTERHUB_API_URL", "JUPYTERHUB_ACTIVITY_URL"):
                if key in env:
                    u = urlparse(env[key])
                    # the device forwards bytes: the scheme (TLS or not) stays
                    env[key] = urlunparse(u._replace(netloc=f"127.0.0.1:{port}"))
        return env

    def _fill(self, path: str) -> str:
        for value in (self.user.name, self.name):
            if "/" in value or value in (".", ".."):
                raise ValueError(f"{value!r} cannot be part of a volume path")
        return path.format(username=self.user.name, servername=self.name)

    def session_volumes(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for host, given in self.volumes.items():
            spec = {"bind": given} if isinstance(given, str) else dict(given)
            spec["bind"] = self._fill(str(spec.get("bind", "")))
            out[self._fill(host)] = spec
        return out

    def session_limits(self) -> dict[str, str]:
        limits = {str(k).removeprefix("limits."): str(v) for k, v in self.limits.items()}
        if self.mem_limit and "memory" not in limits:
            limits["memory"] = _size(int(self.mem_limit))
        if self.cpu_limit and "cpu" not in limits and "cpu.allowance" not in limits:
            cpus = float(self.cpu_limit)
            if cpus.is_integer():
                limits["cpu"] = str(int(cpus))
            else:
                limits["cpu.allowance"] = f"{round(cpus * 100)}ms/100ms"
        return limits

    # -- the Spawner API ------------------------------------------------------------------
    async def start(self) -> tuple[str, int]:
        """Start the server's container and wait until it answers HTTP.

        A running container of the same server is replaced (a fresh start).
        Raises ``cove.model.errors`` (``NotFound``: no such image;
        ``OperationInProgress``: the same server is being spawned
        elsewhere) or ``TimeoutError``; a failed start leaves nothing.
        """
        if self.hub_connect != "proxy":
            return await self._start(list(self.profiles))
        users = (self.endpoint, self.hub_profile()[0])
        # counted before anything waits, so a stop in between keeps the profile
        _profile_users[users] = _profile_users.get(users, 0) + 1
        try:
            return await self._start([*self.profiles, await self.ensure_hub_profile()])
        finally:
            _profile_users[users] -= 1
            if not _profile_users[users]:
                del _profile_users[users]

    async def _start(self, profiles: list[str]) -> tuple[str, int]:
        config = {"cove.cmd": shlex.join([*self.cmd, *self.get_args()])}
        config.update({str(k): str(v) for k, v in self.extra_config.items()})
        mgr = self.manager()
        base = self.server.base_url if self.server else "/"
        try:
            session = await mgr.start(
                self.user.name, self.image, self.app_id, base_urlpath=base,
                volumes=self.session_volumes(), environment=self.get_env(),
                limits=self.session_limits(), profiles=profiles, config=config)
        except asyncio.CancelledError:
            # the hub's start_timeout cut the start short half-way: what it
            # made goes (a failure of its own is cleaned by the session
            # manager; a start refused as in flight elsewhere is not ours)
            name = session_name(self.realm, self.user.name, self.app_id)
            self.log.warning("cove: the start of %s was cut short; removing it", name)
            await asyncio.shield(mgr.stop_and_remove(name))
            raise
        self.instance_name = session.name
        for path in session.skipped_volumes:
            self.log.warning("cove: volume %s does not exist on the host: not mounted", path)
        try:
            await self.wait_answering(session, base)
        except BaseException:
            await mgr.stop_and_remove(session.name)
            self.instance_name = None
            raise
        return session.ip, session.port

    async def wait_answering(self, session: Session, path: str) -> None:
        """Until an HTTP answer comes from ``session``'s port (any status).

        Raises:
            TimeoutError: none within ``start_timeout``.
            RuntimeError: the container stopped meanwhile.
        """
        deadline = time.monotonic() + self.start_timeout
        request = f"GET {path} HTTP/1.0\r\nHost: {session.ip}\r\n\r\n".encode()
        checked = 0.0
        while True:
            try:
                reader, writer = await asyncio.open_connection(session.ip, session.port)
                try:
                    writer.write(request)
                    await writer.drain()
                    line = await asyncio.wait_for(reader.readline(), 5)
                finally:
                    writer.close()
                if line.startswith(b"HTTP/"):
                    return
            except (TimeoutError, OSError):
                pass
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError(f"cove: {session.name} did not answer HTTP on "
                                   f"{session.ip}:{session.port} in {self.start_timeout}s")
            if now - checked > 2:
                checked = now
                if await self.poll() is not None:
                    raise RuntimeError(f"cove: {session.name} stopped before it answered")
            await asyncio.sleep(0.2)

    async def poll(self) -> int | None:
        """None while the server's container runs, 0 when it is gone or stopped.

        Without a saved state (a hub killed before it saved it), the
        server's running session is found by its labels and adopted
        (DockerSpawner's lookup by name). A cove host that cannot be reached
        counts as running when there is a state (logged)."""
        name = self.instance_name or session_name(self.realm, self.user.name, self.app_id)
        try:
            found = await self.manager().find(user=self.user.name, app_id=self.app_id)
        except ConnectionFailed as e:
            self.log.warning("cove: cannot reach %s to poll %s: %s", self.endpoint or "coved",
                             name, e)
            return None if self.instance_name else 0
        mine = [s for s in found if s.name == name and s.status == "Running"]
        if not mine:
            return 0
        if not self.instance_name:
            self.log.warning("cove: %s runs %s, of which the hub saved no state: adopting it",
                             self._log_name, name)
            self.instance_name = name
        return None

    async def get_url(self) -> str:
        """The URL where the container's server is published now, from its
        session labels (a restarted hub checks the one it saved against
        this); the hub's own when cove cannot say."""
        url: str = self.server.url
        if not self.instance_name:
            return url
        try:
            found = await self.manager().find(user=self.user.name, app_id=self.app_id)
        except CoveError as e:
            self.log.warning("cove: cannot read %s's address: %s", self.instance_name, e)
            return url
        for s in found:
            if s.name == self.instance_name:
                host = f"[{s.ip}]" if ":" in s.ip else s.ip
                return f"{self.server.proto}://{host}:{s.port}{self.server.base_url}"
        return url

    async def stop(self, now: bool = False) -> None:
        """Stop the server's container and remove it (``remove=False``: keep it,
        stopped), then the hub's profile when it was the last user of it.
        Without a saved state, the server's session by its name. Idempotent:
        a container already gone is success."""
        name = self.instance_name or session_name(self.realm, self.user.name, self.app_id)
        mgr = self.manager()
        if self.remove:
            await mgr.stop_and_remove(name)
            if self.hub_connect == "proxy":
                await self.release_hub_profile()
            return
        found = await mgr.find(user=self.user.name, app_id=self.app_id)
        if any(s.name == name and s.status == "Running" for s in found):
            try:
                await self.driver(mgr.project).stop_container(
                    name, force=now, timeout=0 if now else self.stop_timeout)
            except CoveError as e:
                self.log.warning("cove: stopping %s: %s", name, e)
