"""The Driver interface, and the convergent algorithms every driver shares.

Design notes:

* A driver talks to one host (cove, LXD or Incus). What the public methods
  *mean* (convergence, undo, retries, waiting) is written once here, as
  generator *flows* that yield small *steps* (``GetInstance``, ``Create``,
  ``Action``...) and get their results back. A driver only turns steps into
  I/O: HTTP requests (``RestDriver``), ``lxc``/``cove`` commands
  (``CliDriver``) or engine calls (``LocalDriver``). The asyncio driver runs
  the very same flows with ``await`` (``drive_async``), so sync and async can
  never drift apart: no algorithm exists twice.
* Convergent, not imperative (as the lxd-common gem): deleting what is gone,
  starting what runs, stopping what is stopped, creating what exists all
  succeed and do nothing. Real failures raise ``cove.model.errors`` classes
  with the server's text; the flows look at the state before acting, so a
  driver never has to guess an error's meaning from its words.
* Undo: a create that fails to start deletes what it made, so no call
  leaves a half-made container behind.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from cove import api
from cove.client._flow import drive
from cove.model.errors import BadRequest, Conflict, CoveError, NotFound, Timeout
from cove.model.names import validate_instance_name

if TYPE_CHECKING:
    from typing import Self

    from cove.client.transports.base import Transport

__all__ = [
    "WAIT_TARGETS",
    "Action",
    "Create",
    "Delete",
    "Driver",
    "Flow",
    "GetInstance",
    "GetState",
    "ListImages",
    "Progress",
    "ProgressCallback",
    "RunCommand",
    "Sleep",
    "Step",
    "Update",
    "flows",
]

T = TypeVar("T")

#: What ``wait_for`` can wait for.
WAIT_TARGETS = ("ip", "cloud_init", "ready")

#: The writable fields of an instance (LXD's ``InstancePut``).
PUT_FIELDS = ("architecture", "config", "devices", "ephemeral", "profiles", "stateful",
              "description")


@dataclass(frozen=True)
class Progress:
    """One progress report of a long action.

    ``stage`` names the phase (``create``, ``start``, ``unpack``, ``upload``...),
    ``percent`` is 0-100 when the server knows it, ``text`` is the server's
    own wording (LXD: ``"Unpack: 45% (30MB/s)"``).
    """

    stage: str
    percent: int | None = None
    text: str = ""


ProgressCallback = Callable[[Progress], None]


# -- steps: what a flow asks its driver to do ------------------------------------------

@dataclass(frozen=True)
class GetInstance:
    """The LXD instance object, or None when there is no such instance."""

    name: str


@dataclass(frozen=True)
class GetState:
    """The LXD instance state object (raises NotFound)."""

    name: str


@dataclass(frozen=True)
class ListImages:
    """Every image on the host (LXD image objects)."""


@dataclass(frozen=True)
class Create:
    """Create the instance ``post`` describes (``POST /1.0/instances``) and
    wait for it; ``post.start`` is not set (flows start it on their own)."""

    post: api.InstancesPost
    progress: ProgressCallback | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return self.post.name


@dataclass(frozen=True)
class Update:
    """Change an instance: merge ``body`` (``patch``) or replace it (PUT)."""

    name: str
    body: dict[str, Any]
    patch: bool = True


@dataclass(frozen=True)
class Action:
    """A state change (start, stop, freeze, unfreeze) waited for.

    ``timeout`` is LXD's: seconds a clean stop may take, -1 for no limit.
    """

    name: str
    action: str
    force: bool = False
    timeout: int = -1
    progress: ProgressCallback | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Delete:
    """Delete a stopped instance and wait for it."""

    name: str


@dataclass(frozen=True)
class RunCommand:
    """Run ``command`` in a running instance, no stdin; the result is
    ``(exit code, stdout)`` (exit code 127 when the program is missing).

    Through exec rather than the file API on purpose: a running container's
    own mounts (cove's /run is a tmpfs) are seen only from inside it.
    """

    name: str
    command: tuple[str, ...]


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = GetInstance | GetState | ListImages | Create | Update | Action | Delete | RunCommand \
    | Sleep
Flow = Generator[Step, Any, T]


def status_of(inst: Mapping[str, Any]) -> str:
    """``'running'``, ``'stopped'``, ``'frozen'``... from an instance object."""
    return str(inst.get("status") or "").lower()


class flows:
    """The convergent algorithms, one per public method (see the module notes)."""

    #: How long a flow retries an action another operation holds (409).
    busy_wait = 30.0

    @staticmethod
    def _retry_busy(step: Step) -> Flow[Any]:
        deadline = time.monotonic() + flows.busy_wait
        while True:
            try:
                return (yield step)
            except Conflict:
                if time.monotonic() >= deadline:
                    raise
                yield Sleep(0.2)

    @staticmethod
    def get(name: str) -> Flow[dict[str, Any]]:
        inst = yield GetInstance(validate_instance_name(name))
        if inst is None:
            raise NotFound(f"Instance not found: {name}")
        return dict(inst)

    @staticmethod
    def status(name: str) -> Flow[str]:
        inst = yield from flows.get(name)
        return status_of(inst)

    @staticmethod
    def state(name: str) -> Flow[dict[str, Any]]:
        return dict((yield GetState(validate_instance_name(name))))

    @staticmethod
    def create_container(name: str, *, alias: str | None, fingerprint: str | None,
                         properties: Mapping[str, str] | None, server: str | None,
                         protocol: str | None, profiles: Sequence[str] | None,
                         config: Mapping[str, Any] | None,
                         devices: Mapping[str, Mapping[str, str]] | None, autostart: bool,
                         progress: ProgressCallback | None) -> Flow[str]:
        """``Driver.create_container``: its options checked and typed, then ``create``."""
        source = image_source(alias=alias, fingerprint=fingerprint, properties=properties,
                              server=server, protocol=protocol)
        return (yield from flows.create(
            name, source, profiles=list(profiles) if profiles is not None else None,
            config={str(k): _str(v) for k, v in (config or {}).items()},
            devices={str(k): {str(a): str(b) for a, b in d.items()}
                     for k, d in (devices or {}).items()},
            autostart=autostart, progress=progress))

    @staticmethod
    def create(name: str, source: dict[str, Any], *, profiles: list[str] | None,
               config: dict[str, str], devices: dict[str, dict[str, str]], autostart: bool,
               progress: ProgressCallback | None) -> Flow[str]:
        validate_instance_name(name)
        if source.get("properties") and not (source.get("alias") or source.get("fingerprint")) \
                and not source.get("server"):
            source = dict(source)
            source["fingerprint"] = yield from flows._by_properties(source.pop("properties"))
        existing = yield GetInstance(name)
        if existing is None:
            if progress:
                progress(Progress("create"))
            made = True
            try:
                post = api.InstancesPost(name=name, source=api.InstanceSource.from_wire(source),
                                         config=config, devices=devices, profiles=profiles)
                yield Create(post, progress)
            except Conflict:
                made = False  # someone else made it meanwhile: converge on theirs
            if autostart and made:
                try:
                    yield from flows.start(name, progress=progress)
                except CoveError:
                    # Undo: a container that cannot start is not left half made.
                    yield from flows.delete(name)
                    raise
                return name
        if autostart:
            yield from flows.start(name, progress=progress)
        return name

    @staticmethod
    def _by_properties(props: Mapping[str, str]) -> Flow[str]:
        images = yield ListImages()
        found = [img for img in images
                 if all(str((img.get("properties") or {}).get(k)) == str(v)
                        for k, v in props.items())]
        if not found:
            raise NotFound(f"No image has the properties {json.dumps(dict(props))}")
        # The newest match, as LXD picks it.
        found.sort(key=lambda img: str(img.get("created_at") or ""), reverse=True)
        return str(found[0]["fingerprint"])

    @staticmethod
    def update(name: str, *, config: Mapping[str, str | None] | None,
               devices: Mapping[str, Mapping[str, str] | None] | None,
               profiles: Sequence[str] | None) -> Flow[None]:
        validate_instance_name(name)
        removes = (config and any(v is None for v in config.values())) or \
            (devices and any(v is None for v in devices.values()))
        if not removes:
            # Look first: a CLI's failed update says nothing of why.
            yield from flows.get(name)
            body: dict[str, Any] = {}
            if config:
                body["config"] = {k: _str(v) for k, v in config.items()}
            if devices:
                body["devices"] = {k: dict(v or {}) for k, v in devices.items()}
            if profiles is not None:
                body["profiles"] = list(profiles)
            if not body:
                return
            yield from flows._retry_busy(Update(name, body, patch=True))
            return
        current = yield from flows.get(name)
        put = {k: current[k] for k in PUT_FIELDS if k in current}
        new_config = dict(put.get("config") or {})
        for k, v in (config or {}).items():
            if v is None:
                new_config.pop(k, None)
            else:
                new_config[k] = _str(v)
        new_devices = {k: dict(v) for k, v in (put.get("devices") or {}).items()}
        for k, d in (devices or {}).items():
            if d is None:
                new_devices.pop(k, None)
            else:
                new_devices[k] = {**new_devices.get(k, {}), **d}
        put["config"] = new_config
        put["devices"] = new_devices
        if profiles is not None:
            put["profiles"] = list(profiles)
        yield from flows._retry_busy(Update(name, put, patch=False))

    @staticmethod
    def start(name: str, *, progress: ProgressCallback | None = None) -> Flow[None]:
        status = yield from flows.status(name)
        if status == "running":
            return
        action = "unfreeze" if status == "frozen" else "start"
        if progress:
            progress(Progress(action))
        try:
            yield from flows._retry_busy(Action(name, action, progress=progress))
        except NotFound:
            raise
        except CoveError:
            # Raced with another start? Then it runs, which is what was asked.
            if (yield from flows.status(name)) != "running":
                raise

    @staticmethod
    def stop(name: str, *, force: bool, timeout: float, retry_interval: float | None,
             retry_count: int | None) -> Flow[None]:
        status = yield from flows.status(name)
        if status == "stopped":
            return
        if force:
            yield from flows._stop_once(name, force=True, timeout=-1)
            return
        if timeout < 0 or (retry_interval is not None and retry_interval <= 0) or \
                (retry_count is not None and retry_count < 0):
            raise BadRequest("timeout, retry_interval and retry_count must not be negative")
        attempts = 1 + (retry_count or 0)
        deadline = time.monotonic() + timeout if timeout > 0 else None
        last: CoveError | None = None
        for _ in range(attempts):
            per = retry_interval if retry_interval else (timeout if timeout > 0 else -1)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                per = min(per, left) if per > 0 else left
            try:
                yield from flows._stop_once(name, force=False,
                                            timeout=-1 if per < 0 else max(1, round(per)))
                return
            except NotFound:
                return  # an ephemeral instance is gone once it stopped
            except CoveError as e:
                last = e
        raise Timeout(f"Instance {name} did not stop cleanly"
                      + (f" within {timeout:g}s" if timeout > 0 else "")
                      + (f" after {attempts} attempts" if attempts > 1 else "")
                      + (f": {last}" if last else ""))

    @staticmethod
    def _stop_once(name: str, *, force: bool, timeout: int) -> Flow[None]:
        try:
            yield from flows._retry_busy(Action(name, "stop", force=force, timeout=timeout))
        except NotFound:
            raise
        except CoveError:
            inst = yield GetInstance(name)
            if inst is None or status_of(inst) == "stopped":
                return  # stopped meanwhile (or an ephemeral one went away)
            raise

    @staticmethod
    def delete(name: str) -> Flow[None]:
        validate_instance_name(name)
        inst = yield GetInstance(name)
        if inst is None:
            return
        if status_of(inst) != "stopped":
            try:
                yield from flows._stop_once(name, force=True, timeout=-1)
            except NotFound:
                return  # ephemeral: stopping deleted it
        try:
            yield from flows._retry_busy(Delete(name))
        except NotFound:
            return
        except CoveError:
            if (yield GetInstance(name)) is None:
                return
            raise

    @staticmethod
    def wait_for(name: str, what: str, timeout: float) -> Flow[Any]:
        if what not in WAIT_TARGETS:
            raise BadRequest(f"Cannot wait for {what!r}: use one of {', '.join(WAIT_TARGETS)}")
        validate_instance_name(name)
        deadline = time.monotonic() + timeout
        interval = 0.1
        last_note = ""
        while True:
            inst = yield GetInstance(name)
            if inst is None:
                raise NotFound(f"Instance not found: {name}")
            if status_of(inst) == "running":
                if what == "ip":
                    state = yield GetState(name)
                    ip = first_global_address(state)
                    if ip:
                        return ip
                    last_note = "no global IPv4 or IPv6 address yet"
                elif what == "cloud_init":
                    code, raw = yield RunCommand(name, ("cat", "/run/cloud-init/result.json"))
                    if code == 0:
                        errors = _cloud_init_errors(raw)
                        if errors:
                            raise CoveError(f"cloud-init in {name} failed: {'; '.join(errors)}")
                        return True
                    last_note = "cloud-init has not finished (no /run/cloud-init/result.json)"
                else:
                    cmd = ready_command(inst)
                    code, _ = yield RunCommand(name, cmd)
                    if code == 0:
                        return True
                    last_note = f"{' '.join(cmd)} exited {code}"
            else:
                last_note = f"it is {status_of(inst)}"
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"{name} was not {_WAIT_WORDS[what]} within {timeout:g}s"
                              + (f" ({last_note})" if last_note else ""))
            yield Sleep(min(interval, left))
            interval = min(interval * 1.5, 1.0)


_WAIT_WORDS = {"ip": "given an IP address", "cloud_init": "done with cloud-init",
               "ready": "ready"}


def _str(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def first_global_address(state: Mapping[str, Any] | None) -> str | None:
    """The first global IPv4 address of a state object, else the first global
    IPv6 one, else None (loopback and link-local never count)."""
    nets = (state or {}).get("network") or {}
    found: dict[str, str] = {}
    for ifname, net in sorted(nets.items()):
        if ifname == "lo":
            continue
        for addr in (net or {}).get("addresses") or []:
            if addr.get("scope") != "global":
                continue
            family = str(addr.get("family"))
            found.setdefault(family, str(addr.get("address")))
    return found.get("inet") or found.get("inet6")


def ready_command(inst: Mapping[str, Any]) -> tuple[str, ...]:
    """The readiness check of an instance: ``cove.ready`` (or ``user.cove.ready``,
    which LXD accepts too) run with ``sh -c``; ``true`` without one, so
    ``ready`` then means "running and accepting commands"."""
    config = inst.get("expanded_config") or inst.get("config") or {}
    cmd = config.get("cove.ready") or config.get("user.cove.ready")
    return ("sh", "-c", str(cmd)) if cmd else ("true",)


def _cloud_init_errors(raw: bytes) -> list[str]:
    try:
        doc = json.loads(raw)
    except ValueError:
        return []  # written but not parseable yet: it is done; errors unknown
    errors = ((doc or {}).get("v1") or {}).get("errors") or []
    return [str(e) for e in errors]


def image_source(*, alias: str | None, fingerprint: str | None,
                 properties: Mapping[str, str] | None, server: str | None,
                 protocol: str | None) -> dict[str, Any]:
    """LXD's ``source`` for a new instance from the image options.

    Raises:
        BadRequest: not exactly one of alias, fingerprint and properties.
    """
    given = [k for k, v in (("alias", alias), ("fingerprint", fingerprint),
                            ("properties", properties)) if v]
    if len(given) != 1:
        raise BadRequest("Give exactly one of alias, fingerprint or properties for the image"
                         + (f" (got {', '.join(given)})" if given else ""))
    source: dict[str, Any] = {"type": "image"}
    if alias:
        source["alias"] = alias
    if fingerprint:
        source["fingerprint"] = fingerprint
    if properties:
        source["properties"] = {str(k): str(v) for k, v in properties.items()}
    if server:
        source["server"] = server
        source["protocol"] = protocol or "lxd"
        source["mode"] = "pull"
    elif protocol not in (None, "lxd"):
        raise BadRequest(f"protocol {protocol!r} needs a server to pull the image from")
    return source


class Driver(ABC):
    """One host: cove, LXD or Incus, reached over REST, a CLI, or in-process.

    Every method is convergent (see the module notes) and raises the
    ``cove.model.errors`` classes: ``BadRequest`` for a bad name or option
    (before anything is made), ``NotFound`` for a missing container or
    image, ``Conflict`` when another operation holds the container past
    ``flows.busy_wait``, ``Forbidden`` for an untrusted client, ``Timeout``
    for a wait that ran out, ``InternalError`` for the server's own
    failures; ``cove.client.ConnectionFailed`` when the host cannot be reached.
    """

    # -- what each driver implements -------------------------------------------
    @abstractmethod
    def _do(self, step: Step) -> Any:
        """Perform one step (see the step classes for what each returns)."""

    @abstractmethod
    def transport_for(self, name: str) -> Transport:
        """A transport into container ``name`` (it need not be routable)."""

    def close(self) -> None:
        """Let go of connections (the driver may not be used afterwards)."""

    # -- steps every driver performs the same way -------------------------------
    def _perform(self, step: Step) -> Any:
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            return None
        return self._do(step)

    def _command_in(self, step: RunCommand) -> tuple[int, bytes]:
        """Run ``step.command`` through the container's transport; a missing
        program reads as exit 127, as from a shell."""
        from cove.client._exec import CommandNotFound

        try:
            r = self.transport_for(step.name).execute(list(step.command))
        except CommandNotFound:
            return 127, b""
        return r.exit_code, r.stdout

    # -- the interface ------------------------------------------------------------
    def _run(self, flow: Flow[T]) -> T:
        return drive(flow, self._perform)

    def create_container(self, name: str, *, alias: str | None = None,
                         fingerprint: str | None = None,
                         properties: Mapping[str, str] | None = None,
                         server: str | None = None, protocol: str | None = None,
                         profiles: Sequence[str] | None = None,
                         config: Mapping[str, Any] | None = None,
                         devices: Mapping[str, Mapping[str, str]] | None = None,
                         autostart: bool = True,
                         progress: ProgressCallback | None = None) -> str:
        """Make container ``name`` from an image unless it exists; start it if
        ``autostart``. Returns the name.

        One of ``alias``, ``fingerprint`` (a prefix will do) or ``properties``
        names the image; ``server``/``protocol`` pull it from another host.
        ``profiles`` default to the host's (``['default']``). An existing
        container is left as it is (only started when ``autostart``).

        Raises:
            BadRequest: a bad name, option, config key or value.
            NotFound: no such image (or profile).
        """
        return self._run(flows.create_container(
            name, alias=alias, fingerprint=fingerprint, properties=properties, server=server,
            protocol=protocol, profiles=profiles, config=config, devices=devices,
            autostart=autostart, progress=progress))

    def update_container(self, name: str, *, config: Mapping[str, Any] | None = None,
                         devices: Mapping[str, Mapping[str, str] | None] | None = None,
                         profiles: Sequence[str] | None = None) -> None:
        """Apply the given config keys, devices and profiles (others are kept).

        A ``None`` value removes a config key or a device.

        Raises:
            NotFound: no such container.
            BadRequest: a bad key or value (nothing is changed).
        """
        self._run(flows.update(name, config=config, devices=devices, profiles=profiles))

    def start_container(self, name: str, *, progress: ProgressCallback | None = None) -> None:
        """Make ``name`` run (a frozen one is thawed). Running already: nothing."""
        self._run(flows.start(name, progress=progress))

    def stop_container(self, name: str, *, force: bool = False, timeout: float = 0,
                       retry_interval: float | None = None,
                       retry_count: int | None = None) -> None:
        """Make ``name`` stopped. Stopped already: nothing.

        Without ``force`` the container's init is asked to shut down (LXD
        sends SIGPWR, cove its ``cove.halt`` signal) and the call waits:
        ``timeout`` seconds in all (0: as long as it takes), asking again
        every ``retry_interval`` seconds up to ``retry_count`` more times.
        ``force`` kills it at once.

        Raises:
            Timeout: it did not stop cleanly in time (it is left running).
            NotFound: no such container.
        """
        self._run(flows.stop(name, force=force, timeout=timeout,
                             retry_interval=retry_interval, retry_count=retry_count))

    def delete_container(self, name: str) -> None:
        """Delete ``name``, killing it first if it runs. Gone already: nothing."""
        self._run(flows.delete(name))

    def container_status(self, name: str) -> str:
        """``'running'``, ``'stopped'``, ``'frozen'`` or ``'error'``.

        Raises:
            NotFound: no such container.
        """
        return self._run(flows.status(name))

    def container(self, name: str) -> dict[str, Any]:
        """The container's LXD object: ``config``, ``devices``, ``profiles``,
        ``status``, ``expanded_config``... (a fresh copy on every call)."""
        return self._run(flows.get(name))

    def container_state(self, name: str) -> dict[str, Any]:
        """The LXD state object: ``status``, ``network`` (addresses),
        ``memory``, ``processes``, ``pid``, ``cpu``."""
        return self._run(flows.state(name))

    def wait_for(self, name: str, what: str, timeout: float = 60) -> Any:
        """Wait until ``name`` has what was asked for, and return it.

        ``'ip'``: a global address (returned); ``'cloud_init'``: cloud-init
        finished (``/run/cloud-init/result.json`` exists; its errors raise);
        ``'ready'``: it runs and its ``cove.ready`` command (or
        ``user.cove.ready``) exits 0, returns True.

        Raises:
            Timeout: not within ``timeout`` seconds (the message says why).
            NotFound: no such container.
        """
        return self._run(flows.wait_for(name, what, timeout))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
