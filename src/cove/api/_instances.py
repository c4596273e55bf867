"""The instance objects of the LXD API: what a client sends to make, change,
start, stop or exec in an instance, and the instance and state it reads back.

Design note: names and fields follow LXD's Go ``shared/api`` (``InstancesPost``,
``InstanceSource``, ``InstancePut``, ``InstancePost``, ``InstanceStatePut``,
``InstanceExecPost``, ``Instance``/``InstanceFull``, ``InstanceState``). A JSON
field ``wait-for-websocket`` is the attribute ``wait_for_websocket``. Each
class has ``parse`` (strict: a request coved received), ``from_wire``
(tolerant: an answer a client received from cove, LXD or Incus), ``to_wire``
(the JSON LXD sends or expects). Fields LXD leaves out when empty
(``omitempty``) are left out here too, so a client's request bodies are the
ones LXD's own client would send.

Standard library only, no ``typing`` at run time: the CLI imports this.
"""

from __future__ import annotations

from cove.api._fields import (
    MAX_SECONDS,
    Wire,
    opt_bool,
    opt_devices,
    opt_id,
    opt_int,
    opt_name,
    opt_number,
    opt_str,
    opt_str_list,
    opt_str_map,
    require_object,
    t_bool,
    t_devices,
    t_int,
    t_list,
    t_str,
    t_str_list,
    t_str_map,
)
from cove.api._state import InstanceState
from cove.model.errors import BadRequest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, Self

__all__ = [
    "Instance",
    "InstanceExecPost",
    "InstancePost",
    "InstancePut",
    "InstanceSource",
    "InstanceState",
    "InstanceStatePut",
    "InstancesPost",
]

# Go's zero time, which LXD sends for "never".
ZERO_TIME = "0001-01-01T00:00:00Z"


def _copy_devices(devices: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    return {k: dict(v) for k, v in devices.items()}


# -- requests --------------------------------------------------------------------------

class InstanceSource(Wire):
    """Where a new instance's root filesystem comes from (LXD ``InstanceSource``).

    cove creates from its local images only (``image_ref``); the other fields
    are carried so that a client can ask LXD or Incus for more (a remote
    ``server`` to pull from, a copy, a migration).
    """

    __slots__ = (
        "alias",
        "allow_inconsistent",
        "base_image",
        "certificate",
        "container_only",
        "fingerprint",
        "instance_only",
        "live",
        "mode",
        "operation",
        "project",
        "properties",
        "protocol",
        "refresh",
        "secret",
        "secrets",
        "server",
        "source",
        "type",
    )

    def __init__(self, *, type: str = "image", alias: str = "", fingerprint: str = "",
                 properties: Mapping[str, str] | None = None, server: str = "",
                 protocol: str = "", certificate: str = "", secret: str = "", mode: str = "",
                 operation: str = "", base_image: str = "", source: str = "",
                 project: str = "", secrets: Mapping[str, str] | None = None,
                 live: bool = False, instance_only: bool = False,
                 container_only: bool = False, refresh: bool = False,
                 allow_inconsistent: bool = False) -> None:
        self.type = type
        self.alias = alias
        self.fingerprint = fingerprint
        self.properties: dict[str, str] = dict(properties or {})
        self.server = server
        self.protocol = protocol
        self.certificate = certificate
        self.secret = secret
        self.mode = mode
        self.operation = operation
        self.base_image = base_image
        self.source = source
        self.project = project
        self.secrets: dict[str, str] = dict(secrets or {})
        self.live = live
        self.instance_only = instance_only
        self.container_only = container_only
        self.refresh = refresh
        self.allow_inconsistent = allow_inconsistent

    @classmethod
    def _read(cls, data: Mapping[str, Any], text: Callable[[Mapping[str, Any], str], str],
              flag: Callable[[Mapping[str, Any], str], bool],
              strings: Callable[[Mapping[str, Any], str], dict[str, str] | None]) -> Self:
        """The fields of ``data``, each read with the reader for its type."""
        return cls(type=text(data, "type"), alias=text(data, "alias"),
                   fingerprint=text(data, "fingerprint"),
                   properties=strings(data, "properties"), server=text(data, "server"),
                   protocol=text(data, "protocol"), certificate=text(data, "certificate"),
                   secret=text(data, "secret"), mode=text(data, "mode"),
                   operation=text(data, "operation"), base_image=text(data, "base-image"),
                   source=text(data, "source"), project=text(data, "project"),
                   secrets=strings(data, "secrets"), live=flag(data, "live"),
                   instance_only=flag(data, "instance_only"),
                   container_only=flag(data, "container_only"), refresh=flag(data, "refresh"),
                   allow_inconsistent=flag(data, "allow_inconsistent"))

    @classmethod
    def parse(cls, body: object) -> Self:
        """A ``source`` object as coved received it.

        Raises:
            BadRequest: not an object, or a field of the wrong type.
        """
        if not isinstance(body, dict):
            raise BadRequest("Field 'source' must be an object")
        return cls._read(body, opt_str, opt_bool, opt_str_map)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls._read(data, t_str, t_bool, t_str_map)

    def to_wire(self) -> dict[str, Any]:
        """``type``, and the other fields that are set (LXD's ``omitempty``)."""
        fields: tuple[tuple[str, Any], ...] = (
            ("alias", self.alias), ("fingerprint", self.fingerprint),
            ("properties", dict(self.properties)), ("server", self.server),
            ("protocol", self.protocol), ("certificate", self.certificate),
            ("secret", self.secret), ("mode", self.mode), ("operation", self.operation),
            ("base-image", self.base_image), ("source", self.source),
            ("project", self.project), ("secrets", dict(self.secrets)), ("live", self.live),
            ("instance_only", self.instance_only), ("container_only", self.container_only),
            ("refresh", self.refresh), ("allow_inconsistent", self.allow_inconsistent))
        out: dict[str, Any] = {"type": self.type}
        out.update((key, value) for key, value in fields if value)
        return out

    def image_ref(self) -> str:
        """The local image this source names: its alias, fingerprint or a
        fingerprint prefix (the fingerprint wins when both are given).

        Raises:
            BadRequest: no image (type ``none`` or no name), another source
                type, a remote server, or a choice by properties, none of
                which cove creates from.
        """
        if self.type in ("", "none"):
            raise BadRequest("Creating an instance without an image (source type 'none') is "
                             "not supported yet: give source {\"type\": \"image\", \"alias\": ...}")
        if self.type != "image":
            raise BadRequest(f"Source type {self.type!r} is not supported: cove creates "
                             "instances from local images only (source type 'image')")
        if self.server:
            raise BadRequest("Remote image servers are not supported: import the image into "
                             "cove first (POST /1.0/images), then create from its alias or "
                             "fingerprint")
        if self.properties:
            raise BadRequest("Choosing an image by properties is not supported: "
                             "give its alias or fingerprint")
        ref = self.fingerprint or self.alias
        if not ref:
            raise BadRequest("Source must name an image: give 'alias' or 'fingerprint'")
        return ref


class InstancesPost(Wire):
    """``POST /1.0/instances``: a new instance (LXD ``InstancesPost``).

    ``profiles`` None means the server's default (``["default"]``); ``start``
    starts it once made.
    """

    __slots__ = (
        "config",
        "description",
        "devices",
        "ephemeral",
        "name",
        "profiles",
        "source",
        "start",
        "type",
    )

    def __init__(self, *, name: str = "", type: str = "container",
                 source: InstanceSource | None = None, config: Mapping[str, str] | None = None,
                 devices: Mapping[str, Mapping[str, str]] | None = None,
                 profiles: list[str] | None = None, ephemeral: bool = False,
                 description: str = "", start: bool = False) -> None:
        self.name = name
        self.type = type
        self.source = source if source is not None else InstanceSource()
        self.config: dict[str, str] = dict(config or {})
        self.devices = _copy_devices(devices or {})
        self.profiles = None if profiles is None else list(profiles)
        self.ephemeral = ephemeral
        self.description = description
        self.start = start

    @property
    def profiles_or_default(self) -> list[str]:
        """``profiles``, or LXD's default when none were given."""
        return ["default"] if self.profiles is None else list(self.profiles)

    @classmethod
    def parse(cls, body: object) -> Self:
        """The body of ``POST /1.0/instances`` as coved received it. The source is
        checked for types only; ``source.image_ref()`` says what cove can make.

        Raises:
            BadRequest: no name (cove does not make names up), a type other
                than ``container``, or a field of the wrong type.
        """
        body = require_object(body)
        name = opt_str(body, "name")
        if not name:
            raise BadRequest("Field 'name' is required: cove does not make up instance names")
        itype = opt_str(body, "type")
        if itype not in ("", "container"):
            raise BadRequest(f"Instance type {itype!r} is not supported: cove runs containers only")
        source = body.get("source")
        return cls(name=name, type="container",
                   source=InstanceSource.parse({} if source is None else source),
                   profiles=opt_str_list(body, "profiles"),
                   config=opt_str_map(body, "config"), devices=opt_devices(body),
                   ephemeral=opt_bool(body, "ephemeral"),
                   description=opt_str(body, "description"), start=opt_bool(body, "start"))

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        source = data.get("source")
        profiles = data.get("profiles")
        return cls(name=t_str(data, "name"), type=t_str(data, "type", "container"),
                   source=InstanceSource.from_wire(source if isinstance(source, dict) else {}),
                   config=t_str_map(data, "config"), devices=t_devices(data, "devices"),
                   profiles=t_str_list(data, "profiles") if isinstance(profiles, list) else None,
                   ephemeral=t_bool(data, "ephemeral"), description=t_str(data, "description"),
                   start=t_bool(data, "start"))

    def to_wire(self) -> dict[str, Any]:
        """The body; no ``name`` lets the server pick one, no ``profiles`` gives
        the default profile, ``start`` is sent only when set."""
        out: dict[str, Any] = {"type": self.type, "source": self.source.to_wire(),
                               "config": dict(self.config),
                               "devices": _copy_devices(self.devices),
                               "ephemeral": self.ephemeral, "description": self.description}
        if self.start:
            out["start"] = True
        if self.name:
            out["name"] = self.name
        if self.profiles is not None:
            out["profiles"] = list(self.profiles)
        return out


class InstancePut(Wire):
    """``PUT`` (replace) or ``PATCH`` (merge) ``/1.0/instances/NAME`` (LXD ``InstancePut``).

    Every field may be None: absent from the body (for PATCH: left as it is).
    """

    __slots__ = (
        "architecture",
        "config",
        "description",
        "devices",
        "ephemeral",
        "profiles",
        "restore",
        "stateful",
    )

    def __init__(self, *, architecture: str | None = None,
                 config: Mapping[str, str] | None = None,
                 devices: Mapping[str, Mapping[str, str]] | None = None,
                 ephemeral: bool | None = None, profiles: list[str] | None = None,
                 stateful: bool | None = None, description: str | None = None,
                 restore: str | None = None) -> None:
        self.architecture = architecture
        self.config = None if config is None else dict(config)
        self.devices = None if devices is None else _copy_devices(devices)
        self.ephemeral = ephemeral
        self.profiles = None if profiles is None else list(profiles)
        self.stateful = stateful
        self.description = description
        self.restore = restore

    @classmethod
    def parse(cls, body: object) -> Self:
        """A PUT or PATCH body: a field present (even null) is set (null: empty).

        Raises:
            BadRequest: a field of the wrong type.
        """
        body = require_object(body)
        return cls(
            architecture=opt_str(body, "architecture") if "architecture" in body else None,
            config=(opt_str_map(body, "config") or {}) if "config" in body else None,
            devices=(opt_devices(body) or {}) if "devices" in body else None,
            ephemeral=opt_bool(body, "ephemeral") if "ephemeral" in body else None,
            profiles=(opt_str_list(body, "profiles") or []) if "profiles" in body else None,
            stateful=opt_bool(body, "stateful") if "stateful" in body else None,
            description=opt_str(body, "description") if "description" in body else None,
            restore=opt_str(body, "restore") if "restore" in body else None)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            architecture=t_str(data, "architecture") if "architecture" in data else None,
            config=t_str_map(data, "config") if "config" in data else None,
            devices=t_devices(data, "devices") if "devices" in data else None,
            ephemeral=t_bool(data, "ephemeral") if "ephemeral" in data else None,
            profiles=t_str_list(data, "profiles") if "profiles" in data else None,
            stateful=t_bool(data, "stateful") if "stateful" in data else None,
            description=t_str(data, "description") if "description" in data else None,
            restore=t_str(data, "restore") if "restore" in data else None)

    def to_wire(self) -> dict[str, Any]:
        """The fields that are set (a PATCH changes only those)."""
        out: dict[str, Any] = {}
        for key in self.__slots__:
            value = getattr(self, key)
            if value is None:
                continue
            if key == "devices":
                value = _copy_devices(value)
            elif isinstance(value, (dict, list)):
                value = type(value)(value)
            out[key] = value
        return out


class InstancePost(Wire):
    """``POST /1.0/instances/NAME``: rename (LXD ``InstancePost``; cove does not migrate)."""

    __slots__ = ("live", "migration", "name")

    def __init__(self, *, name: str = "", migration: bool = False, live: bool = False) -> None:
        self.name = name
        self.migration = migration
        self.live = live

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises:
            BadRequest: a migration (cove instances stay on their host), no
                new name, or a field of the wrong type.
        """
        body = require_object(body)
        if opt_bool(body, "migration"):
            raise BadRequest("Migration is not supported: cove instances stay on their host")
        name = opt_str(body, "name")
        if not name:
            raise BadRequest("Field 'name' (the new name) is required")
        return cls(name=name, live=opt_bool(body, "live"))

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=t_str(data, "name"), migration=t_bool(data, "migration"),
                   live=t_bool(data, "live"))

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.migration:
            out["migration"] = True
        if self.live:
            out["live"] = True
        return out


class InstanceStatePut(Wire):
    """``PUT /1.0/instances/NAME/state``: start, stop, restart, freeze, unfreeze.

    ``timeout`` is seconds a clean stop may take, -1 for no limit.
    ``command`` (cove's, not LXD's; sent only when set): with ``start``, run
    this command instead of the instance's own, this once (``cove start
    NAME -- CMD``).
    """

    __slots__ = ("action", "command", "force", "stateful", "timeout")

    def __init__(self, *, action: str = "", timeout: float = -1, force: bool = False,
                 stateful: bool = False, command: list[str] | None = None) -> None:
        self.action = action
        self.timeout = timeout
        self.force = force
        self.stateful = stateful
        self.command = command

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises:
            BadRequest: no action, a stateful action (checkpoints are not
                supported), or a field of the wrong type (``timeout`` must be
                a finite number).
        """
        body = require_object(body)
        action = opt_str(body, "action")
        if not action:
            raise BadRequest("Field 'action' is required: start, stop, restart, freeze or "
                             "unfreeze")
        if opt_bool(body, "stateful"):
            raise BadRequest("Stateful start and stop (checkpoints) are not supported")
        timeout = opt_number(body, "timeout", -1)
        if timeout > MAX_SECONDS:
            raise BadRequest(f"Field 'timeout' is too large: at most {MAX_SECONDS} seconds, "
                             "or -1 for no limit")
        command = opt_str_list(body, "command")
        if command is not None and (action != "start" or not command):
            raise BadRequest("Field 'command' is a non-empty list, and only with action start")
        return cls(action=action, timeout=int(timeout) if float(timeout).is_integer() else timeout,
                   force=opt_bool(body, "force"), command=command)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(action=t_str(data, "action"), timeout=t_int(data, "timeout", -1),
                   force=t_bool(data, "force"), stateful=t_bool(data, "stateful"),
                   command=t_str_list(data, "command") or None)

    def to_wire(self) -> dict[str, Any]:
        out = {"action": self.action, "timeout": self.timeout, "force": self.force,
               "stateful": self.stateful}
        if self.command:
            out["command"] = list(self.command)
        return out


# A terminal's size is an unsigned short (struct winsize).
MAX_WINDOW = 65535
# Linux refuses one argument or environment string longer than MAX_ARG_STRLEN
# (32 pages, with its NUL) and all of them together past ARG_MAX (a quarter of
# the stack limit, 2 MiB by default); 1 MiB in total leaves room for the
# container's own environment.
MAX_ARG_BYTES = 128 * 1024 - 1
MAX_EXEC_BYTES = 1024 * 1024


def _check_exec_strings(command: list[str], environment: Mapping[str, str],
                        cwd: str | None) -> None:
    """What execve(2) would refuse, refused first with the field's name.

    Raises:
        BadRequest: a NUL byte, an argument or value over MAX_ARG_BYTES, all
            of them over MAX_EXEC_BYTES, or an environment name that is empty
            or holds ``=``.
    """
    total = 0
    items = [(f"command[{i}]", arg) for i, arg in enumerate(command)]
    for key, value in environment.items():
        if not key or "=" in key:
            raise BadRequest(f"Field 'environment' has an invalid variable name {key[:40]!r}: "
                             "not empty, no '='")
        items.append((f"environment[{key[:40]!r}]", f"{key}={value}"))
    if cwd is not None:
        items.append(("cwd", cwd))
    for field, text in items:
        if "\0" in text:
            raise BadRequest(f"Field {field} contains a NUL byte")
        size = len(text.encode("utf-8", "surrogateescape"))
        if size > MAX_ARG_BYTES:
            raise BadRequest(f"Field {field} is too long: {size} bytes, at most {MAX_ARG_BYTES}")
        total += size + 1
    if total > MAX_EXEC_BYTES:
        raise BadRequest(f"Fields 'command' and 'environment' are too long together: {total} "
                         f"bytes, at most {MAX_EXEC_BYTES}")


def _id_or_name(body: Mapping[str, Any], key: str) -> int | str | None:
    """``user`` (a number, as LXD) or else cove's ``user-name``; the same for group.

    Raises:
        BadRequest: ``user`` is not a uid number, or both are given.
    """
    ident = opt_id(body, key)
    name = opt_name(body, f"{key}-name")
    if ident is not None and name is not None:
        raise BadRequest(f"Fields {key!r} and '{key}-name' exclude each other")
    return ident if ident is not None else name


class InstanceExecPost(Wire):
    """``POST /1.0/instances/NAME/exec``: a command to run (LXD ``InstanceExecPost``).

    ``width``/``height`` 0 mean "not given" (a pty is then 80x24). ``user``
    and ``group`` are a uid/gid or, a cove extension, a name looked up in the
    container's ``/etc/passwd``/``/etc/group``; None is root (or the user's
    group). ``cwd`` None is the user's home. On the wire a number goes in
    LXD's ``user``/``group`` (which must be numbers, as in LXD) and a name in
    cove's ``user-name``/``group-name``.
    """

    __slots__ = (
        "command",
        "cwd",
        "environment",
        "group",
        "height",
        "interactive",
        "record_output",
        "stopped",
        "user",
        "wait_for_websocket",
        "width",
    )

    def __init__(self, *, command: list[str] | None = None,
                 environment: Mapping[str, str] | None = None,
                 wait_for_websocket: bool = False, interactive: bool = False, width: int = 0,
                 height: int = 0, record_output: bool = False, user: int | str | None = None,
                 group: int | str | None = None, cwd: str | None = None,
                 stopped: bool = False) -> None:
        self.command: list[str] = list(command or [])
        # cove's (sent only when set): run in a temporary container on the
        # rootfs and config of the stopped instance, without its init
        self.stopped = stopped
        self.environment: dict[str, str] = dict(environment or {})
        self.wait_for_websocket = wait_for_websocket
        self.interactive = interactive
        self.width = width
        self.height = height
        self.record_output = record_output
        self.user = user
        self.group = group
        self.cwd = cwd

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises:
            BadRequest: no command, a field of the wrong type, or what the
                kernel would refuse to exec (see ``_check_exec_strings``), or
                a window size over 65535.
        """
        body = require_object(body)
        command = body.get("command")
        if (not isinstance(command, list) or not command
                or not all(isinstance(c, str) for c in command)):
            raise BadRequest("Field 'command' must be a non-empty list of strings")
        width, height = opt_int(body, "width", 0), opt_int(body, "height", 0)
        for key, size in (("width", width), ("height", height)):
            if size > MAX_WINDOW:
                raise BadRequest(f"Field {key!r} is too large: at most {MAX_WINDOW}")
        environment = opt_str_map(body, "environment")
        cwd = opt_str(body, "cwd") or None
        _check_exec_strings(command, environment or {}, cwd)
        return cls(command=command, environment=environment,
                   interactive=opt_bool(body, "interactive"),
                   wait_for_websocket=opt_bool(body, "wait-for-websocket"),
                   record_output=opt_bool(body, "record-output"),
                   width=max(width, 0), height=max(height, 0),
                   user=_id_or_name(body, "user"), group=_id_or_name(body, "group"),
                   cwd=cwd, stopped=opt_bool(body, "stopped"))

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        def ident(key: str) -> int | str | None:
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
                value = data.get(f"{key}-name")
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                return None
            return value if value != "" else None

        return cls(command=t_str_list(data, "command"),
                   environment=t_str_map(data, "environment"),
                   wait_for_websocket=t_bool(data, "wait-for-websocket"),
                   interactive=t_bool(data, "interactive"), width=t_int(data, "width"),
                   height=t_int(data, "height"), record_output=t_bool(data, "record-output"),
                   user=ident("user"), group=ident("group"), cwd=t_str(data, "cwd") or None,
                   stopped=t_bool(data, "stopped"))

    def to_wire(self) -> dict[str, Any]:
        """The body; a size, user, group or cwd not given is left out."""
        out: dict[str, Any] = {"command": list(self.command),
                               "environment": dict(self.environment),
                               "wait-for-websocket": self.wait_for_websocket,
                               "interactive": self.interactive,
                               "record-output": self.record_output}
        if self.width:
            out["width"] = self.width
        if self.height:
            out["height"] = self.height
        for key, value in (("user", self.user), ("group", self.group)):
            if isinstance(value, str):
                out[f"{key}-name"] = value
            elif value is not None:
                out[key] = value
        if self.cwd:
            out["cwd"] = self.cwd
        if self.stopped:
            out["stopped"] = True
        return out


# -- reports ---------------------------------------------------------------------------

class Instance(Wire):
    """An instance as ``GET /1.0/instances/NAME`` reports it (LXD ``Instance``).

    With ``full`` (``recursion=1`` on one instance, ``recursion=2`` on the
    list) it is LXD's ``InstanceFull``: ``state``, ``snapshots`` and
    ``backups`` are sent too.
    """

    __slots__ = (
        "architecture",
        "backups",
        "config",
        "created_at",
        "description",
        "devices",
        "ephemeral",
        "expanded_config",
        "expanded_devices",
        "full",
        "last_used_at",
        "location",
        "name",
        "profiles",
        "project",
        "snapshots",
        "state",
        "stateful",
        "status",
        "status_code",
        "type",
    )

    def __init__(self, *, name: str = "", description: str = "", status: str = "",
                 status_code: int = 0, type: str = "container", architecture: str = "",
                 config: Mapping[str, str] | None = None,
                 devices: Mapping[str, Mapping[str, str]] | None = None,
                 expanded_config: Mapping[str, str] | None = None,
                 expanded_devices: Mapping[str, Mapping[str, str]] | None = None,
                 ephemeral: bool = False, stateful: bool = False,
                 profiles: list[str] | None = None, project: str = "default",
                 created_at: str = ZERO_TIME, last_used_at: str = ZERO_TIME,
                 location: str = "none", full: bool = False, state: InstanceState | None = None,
                 snapshots: list[Any] | None = None, backups: list[Any] | None = None) -> None:
        self.name = name
        self.description = description
        self.status = status
        self.status_code = status_code
        self.type = type
        self.architecture = architecture
        self.config: dict[str, str] = dict(config or {})
        self.devices = _copy_devices(devices or {})
        self.expanded_config: dict[str, str] = dict(expanded_config or {})
        self.expanded_devices = _copy_devices(expanded_devices or {})
        self.ephemeral = ephemeral
        self.stateful = stateful
        self.profiles: list[str] = list(profiles or [])
        self.project = project
        self.created_at = created_at
        self.last_used_at = last_used_at
        self.location = location
        self.full = full or state is not None
        self.state = state
        self.snapshots: list[Any] = list(snapshots or [])
        self.backups: list[Any] = list(backups or [])

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        state = data.get("state")
        return cls(name=t_str(data, "name"), description=t_str(data, "description"),
                   status=t_str(data, "status"), status_code=t_int(data, "status_code"),
                   type=t_str(data, "type", "container"),
                   architecture=t_str(data, "architecture"), config=t_str_map(data, "config"),
                   devices=t_devices(data, "devices"),
                   expanded_config=t_str_map(data, "expanded_config"),
                   expanded_devices=t_devices(data, "expanded_devices"),
                   ephemeral=t_bool(data, "ephemeral"), stateful=t_bool(data, "stateful"),
                   profiles=t_str_list(data, "profiles"),
                   project=t_str(data, "project", "default"),
                   created_at=t_str(data, "created_at", ZERO_TIME),
                   last_used_at=t_str(data, "last_used_at", ZERO_TIME),
                   location=t_str(data, "location", "none"), full="state" in data,
                   state=InstanceState.from_wire(state) if isinstance(state, dict) else None,
                   snapshots=t_list(data, "snapshots"), backups=t_list(data, "backups"))

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "description": self.description, "status": self.status,
            "status_code": self.status_code, "type": self.type,
            "architecture": self.architecture, "config": dict(self.config),
            "devices": _copy_devices(self.devices),
            "expanded_config": dict(self.expanded_config),
            "expanded_devices": _copy_devices(self.expanded_devices),
            "ephemeral": self.ephemeral, "stateful": self.stateful,
            "profiles": list(self.profiles), "project": self.project,
            "created_at": self.created_at, "last_used_at": self.last_used_at,
            "location": self.location,
        }
        if self.full:
            out["state"] = None if self.state is None else self.state.to_wire()
            out["snapshots"] = list(self.snapshots)
            out["backups"] = list(self.backups)
        return out
