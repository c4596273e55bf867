"""Stacks from Compose files: ``up``, ``down``, ``ps`` on any driver, sync
or asyncio.

Design notes:

* What a Compose file means is ``cove.model.compose`` (pure: it checks
  everything and says what each service becomes). This module reads the
  files (the Compose file, ``.env``, ``env_file``) and turns a plan into
  instances with one set of flows (generators of driver steps, as
  ``drivers._flows``), which ``Stack`` runs on a ``Driver`` and
  ``AsyncStack`` on an ``AsyncRestDriver``: the algorithm exists once.
* Nothing is made before everything is checked: the file, then (on the
  host) that every image exists, that no instance of a stack's name belongs
  to something else, and that external networks and volumes exist.
* Convergent: an instance whose ``user.cove.hash`` matches its service is
  left alone; a changed one is stopped and recreated; one whose service is
  gone is stopped and deleted. Starting follows the dependency levels; coved
  holds each instance to its ``cove.depends`` as well, so the order also
  holds for starts that do not come from here (a reboot, a restart policy).
* A stack is found by its label ``user.cove.stack``, so ``down`` and ``ps``
  need no file; what ``up`` made (networks, volumes) carries the description
  ``cove stack NAME``, and ``down`` removes only what carries it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shlex
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from cove import api
from cove.client._flow import adrive, drive
from cove.client.drivers import _resources as resources
from cove.client.drivers import _storage_flows as storage
from cove.client.drivers._flows import flows, status_of
from cove.client.drivers._steps import (
    DeleteNetwork,
    Flow,
    GetAlias,
    GetImage,
    GetNetwork,
    ListInstances,
    Step,
)
from cove.client.drivers._steps_storage import DeleteVolume, GetVolume
from cove.model.compose import Service, StackPlan, bridge_name, plan_stack, solve_levels
from cove.model.compose_text import load_yaml, parse_dotenv
from cove.model.disks import DEFAULT_POOL
from cove.model.errors import BadRequest, CoveError, NotFound, Timeout
from cove.model.passwd import parse_group, parse_passwd, resolve_group, resolve_user

if TYPE_CHECKING:
    from typing import Protocol

    class Driver(Protocol):
        """What a stack needs of a sync driver (``drivers.base.Driver``)."""

        def _perform(self, step: Step) -> Any: ...
        def transport_for(self, name: str) -> Any: ...

    class AsyncRestDriver(Protocol):
        """What a stack needs of ``cove.client.aio.AsyncRestDriver``."""

        async def _do(self, step: Step) -> Any: ...
        def transport_for(self, name: str) -> Any: ...

__all__ = ["COMPOSE_FILES", "AsyncStack", "ReadFile", "Stack", "StackChange", "Together",
           "find_file", "load", "stacks_of"]

#: The files ``cove up`` looks for without ``-f``, in Compose's order.
COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
_STOP_TIMEOUT = 10.0  # Compose's default stop_grace_period
T = TypeVar("T")


@dataclass(frozen=True)
class ReadFile:
    """A stack step: the bytes of ``path`` in instance ``name`` (b"" when
    missing), done by the stack's runner through the driver's transport."""

    name: str
    path: str


@dataclass(frozen=True)
class Together:
    """A stack step: run these flows (one level of the stack: none depends on
    another) and answer their results in order; the asyncio runner runs them
    at once (a failure is raised once all ended), the sync one in turn."""

    flows: tuple[Any, ...]


@dataclass(frozen=True)
class StackChange:
    """What ``up`` did to one service: ``created``, ``recreated``,
    ``unchanged`` or ``removed``."""

    service: str
    instance: str
    action: str


#: A stack flow: driver steps, ``ReadFile`` and ``Together``.
StackFlow = Generator["Step | ReadFile | Together", Any, T]


# -- files ----------------------------------------------------------------------------------

def find_file(folder: str = ".") -> str:
    """The Compose file in ``folder``. Raises: NotFound naming the names tried."""
    for name in COMPOSE_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise NotFound(f"No Compose file in {os.path.abspath(folder)} (looked for "
                   f"{', '.join(COMPOSE_FILES)}; give one with -f)")


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise BadRequest(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadRequest(f"{path}: cannot read it: {e}") from None


def load(source: str | os.PathLike[str] | Mapping[str, Any] | None = None, *,
         name: str | None = None, env: Mapping[str, str] | None = None,
         project_dir: str | None = None) -> StackPlan:
    """The plan of a Compose file (a path; None: the one in the current
    folder) or of a Compose document given as a dict.

    Variables come from ``env`` (default: the process's environment) over
    the ``.env`` file of the project folder (the file's folder, or
    ``project_dir``), as Compose reads them.

    Raises:
        BadRequest: the first fault of the file (key and line named).
        NotFound: no file given and none found.
    """
    if source is None:
        source = find_file(project_dir or ".")
    if isinstance(source, Mapping):
        base = project_dir or os.getcwd()
        doc: Any = dict(source)
        lines: dict[Any, int] = {}
    else:
        path = os.fspath(source)
        base = project_dir or os.path.dirname(os.path.abspath(path))
        doc, lines = load_yaml(_read_text(path), path)
    variables = dict(os.environ if env is None else env)
    dotenv = os.path.join(base, ".env")
    if os.path.isfile(dotenv):
        variables = {**parse_dotenv(_read_text(dotenv), dotenv, variables), **variables}
    return plan_stack(doc, name=name, lines=lines, env=variables, base_dir=base,
                      read_env_file=_read_text)


# -- flows ------------------------------------------------------------------------------------

def stacks_of(instances: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The instances of each stack (by ``user.cove.stack``), by name."""
    out: dict[str, list[dict[str, Any]]] = {}
    for inst in instances:
        stack = (inst.get("config") or {}).get("user.cove.stack")
        if stack:
            out.setdefault(stack, []).append(inst)
    return {k: sorted(v, key=lambda i: str(i.get("name"))) for k, v in sorted(out.items())}


def _members(stack: str) -> Flow[list[dict[str, Any]]]:
    return stacks_of(list((yield ListInstances()))).get(stack, [])


def _check_host(plan: StackPlan, images: dict[str, bool],
                entrypoints: dict[str, list[str]]) -> Flow[dict[str, dict[str, Any]]]:
    """Everything on the host that must hold before anything is made; the
    instances of the stack now, by name. ``images`` is filled: each image
    of the plan, True when it is an alias (else a fingerprint); and
    ``entrypoints``: each image's own (an OCI image's, else [])."""
    for image in dict.fromkeys(s.image for s in plan.services):
        alias = yield GetAlias(image)
        images[image] = alias is not None
        found = yield GetImage(str(alias.get("target") or image) if alias else image)
        if found is None:
            users = ", ".join(s.name for s in plan.services if s.image == image)
            raise NotFound(f"Image {image!r} not found (service {users}): import it first "
                           "(cove image import FILE --alias NAME)")
        entrypoints[image] = shlex.split((found.get("properties") or {}).get(
            "oci.entrypoint") or "")
    for net in plan.networks:
        if net.external and (yield GetNetwork(net.name)) is None:
            raise NotFound(f"External network {net.name!r} not found")
    for vol in plan.volumes:
        if vol.external and (yield GetVolume(DEFAULT_POOL, vol.name)) is None:
            raise NotFound(f"External volume {vol.name!r} not found in pool {DEFAULT_POOL}")
    every = {str(i["name"]): i for i in (yield ListInstances())}
    for s in plan.services:
        other = every.get(s.instance)
        if other is not None and (other.get("config") or {}).get("user.cove.stack") != plan.name:
            raise BadRequest(f"Instance {s.instance} exists and is not part of stack "
                             f"{plan.name}: rename or delete it first")
    return {n: i for n, i in every.items()
            if (i.get("config") or {}).get("user.cove.stack") == plan.name}


def _halt(inst: Mapping[str, Any]) -> Flow[None]:
    """Stop as Compose does: the stop signal, then a kill after the grace
    period. One with a restart policy is sent a stop even when it reads
    stopped: it may be waiting out its restart back-off, which coved then
    cancels (else the restart could come between this stop and what
    follows: a recreate would find it running with its old command)."""
    name = str(inst["name"])
    config = inst.get("config") or {}
    grace = float(config.get("user.cove.stop_timeout") or _STOP_TIMEOUT)
    try:
        yield from flows.stop(name, force=False, timeout=grace, retry_interval=None,
                              retry_count=None)
    except Timeout:
        yield from flows.stop(name, force=True, timeout=0, retry_interval=None,
                              retry_count=None)
    if config.get("cove.restart", "no") != "no":
        yield from flows._stop_once(name, force=True, timeout=-1)  # "already stopped": done


def _reverse_order(members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dependents first (by their ``cove.depends``), for stopping."""
    names = {str(i["name"]) for i in members}
    deps = {str(i["name"]): [d.split(":")[0] for d in
                             (i.get("config") or {}).get("cove.depends", "").split(",")
                             if d.split(":")[0] in names] for i in members}
    try:
        order = [n for level in solve_levels(deps) for n in level]
    except BadRequest:
        order = sorted(names)
    by_name = {str(i["name"]): i for i in members}
    return [by_name[n] for n in reversed(order)]


def _user_config(s: Service) -> StackFlow[dict[str, str]]:
    """``cove.uid``/``cove.gid`` for a user or group given by name, read from
    the created instance's own /etc/passwd and /etc/group."""
    out: dict[str, str] = {}
    if s.user:
        passwd = parse_passwd((yield ReadFile(s.instance, "/etc/passwd")).decode(
            "utf-8", "replace"))
        try:
            entry = resolve_user(s.user, passwd)
        except BadRequest:
            raise BadRequest(f"Service {s.name}: user {s.user!r} is not in the image's "
                             "/etc/passwd") from None
        out["cove.uid"] = str(entry.uid)
        if "cove.gid" not in s.config:
            out["cove.gid"] = str(entry.gid)
    if s.group:
        groups = parse_group((yield ReadFile(s.instance, "/etc/group")).decode(
            "utf-8", "replace"))
        try:
            out["cove.gid"] = str(resolve_group(s.group, groups))
        except BadRequest:
            raise BadRequest(f"Service {s.name}: group {s.group!r} is not in the image's "
                             "/etc/group") from None
    return out


def _create(s: Service, alias: bool) -> StackFlow[None]:
    yield from flows.create_container(
        s.instance, alias=s.image if alias else None, fingerprint=None if alias else s.image,
        properties=None, server=None, protocol=None,
        profiles=None, config=s.config, devices=s.devices, autostart=False, progress=None)
    if s.user or s.group:
        try:
            extra = yield from _user_config(s)
        except CoveError:
            yield from flows.delete(s.instance)
            raise
        yield from flows.update(s.instance, config=extra, devices=None, profiles=None)


def _replace(inst: Mapping[str, Any], s: Service, alias: bool) -> StackFlow[None]:
    """Make the stopped ``inst`` what ``s`` says: a new instance for a new
    image, else its config and devices replaced in place (its files are
    kept, as a volume would keep them, and no dependent's ``cove.depends``
    ever points at a missing instance)."""
    old_config: Mapping[str, str] = inst.get("config") or {}
    if old_config.get("user.cove.image") != s.image:
        yield from flows.delete(s.instance)
        yield from _create(s, alias)
        return
    config: dict[str, str | None] = {
        k: None for k in old_config
        if not k.startswith(("volatile.", "image.")) and k not in s.config}
    config.update(s.config)
    devices: dict[str, dict[str, str] | None] = {
        k: None for k in (inst.get("devices") or {}) if k not in s.devices}
    devices.update(s.devices)
    yield from flows.update(s.instance, config=config, devices=devices, profiles=None)
    if s.user or s.group:
        extra = yield from _user_config(s)
        yield from flows.update(s.instance, config=extra, devices=None, profiles=None)


def _with_entrypoint(s: Service, entrypoint: list[str]) -> Service:
    """``s`` with a ``command`` given alone put after the image's own
    entrypoint, as Docker runs it (``command: []``: the entrypoint alone)."""
    if s.args is None or not entrypoint:
        return s
    return dataclasses.replace(s, config={**s.config,
                                          "cove.cmd": shlex.join([*entrypoint, *s.args])})


def up(plan: StackPlan, report: Callable[[StackChange], None] | None = None,
       ) -> StackFlow[list[StackChange]]:
    """Bring the host to ``plan`` (see the module notes). Returns what was
    done to each service, in start order, then the removed ones.

    Raises:
        NotFound: a missing image or external network/volume (nothing made).
        BadRequest: an instance of the stack's name that is not the stack's.
    """
    images: dict[str, bool] = {}
    entrypoints: dict[str, list[str]] = {}
    existing = yield from _check_host(plan, images, entrypoints)
    described = f"cove stack {plan.name}"
    for net in plan.networks:
        if not net.external:
            yield from resources.create_network(net.name, config=None, description=described,
                                                type="bridge")
    for vol in plan.volumes:
        if not vol.external:
            yield from storage.create_volume(DEFAULT_POOL, vol.name, config=None,
                                             description=described)
    wanted = {s.instance: s for s in plan.services}
    gone = [i for n, i in existing.items() if n not in wanted]
    changed = [i for n, i in existing.items() if n in wanted and
               (i.get("config") or {}).get("user.cove.hash") != wanted[n].digest]
    # Stop what goes or changes, dependents first; then per level (each
    # service's dependencies exist and run before its config names them):
    # replace or create, start; last delete what went, once nothing that
    # stays depends on it any more.
    for inst in _reverse_order(gone + changed):
        yield from _halt(inst)
    changed_by_name = {str(i["name"]): i for i in changed}

    def bring_up(s: Service) -> StackFlow[StackChange]:
        s = _with_entrypoint(s, entrypoints[s.image])
        action = "unchanged"
        if s.instance in changed_by_name:
            yield from _replace(changed_by_name[s.instance], s, images[s.image])
            action = "recreated"
        elif s.instance not in existing:
            yield from _create(s, images[s.image])
            action = "created"
        yield from flows.start(s.instance)
        change = StackChange(s.name, s.instance, action)
        if report:
            report(change)
        return change

    by_name = {s.name: s for s in plan.services}
    changes: list[StackChange] = []
    for level in plan.levels:
        changes += yield Together(tuple(bring_up(by_name[n]) for n in level))
    for inst in _reverse_order(gone):
        yield from flows.delete(str(inst["name"]))
        change = StackChange(inst["config"].get("user.cove.service", ""), str(inst["name"]),
                             "removed")
        changes.append(change)
        if report:
            report(change)
    return changes


def down(stack: str, *, volumes: bool = False) -> Flow[list[str]]:
    """Stop and delete the stack's instances (dependents first), then its
    networks and, with ``volumes``, its volumes (only those ``up`` made).
    Convergent: a stack that is gone is done. Returns the instances deleted."""
    members = yield from _members(stack)
    for inst in _reverse_order(members):
        yield from _halt(inst)
    for inst in _reverse_order(members):
        yield from flows.delete(str(inst["name"]))
    described = f"cove stack {stack}"
    nets = {bridge_name(stack)} | _recorded(members, "user.cove.networks")
    for net in sorted(nets):
        found = yield GetNetwork(net)
        if found is not None and found.get("description") == described:
            try:
                yield DeleteNetwork(net)
            except NotFound:
                pass
    if volumes:
        for vol in sorted(_recorded(members, "user.cove.volumes")):
            found = yield GetVolume(DEFAULT_POOL, vol)
            if found is not None and found.get("description") == described:
                try:
                    yield DeleteVolume(DEFAULT_POOL, vol)
                except NotFound:
                    pass
    return [str(i["name"]) for i in members]


def stop(stack: str) -> Flow[list[str]]:
    """Stop the stack's instances, dependents first; returns their names."""
    members = yield from _members(stack)
    for inst in _reverse_order(members):
        yield from _halt(inst)
    return [str(i["name"]) for i in members]


def _recorded(members: list[dict[str, Any]], key: str) -> set[str]:
    return {n for i in members for n in (i.get("config") or {}).get(key, "").split(",") if n}


def ps(stack: str) -> Flow[list[api.Instance]]:
    """The stack's instances, by name (an unknown stack: an empty list)."""
    members = yield from _members(stack)
    return [api.Instance.from_wire(i) for i in members]


def names() -> Flow[dict[str, dict[str, int]]]:
    """Every stack: its count of instances by status (``running``, ``stopped``...)."""
    out: dict[str, dict[str, int]] = {}
    for stack, members in stacks_of(list((yield ListInstances()))).items():
        counts = out.setdefault(stack, {})
        for inst in members:
            status = status_of(inst)
            counts[status] = counts.get(status, 0) + 1
    return out


# -- the runners ----------------------------------------------------------------------------

#: What a stack is made from: a Compose file's path, a Compose document, a
#: plan already loaded, or nothing (a stack known by its name only).
Source = str | os.PathLike[str] | Mapping[str, Any] | StackPlan | None


def _plan(source: Source, name: str | None, env: Mapping[str, str] | None) -> StackPlan | None:
    if source is None or isinstance(source, StackPlan):
        return source
    return load(source, name=name, env=env)


class Stack:
    """A stack on a ``Driver``: ``Stack(driver, "compose.yaml").up()``,
    ``Stack(driver, name="demo").down()``. ``source`` is a Compose file's
    path, a dict or a ``StackPlan``; without one only ``down``, ``ps`` and
    ``stop`` (by ``name``) work.

    Raises (at construction): BadRequest for a faulty file, before anything
    is sent to the host.
    """

    def __init__(self, driver: Driver, source: Source = None, *, name: str | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.driver = driver
        self.plan = _plan(source, name, env)
        if self.plan is None and not name:
            raise BadRequest("A stack needs a Compose file or a name")
        self.name = self.plan.name if self.plan is not None else str(name)

    def _do(self, step: Step | ReadFile | Together) -> Any:
        if isinstance(step, Together):
            return [drive(f, self._do) for f in step.flows]
        if isinstance(step, ReadFile):
            try:
                return self.driver.transport_for(step.name).read_file(step.path)
            except NotFound:
                return b""
        return self.driver._perform(step)

    def _run(self, flow: Iterator[Any]) -> Any:
        return drive(flow, self._do)  # type: ignore[arg-type]

    def up(self, report: Callable[[StackChange], None] | None = None) -> list[StackChange]:
        """See ``cove.client.stack.up``."""
        if self.plan is None:
            raise BadRequest(f"Stack {self.name}: up needs a Compose file")
        result: list[StackChange] = self._run(up(self.plan, report))
        return result

    def down(self, *, volumes: bool = False) -> list[str]:
        """See ``cove.client.stack.down``."""
        result: list[str] = self._run(down(self.name, volumes=volumes))
        return result

    def ps(self) -> list[api.Instance]:
        result: list[api.Instance] = self._run(ps(self.name))
        return result

    def stop(self) -> list[str]:
        """Stop every instance of the stack (dependents first); keep them."""
        result: list[str] = self._run(stop(self.name))
        return result


class AsyncStack:
    """``Stack`` for ``AsyncRestDriver``: the same calls, as coroutines."""

    def __init__(self, driver: AsyncRestDriver, source: Source = None, *,
                 name: str | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.driver = driver
        self.plan = _plan(source, name, env)
        if self.plan is None and not name:
            raise BadRequest("A stack needs a Compose file or a name")
        self.name = self.plan.name if self.plan is not None else str(name)

    async def _do(self, step: Step | ReadFile | Together) -> Any:
        if isinstance(step, Together):
            results = await asyncio.gather(*(adrive(f, self._do) for f in step.flows),
                                           return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r
            return results
        if isinstance(step, ReadFile):
            try:
                return await self.driver.transport_for(step.name).read_file(step.path)
            except NotFound:
                return b""
        return await self.driver._do(step)

    async def _run(self, flow: Iterator[Any]) -> Any:
        do: Callable[[Any], Awaitable[Any]] = self._do
        return await adrive(flow, do)  # type: ignore[arg-type]

    async def up(self, report: Callable[[StackChange], None] | None = None,
                 ) -> list[StackChange]:
        if self.plan is None:
            raise BadRequest(f"Stack {self.name}: up needs a Compose file")
        result: list[StackChange] = await self._run(up(self.plan, report))
        return result

    async def down(self, *, volumes: bool = False) -> list[str]:
        result: list[str] = await self._run(down(self.name, volumes=volumes))
        return result

    async def ps(self) -> list[api.Instance]:
        result: list[api.Instance] = await self._run(ps(self.name))
        return result

    async def stop(self) -> list[str]:
        result: list[str] = await self._run(stop(self.name))
        return result
