"""The instance flows: convergent create, update, start, stop, delete, wait.

Design notes (what every driver means by its instance calls):

* Convergent, not imperative (as the lxd-common gem): deleting what is gone,
  starting what runs, stopping what is stopped, creating what exists all
  succeed and do nothing. Real failures raise ``cove.model.errors`` classes
  with the server's text; the flows look at the state before acting, so a
  driver never has to guess an error's meaning from its words.
* Undo: a create that fails to start deletes what it made, so no call
  leaves a half-made container behind.
* Each flow is a generator of ``drivers._steps`` steps, free of I/O; the
  sync drivers run it with ``_flow.drive``, the asyncio one with ``adrive``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from cove import api
from cove.client.drivers._steps import (
    Action,
    Create,
    Delete,
    Flow,
    GetInstance,
    GetState,
    ListImages,
    Progress,
    ProgressCallback,
    Rename,
    RunCommand,
    Sleep,
    Step,
    Update,
)
from cove.model.errors import BadRequest, Conflict, CoveError, NotFound, Timeout
from cove.model.names import validate_instance_name

__all__ = [
    "PUT_FIELDS",
    "WAIT_TARGETS",
    "first_global_address",
    "flows",
    "image_source",
    "ready_command",
    "status_of",
]

T = TypeVar("T")

#: What ``wait_for`` can wait for.
WAIT_TARGETS = ("ip", "cloud_init", "ready")

#: The writable fields of an instance (LXD's ``InstancePut``).
PUT_FIELDS = ("architecture", "config", "devices", "ephemeral", "profiles", "stateful",
              "description")


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
    def rename(name: str, new_name: str) -> Flow[None]:
        """Convergent: ``name`` gone and ``new_name`` there is done already."""
        validate_instance_name(name)
        validate_instance_name(new_name)
        if name == new_name:
            yield from flows.get(name)
            return
        if (yield GetInstance(name)) is None:
            if (yield GetInstance(new_name)) is not None:
                return
            raise NotFound(f"Instance not found: {name}")
        try:
            yield from flows._retry_busy(Rename(name, new_name))
        except CoveError:
            if (yield GetInstance(name)) is None and (yield GetInstance(new_name)) is not None:
                return  # another caller renamed it meanwhile
            raise

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

