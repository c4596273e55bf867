"""A Compose file as a cove stack (pure): each service an instance with the
app-stack keys, each network a cove bridge, each named volume a custom
storage volume.

Design notes:

* Everything is checked here, before anything is made: a key cove does
  not support is refused with its path and line (never dropped), and so are
  cycles, unknown services, bad durations, ports, volumes and users. The
  caller (``cove.client.stack``) only has to check what needs the host:
  that each image exists.
* Names: the stack ``S`` (``-p``, else ``COMPOSE_PROJECT_NAME``, else the
  file's ``name:``, else its folder, normalised as Compose does) gives the
  instances ``S-SERVICE``, the default network ``S`` (a bridge: services
  reach each other by service name through ``cove.dns.aliases``; a name
  over 15 characters, a bridge's limit, is shortened with a hash), declared
  networks ``S-NET`` and volumes ``S-VOL`` (``external: true`` ones keep
  their own name and are never made or removed).
* Each instance carries ``user.cove.stack``, ``user.cove.service`` and
  ``user.cove.hash`` (the SHA-256 of what the service became: image,
  config, devices, user): ``cove up`` again recreates exactly the services
  whose hash changed. ``user.cove.networks``/``user.cove.volumes`` record
  what the stack made, so ``cove down`` needs no file.
* Mapping: ``command``/``entrypoint`` → ``cove.cmd`` (``entrypoint`` +
  ``command`` is the argv; a ``command`` alone goes after the image's own
  entrypoint, as Docker: an OCI image's ``oci.entrypoint`` property, put
  before it by the client, ``Service.args``);
  ``working_dir`` → ``cove.cwd``; a numeric ``user`` → ``cove.uid``/``gid``
  (a name is resolved in the image's ``/etc/passwd`` by the caller);
  ``depends_on`` → ``cove.depends`` (``service_started`` → ``started``,
  ``service_healthy`` → ``healthy``, ``service_completed_successfully`` →
  ``completed``, ``restart: true`` → ``:restart``); ``healthcheck`` →
  ``cove.health*``; ``restart`` → ``cove.restart``; ``stop_signal`` →
  ``cove.halt``; ``stop_grace_period`` → ``user.cove.stop_timeout`` (the
  client's stop timeout); ``hostname`` → ``cove.hostname`` and a DNS alias;
  ``ports`` → proxy devices; ``volumes`` → disk devices.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cove.model.app_keys import Dependency, parse_duration, parse_probe, parse_restart
from cove.model.compose_text import Lines, Path, interpolate, where
from cove.model.config import parse_signal, validate_config
from cove.model.disks import DEFAULT_POOL, validate_volume_name
from cove.model.errors import BadRequest
from cove.model.publish import publish_device

__all__ = [
    "SERVICE_KEYS",
    "Network",
    "Service",
    "StackPlan",
    "Volume",
    "bridge_name",
    "normalize_stack_name",
    "plan_stack",
    "solve_levels",
]

SERVICE_KEYS = ("image", "command", "entrypoint", "environment", "env_file", "working_dir",
                "user", "depends_on", "healthcheck", "restart", "stop_signal",
                "stop_grace_period", "ports", "volumes", "networks", "hostname", "labels")
_TOP_KEYS = ("version", "name", "services", "networks", "volumes")
_HEALTH_KEYS = ("test", "interval", "timeout", "retries", "start_period", "start_interval",
                "disable")
_CONDITIONS = {"service_started": "started", "service_healthy": "healthy",
               "service_completed_successfully": "completed"}
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")


@dataclass(frozen=True)
class Network:
    """A network of the stack: ``name`` is cove's; ``external`` ones exist already."""

    name: str
    external: bool = False


@dataclass(frozen=True)
class Volume:
    """A named volume of the stack, in pool ``default``."""

    name: str
    external: bool = False


@dataclass(frozen=True)
class Service:
    """One service as the instance it becomes."""

    name: str
    instance: str
    image: str
    config: dict[str, str]
    devices: dict[str, dict[str, str]]
    depends: tuple[str, ...] = ()
    user: str = ""    # a user name to resolve in the image ("" when numeric or unset)
    group: str = ""   # likewise a group name
    digest: str = field(default="", compare=False)
    # ``command`` given without ``entrypoint``: its words, which go after the
    # image's own entrypoint (``cove.client.stack`` reads it from the image)
    args: tuple[str, ...] | None = None


@dataclass(frozen=True)
class StackPlan:
    """What ``cove up`` makes: ``services`` in start order, ``levels`` the
    service names that may start together (each after the one before)."""

    name: str
    services: tuple[Service, ...]
    levels: tuple[tuple[str, ...], ...]
    networks: tuple[Network, ...]
    volumes: tuple[Volume, ...]

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)


def normalize_stack_name(raw: str) -> str:
    """Compose's project name rule (lower case; letters, digits, ``-``) as a
    cove name: ``_`` and ``.`` (no part of an instance name) become ``-``.

    Raises: BadRequest when nothing is left.
    """
    name = re.sub(r"[_.]", "-", raw.strip().lower())
    name = re.sub(r"[^a-z0-9-]", "", name).strip("-")
    if not name or not name[0].isalpha():
        raise BadRequest(f"Invalid stack name {raw!r}: use letters, digits and '-', starting "
                         "with a letter (set it with -p NAME)")
    if len(name) > 40:
        raise BadRequest(f"Invalid stack name {raw!r}: at most 40 characters (set a shorter "
                         "one with -p NAME)")
    return name


def bridge_name(name: str) -> str:
    """``name`` as a network name (it names a bridge: 15 characters at most):
    itself when it fits, else its start and a short hash of the whole."""
    if len(name) <= 15:
        return name
    return name[:10].rstrip("-.") + "-" + hashlib.sha256(name.encode()).hexdigest()[:4]


def solve_levels(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """The start order of ``deps`` (name → names it depends on) as levels:
    each level's names depend only on earlier levels (sorted in a level).

    Raises:
        BadRequest: a name depends on one not in ``deps``, or a cycle
            (naming it: ``a -> b -> a``).
    """
    for name, wanted in deps.items():
        for d in wanted:
            if d not in deps:
                raise BadRequest(f"Service {name!r} depends on {d!r}, which is not a service")
    done: set[str] = set()
    levels: list[list[str]] = []
    while len(done) < len(deps):
        level = sorted(n for n, w in deps.items() if n not in done and set(w) <= done)
        if not level:
            raise BadRequest(f"Dependency cycle: {' -> '.join(_cycle(deps, done))}")
        levels.append(level)
        done.update(level)
    return levels


def _cycle(deps: Mapping[str, Sequence[str]], done: set[str]) -> list[str]:
    path: list[str] = []
    node = min(n for n in deps if n not in done)
    while node not in path:
        path.append(node)
        node = min(d for d in deps[node] if d not in done)
    return [*path[path.index(node):], node]


# -- the loader ------------------------------------------------------------------------------

class _Ctx:
    """What every check needs: the lines, the stack's name, the environment."""

    def __init__(self, lines: Lines, stack: str, env: Mapping[str, str], base_dir: str,
                 read_env_file: Callable[[str], str]) -> None:
        self.lines = lines
        self.stack = stack
        self.env = env
        self.base_dir = base_dir
        self.read_env_file = read_env_file

    def fail(self, path: Path, message: str) -> BadRequest:
        return BadRequest(f"{where(path, self.lines)}: {message}")

    def keys(self, value: Any, path: Path, allowed: Sequence[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "expected a mapping")
        for key in value:
            if key not in allowed and not key.startswith("x-"):
                raise self.fail((*path, key), "not supported by cove (supported here: "
                                + ", ".join(allowed) + ")")
        return {k: v for k, v in value.items() if not k.startswith("x-")}

    def text(self, value: Any, path: Path) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(path, "expected a string")
        return str(value)

    def duration(self, value: Any, path: Path) -> str:
        text = self.text(value, path)
        try:
            parse_duration(text, where(path))
        except BadRequest as e:
            raise self.fail(path, str(e)) from None
        return text

    def strings(self, value: Any, path: Path) -> list[str]:
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            raise self.fail(path, "expected a string or a list of strings")
        return [self.text(v, (*path, i)) for i, v in enumerate(value)]

    def pairs(self, value: Any, path: Path) -> dict[str, str | None]:
        """A map, or a list of ``KEY=VALUE`` (``KEY`` alone: None)."""
        if isinstance(value, dict):
            return {k: None if v is None else ("true" if v is True else "false" if v is False
                                               else self.text(v, (*path, k)))
                    for k, v in value.items()}
        if isinstance(value, list):
            out: dict[str, str | None] = {}
            for i, item in enumerate(value):
                key, eq, val = self.text(item, (*path, i)).partition("=")
                out[key] = val if eq else None
            return out
        raise self.fail(path, "expected a mapping or a list of KEY=VALUE")


def plan_stack(doc: Any, *, name: str | None, lines: Lines | None = None,
               env: Mapping[str, str] | None = None, base_dir: str = ".",
               read_env_file: Callable[[str], str] | None = None) -> StackPlan:
    """The stack ``doc`` (a Compose file as plain values) describes.

    ``name``: the stack's name (else ``COMPOSE_PROJECT_NAME`` in ``env``, the
    file's ``name``, the folder of ``base_dir``); ``env``: the variables for
    interpolation (the process's and ``.env``'s); ``read_env_file``: the text
    of an ``env_file`` path (relative ones are under ``base_dir``; raises
    BadRequest when missing).

    Raises:
        BadRequest: the first thing wrong, naming its path and line.
    """
    lines = lines or {}
    env = dict(env or {})
    doc = interpolate(doc, env, (), lines)
    probe = _Ctx(lines, "", env, base_dir, read_env_file or _no_files)
    top = probe.keys(doc if doc is not None else {}, (), _TOP_KEYS)
    raw_name = name or env.get("COMPOSE_PROJECT_NAME") or (
        probe.text(top["name"], ("name",)) if top.get("name") else
        os.path.basename(os.path.abspath(base_dir)))
    ctx = _Ctx(lines, normalize_stack_name(raw_name), env, base_dir,
               read_env_file or _no_files)
    services = top.get("services")
    if not isinstance(services, dict) or not services:
        raise ctx.fail(("services",), "a Compose file needs at least one service")
    networks = _networks(ctx, top.get("networks") or {})
    volumes = _volumes(ctx, top.get("volumes") or {})
    raw = {n: ctx.keys(s or {}, ("services", n), SERVICE_KEYS) for n, s in services.items()}
    deps = {n: _depends(ctx, n, s.get("depends_on")) for n, s in raw.items()}
    for n, wanted in deps.items():
        for d, (cond, _restart) in wanted.items():
            if d not in raw:
                raise ctx.fail(("services", n, "depends_on"), f"{d!r} is not a service")
            if cond == "healthy" and not _has_health(raw[d]):
                raise ctx.fail(("services", n, "depends_on", d),
                               f"waits for {d!r} to be healthy, but {d!r} has no healthcheck")
    levels = solve_levels({n: list(w) for n, w in deps.items()})
    built = {n: _service(ctx, n, raw[n], deps[n], networks, volumes) for n in raw}
    order = [n for level in levels for n in level]
    # Only what a service uses is made (or checked, when external), as
    # ``docker compose`` (compose-go drops unused networks and volumes): a
    # stack whose services all name their networks makes no default one.
    used = {d.get("network") or d.get("source") for s in built.values()
            for d in s.devices.values() if d.get("type") == "nic" or d.get("pool")}
    return StackPlan(ctx.stack, tuple(built[n] for n in order),
                     tuple(tuple(level) for level in levels),
                     tuple(n for n in networks.values() if n.name in used),
                     tuple(v for v in volumes.values() if v.name in used))


def _no_files(path: str) -> str:
    raise BadRequest(f"env_file {path!r}: no files can be read here")


def _networks(ctx: _Ctx, value: Any) -> dict[str, Network]:
    out = {"default": Network(bridge_name(ctx.stack))}
    if not isinstance(value, dict):
        raise ctx.fail(("networks",), "expected a mapping")
    for key, spec in value.items():
        path: Path = ("networks", key)
        s = ctx.keys(spec or {}, path, ("driver", "external", "name"))
        if s.get("driver", "bridge") != "bridge":
            raise ctx.fail((*path, "driver"), "cove makes bridge networks only")
        external = s.get("external") is True
        name = ctx.text(s["name"], (*path, "name")) if s.get("name") else \
            key if external else bridge_name(ctx.stack if key == "default"
                                             else f"{ctx.stack}-{key}")
        if not _IFNAME.match(name):
            raise ctx.fail(path, f"the network name {name!r} is not 1 to 15 letters, digits, "
                                 "'_', '.' or '-' (it names a bridge; shorten the stack or "
                                 "network name)")
        out[key] = Network(name, external)
    return out


def _volumes(ctx: _Ctx, value: Any) -> dict[str, Volume]:
    out: dict[str, Volume] = {}
    if not isinstance(value, dict):
        raise ctx.fail(("volumes",), "expected a mapping")
    for key, spec in value.items():
        path: Path = ("volumes", key)
        s = ctx.keys(spec or {}, path, ("driver", "external", "name"))
        if s.get("driver", "local") != "local":
            raise ctx.fail((*path, "driver"), "cove's volumes are in its own pool: no driver")
        external = s.get("external") is True
        name = ctx.text(s["name"], (*path, "name")) if s.get("name") else \
            key if external else f"{ctx.stack}-{key}"
        try:
            validate_volume_name(name)
        except BadRequest as e:
            raise ctx.fail(path, str(e)) from None
        out[key] = Volume(name, external)
    return out


def _has_health(raw: Mapping[str, Any]) -> bool:
    h = raw.get("healthcheck")
    if not isinstance(h, dict) or h.get("disable") is True:
        return False
    test = h.get("test")
    return bool(test) and not (isinstance(test, list) and test[:1] == ["NONE"])


def _depends(ctx: _Ctx, svc: str, value: Any) -> dict[str, tuple[str, bool]]:
    path: Path = ("services", svc, "depends_on")
    if value is None:
        return {}
    if isinstance(value, list):
        return {ctx.text(v, (*path, i)): ("started", False) for i, v in enumerate(value)}
    if not isinstance(value, dict):
        raise ctx.fail(path, "expected a list of services or a mapping")
    out = {}
    for dep, spec in value.items():
        s = ctx.keys(spec or {}, (*path, dep), ("condition", "restart", "required"))
        cond = s.get("condition", "service_started")
        if cond not in _CONDITIONS:
            raise ctx.fail((*path, dep, "condition"),
                           f"{cond!r} is not one of {', '.join(_CONDITIONS)}")
        if s.get("required", True) is not True:
            raise ctx.fail((*path, dep, "required"), "only required dependencies are supported")
        restart = s.get("restart", False)
        if not isinstance(restart, bool):
            raise ctx.fail((*path, dep, "restart"), "expected true or false")
        out[dep] = (_CONDITIONS[cond], restart)
    return out


def _service(ctx: _Ctx, svc: str, s: dict[str, Any], deps: dict[str, tuple[str, bool]],
             networks: Mapping[str, Network], volumes: Mapping[str, Volume]) -> Service:
    path: Path = ("services", svc)
    instance = f"{ctx.stack}-{svc}"
    if not _LABEL.match(svc) or len(instance) > 63:
        raise ctx.fail(path, "a service name becomes an instance and DNS name: use lower-case "
                             "letters, digits and '-'")
    if not s.get("image"):
        raise ctx.fail(path, "no image (cove does not build images: give 'image')")
    config: dict[str, str] = {"user.cove.stack": ctx.stack, "user.cove.service": svc}
    config.update(_command(ctx, path, s))
    args = None
    if s.get("command") is not None and s.get("entrypoint") is None:
        args = tuple(shlex.split(config["cove.cmd"])) if "cove.cmd" in config else ()
    config.update(_environment(ctx, path, s))
    config.update(_health(ctx, path, s.get("healthcheck")))
    user, group = _user(ctx, path, s, config)
    if "working_dir" in s:
        cwd = ctx.text(s["working_dir"], (*path, "working_dir"))
        if not cwd.startswith("/"):
            raise ctx.fail((*path, "working_dir"), "must be an absolute path")
        config["cove.cwd"] = cwd
    if deps:
        config["cove.depends"] = ",".join(
            str(Dependency(f"{ctx.stack}-{d}", cond, restart))
            for d, (cond, restart) in deps.items())
    _policies(ctx, path, s, config)
    aliases = [svc]
    if "hostname" in s:
        host = ctx.text(s["hostname"], (*path, "hostname"))
        if not _LABEL.match(host):
            raise ctx.fail((*path, "hostname"), "a hostname label: letters, digits and '-'")
        config["cove.hostname"] = host
        aliases.append(host)
    config["cove.dns.aliases"] = ",".join(dict.fromkeys(aliases))
    for key, value in ctx.pairs(s.get("labels") or {}, (*path, "labels")).items():
        config[f"user.{key}"] = value or ""
    devices = _nics(ctx, path, s.get("networks"), networks)
    devices.update(_ports(ctx, path, s.get("ports") or []))
    devices.update(_mounts(ctx, path, s.get("volumes") or [], volumes))
    made_nets = sorted({networks[k].name for k in _net_keys(ctx, path, s.get("networks"))
                        if not networks[k].external})
    config["user.cove.networks"] = ",".join(made_nets)
    config["user.cove.volumes"] = ",".join(sorted({
        d["source"] for d in devices.values() if d.get("pool") and
        not any(v.external and v.name == d["source"] for v in volumes.values())}))
    image = ctx.text(s["image"], (*path, "image"))
    config["user.cove.image"] = image
    digest = hashlib.sha256(json.dumps(
        [image, config, devices, user, group], sort_keys=True).encode()).hexdigest()[:16]
    config["user.cove.hash"] = digest
    try:
        validate_config(config)
    except BadRequest as e:
        raise ctx.fail(path, str(e)) from None
    return Service(svc, instance, image, config, devices,
                   tuple(f"{ctx.stack}-{d}" for d in deps), user, group, digest, args)


def _command(ctx: _Ctx, path: Path, s: Mapping[str, Any]) -> dict[str, str]:
    words: list[str] = []
    for key in ("entrypoint", "command"):
        if s.get(key) is None:
            continue
        value = s[key]
        if isinstance(value, str):
            try:
                words += shlex.split(value)
            except ValueError as e:
                raise ctx.fail((*path, key), str(e)) from None
        else:
            if not isinstance(value, list):
                raise ctx.fail((*path, key), "expected a string or a list of strings")
            words += [ctx.text(v, (*path, key, i)) for i, v in enumerate(value)]
    if not words and s.get("entrypoint") is not None:
        # the image's entrypoint is reset and a set entrypoint drops the image's
        # command (the spec): Docker refuses to create a container that runs nothing
        raise ctx.fail((*path, "entrypoint"), "an empty entrypoint and no command: nothing "
                                              "to run (give a command)")
    return {"cove.cmd": shlex.join(words)} if words else {}


def _environment(ctx: _Ctx, path: Path, s: Mapping[str, Any]) -> dict[str, str]:
    from cove.model.compose_text import parse_dotenv

    out: dict[str, str] = {}
    files = s.get("env_file")
    if files is not None:
        items = files if isinstance(files, list) else [files]
        for i, item in enumerate(items):
            where_ = (*path, "env_file", i) if isinstance(files, list) else (*path, "env_file")
            required, entry = True, item
            if isinstance(item, dict):
                spec = ctx.keys(item, where_, ("path", "required"))
                required = spec.get("required", True) is not False
                entry = spec.get("path")
            name = ctx.text(entry, where_)
            full = os.path.join(ctx.base_dir, name)
            try:
                text = ctx.read_env_file(full)
            except BadRequest as e:
                if not required:
                    continue
                raise ctx.fail(where_, str(e)) from None
            out.update(parse_dotenv(text, name, ctx.env))
    for key, value in ctx.pairs(s.get("environment") or {}, (*path, "environment")).items():
        if not key or "=" in key:
            raise ctx.fail((*path, "environment"), f"invalid variable name {key!r}")
        if value is None:
            if key in ctx.env:
                out[key] = ctx.env[key]
            continue
        out[key] = value
    return {f"environment.{k}": v for k, v in out.items()}


def _health(ctx: _Ctx, path: Path, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    hpath: Path = (*path, "healthcheck")
    h = ctx.keys(value, hpath, _HEALTH_KEYS)
    if h.get("disable") is True:
        return {}
    test = h.get("test")
    if isinstance(test, str):
        argv = ["sh", "-c", test]
    elif isinstance(test, list) and test:
        kind, rest = test[0], [ctx.text(v, (*hpath, "test", i + 1)) for i, v in
                               enumerate(test[1:])]
        if kind == "NONE":
            return {}
        if kind == "CMD" and rest:
            argv = rest
        elif kind == "CMD-SHELL" and len(rest) == 1:
            argv = ["sh", "-c", rest[0]]
        else:
            raise ctx.fail((*hpath, "test"), "use [CMD, prog, args...], [CMD-SHELL, command], "
                                             "[NONE] or a shell command string")
    else:
        raise ctx.fail((*hpath, "test"), "a healthcheck needs a test")
    probe = shlex.join(argv)
    try:
        parse_probe(probe, "test")
    except BadRequest as e:
        raise ctx.fail((*hpath, "test"), str(e)) from None
    out = {"cove.health": probe}
    for key in ("interval", "timeout", "start_period", "start_interval"):
        if key in h:
            out[f"cove.health.{key}"] = ctx.duration(h[key], (*hpath, key))
    if "retries" in h:
        retries = h["retries"]
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ctx.fail((*hpath, "retries"), "a whole number")
        out["cove.health.retries"] = str(retries)
    return out


def _user(ctx: _Ctx, path: Path, s: Mapping[str, Any],
          config: dict[str, str]) -> tuple[str, str]:
    if s.get("user") is None:
        return "", ""
    user, _, group = ctx.text(s["user"], (*path, "user")).partition(":")
    if not user:
        raise ctx.fail((*path, "user"), "expected USER[:GROUP]")
    names = ["", ""]
    for i, (part, key) in enumerate(((user, "cove.uid"), (group, "cove.gid"))):
        if part.isdigit():
            if int(part) > 2**31 - 1:
                raise ctx.fail((*path, "user"), f"id {part} is too large")
            config[key] = part
        elif part:
            names[i] = part
    return names[0], names[1]


def _policies(ctx: _Ctx, path: Path, s: Mapping[str, Any], config: dict[str, str]) -> None:
    if "restart" in s:
        text = ctx.text(s["restart"], (*path, "restart"))
        try:
            parse_restart(text, "restart")
        except BadRequest as e:
            raise ctx.fail((*path, "restart"), str(e)) from None
        config["cove.restart"] = text
    if "stop_signal" in s:
        sig = ctx.text(s["stop_signal"], (*path, "stop_signal"))
        try:
            parse_signal(sig)
        except BadRequest as e:
            raise ctx.fail((*path, "stop_signal"), str(e)) from None
        config["cove.halt"] = sig
    if "stop_grace_period" in s:
        text = ctx.duration(s["stop_grace_period"], (*path, "stop_grace_period"))
        config["user.cove.stop_timeout"] = str(max(1, round(parse_duration(text))))


def _net_keys(ctx: _Ctx, path: Path, value: Any) -> list[str]:
    if value is None:
        return ["default"]
    if isinstance(value, list):
        return [ctx.text(v, (*path, "networks", i)) for i, v in enumerate(value)]
    if isinstance(value, dict):
        for key, spec in value.items():
            ctx.keys(spec or {}, (*path, "networks", key), ())
        return list(value)
    raise ctx.fail((*path, "networks"), "expected a list or a mapping of networks")


def _nics(ctx: _Ctx, path: Path, value: Any,
          networks: Mapping[str, Network]) -> dict[str, dict[str, str]]:
    out = {}
    for i, key in enumerate(_net_keys(ctx, path, value)):
        if key not in networks:
            raise ctx.fail((*path, "networks"), f"{key!r} is not declared under the top-level "
                                                "'networks'")
        out[f"eth{i}"] = {"type": "nic", "network": networks[key].name, "name": f"eth{i}"}
    return out


def _ports(ctx: _Ctx, path: Path, value: Any) -> dict[str, dict[str, str]]:
    if not isinstance(value, list):
        raise ctx.fail((*path, "ports"), "expected a list")
    out = {}
    for i, item in enumerate(value):
        ppath: Path = (*path, "ports", i)
        if isinstance(item, dict):
            p = ctx.keys(item, ppath, ("target", "published", "host_ip", "protocol", "mode"))
            if "target" not in p or "published" not in p:
                raise ctx.fail(ppath, "cove publishes a port on a host port: give target "
                                      "and published")
            spec = f"{ctx.text(p['published'], (*ppath, 'published'))}:" \
                   f"{ctx.text(p['target'], (*ppath, 'target'))}"
            if p.get("host_ip"):
                spec = f"{ctx.text(p['host_ip'], (*ppath, 'host_ip'))}:{spec}"
            if p.get("protocol"):
                spec += "/" + ctx.text(p["protocol"], (*ppath, "protocol"))
        else:
            spec = ctx.text(item, ppath)
            if ":" not in spec:
                raise ctx.fail(ppath, f"{spec!r} has no host port: cove publishes a port on a "
                                      "host port you choose (HOST:CONTAINER)")
        try:
            name, dev = publish_device(spec)
        except BadRequest as e:
            raise ctx.fail(ppath, str(e)) from None
        if name in out:
            raise ctx.fail(ppath, f"{spec!r} publishes a host port twice")
        out[name] = dev
    return out


def _mounts(ctx: _Ctx, path: Path, value: Any,
            volumes: Mapping[str, Volume]) -> dict[str, dict[str, str]]:
    if not isinstance(value, list):
        raise ctx.fail((*path, "volumes"), "expected a list")
    out = {}
    for i, item in enumerate(value):
        vpath: Path = (*path, "volumes", i)
        source, target, read_only = _mount_spec(ctx, vpath, item)
        if not target.startswith("/"):
            raise ctx.fail(vpath, f"the target {target!r} is not an absolute path")
        if source.startswith(("/", ".", "~")):
            host = os.path.normpath(os.path.join(ctx.base_dir, os.path.expanduser(source)))
            dev = {"type": "disk", "source": host, "path": target}
        elif source in volumes:
            dev = {"type": "disk", "pool": DEFAULT_POOL, "source": volumes[source].name,
                   "path": target}
        elif not source:
            raise ctx.fail(vpath, "anonymous volumes are not supported: name the volume "
                                  "(NAME:/path) and declare it under 'volumes'")
        else:
            raise ctx.fail(vpath, f"the volume {source!r} is not declared under the top-level "
                                  "'volumes'")
        if read_only:
            dev["readonly"] = "true"
        out[f"volume{i}"] = dev
    return out


def _mount_spec(ctx: _Ctx, vpath: Path, item: Any) -> tuple[str, str, bool]:
    if isinstance(item, dict):
        v = ctx.keys(item, vpath, ("type", "source", "target", "read_only"))
        kind = v.get("type", "volume")
        if kind not in ("volume", "bind"):
            raise ctx.fail((*vpath, "type"), f"{kind!r}: cove mounts volumes and binds only")
        source = ctx.text(v.get("source") or "", (*vpath, "source"))
        if kind == "bind" and not source.startswith(("/", ".", "~")):
            source = "./" + source
        return source, ctx.text(v.get("target") or "", (*vpath, "target")), \
            v.get("read_only") is True
    parts = ctx.text(item, vpath).split(":")
    if len(parts) == 1:
        return "", parts[0], False
    if len(parts) > 3 or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise ctx.fail(vpath, "use SOURCE:TARGET[:ro|rw]")
    return parts[0], parts[1], len(parts) == 3 and parts[2] == "ro"
