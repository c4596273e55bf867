"""Instance snapshots on the wire (LXD's ``shared/api/instance_snapshot.go``).

``InstanceSnapshot`` is the object; ``InstanceSnapshotsPost`` takes one,
``InstanceSnapshotPut`` changes its expiry, ``InstanceSnapshotPost``
renames it. Times are RFC 3339; LXD's zero time means "never expires".
Standard library only (the CLI imports it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Self

from cove.api._fields import (
    Wire,
    opt_bool,
    opt_str,
    require_object,
    t_bool,
    t_devices,
    t_int,
    t_str,
    t_str_list,
    t_str_map,
)
from cove.api._instances import ZERO_TIME
from cove.model.errors import BadRequest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cove.model.records import Instance as InstanceRecord
    from cove.model.records import Snapshot as SnapshotRecord

__all__ = ["InstanceSnapshot", "InstanceSnapshotPost", "InstanceSnapshotPut",
           "InstanceSnapshotsPost", "parse_time", "snapshot"]

_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: str, key: str) -> float:
    """An RFC 3339 time (Go's, up to nanoseconds) as Unix time; LXD's zero
    time and "" give 0.

    Raises: BadRequest naming ``key``.
    """
    if value in ("", ZERO_TIME) or value.startswith("0001-01-01"):
        return 0.0
    text = _FRACTION.sub(r"\1", value.replace("z", "Z"))
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"Field {key!r} must be an RFC 3339 time, not {value!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def _opt_time(body: Mapping[str, Any], key: str) -> float | None:
    if body.get(key) is None:
        return None
    return parse_time(opt_str(body, key), key)


class InstanceSnapshotsPost(Wire):
    """``POST /1.0/instances/NAME/snapshots``. ``name`` "" lets the server
    pick one (``snapshots.pattern``); ``expires_at`` None: from
    ``snapshots.expiry``."""

    __slots__ = ("expires_at", "name", "stateful")

    def __init__(self, *, name: str = "", stateful: bool = False,
                 expires_at: float | None = None) -> None:
        self.name = name
        self.stateful = stateful
        self.expires_at = expires_at

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises: BadRequest naming a field of the wrong type."""
        body = require_object(body)
        return cls(name=opt_str(body, "name"), stateful=opt_bool(body, "stateful"),
                   expires_at=_opt_time(body, "expires_at"))

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "stateful": self.stateful}
        if self.expires_at is not None:
            out["expires_at"] = _rfc3339(self.expires_at)
        return out


class InstanceSnapshotPut(Wire):
    """``PUT``/``PATCH .../snapshots/SNAP``: its expiry (None: unchanged)."""

    __slots__ = ("expires_at",)

    def __init__(self, *, expires_at: float | None = None) -> None:
        self.expires_at = expires_at

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises: BadRequest naming a field of the wrong type."""
        return cls(expires_at=_opt_time(require_object(body), "expires_at"))

    def to_wire(self) -> dict[str, Any]:
        return {} if self.expires_at is None else {"expires_at": _rfc3339(self.expires_at)}


class InstanceSnapshotPost(Wire):
    """``POST .../snapshots/SNAP``: a rename (``migration`` is refused)."""

    __slots__ = ("name",)

    def __init__(self, *, name: str) -> None:
        self.name = name

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises: BadRequest (no name; ``migration``: not supported)."""
        body = require_object(body)
        if opt_bool(body, "migration"):
            raise BadRequest("Field 'migration': snapshot migration is not supported")
        name = opt_str(body, "name")
        if not name:
            raise BadRequest("Field 'name' is required")
        return cls(name=name)

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name}


def _rfc3339(t: float) -> str:
    if not t:
        return ZERO_TIME
    secs, micros = divmod(round(t * 1_000_000), 1_000_000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{micros:06d}Z" if micros else base + "Z"


class InstanceSnapshot(Wire):
    """LXD's ``InstanceSnapshot``. ``stateful`` is always false in cove."""

    __slots__ = ("architecture", "config", "created_at", "devices", "ephemeral",
                 "expanded_config", "expanded_devices", "expires_at", "last_used_at",
                 "name", "profiles", "size", "stateful")

    def __init__(self, *, name: str, architecture: str = "", config: Mapping[str, str]
                 | None = None, devices: Mapping[str, Mapping[str, str]] | None = None,
                 expanded_config: Mapping[str, str] | None = None,
                 expanded_devices: Mapping[str, Mapping[str, str]] | None = None,
                 profiles: list[str] | None = None, ephemeral: bool = False,
                 created_at: str = ZERO_TIME, last_used_at: str = ZERO_TIME,
                 expires_at: str = ZERO_TIME, size: int = -1, stateful: bool = False) -> None:
        self.name = name
        self.architecture = architecture
        self.config = dict(config or {})
        self.devices = {k: dict(v) for k, v in (devices or {}).items()}
        self.expanded_config = dict(expanded_config or self.config)
        self.expanded_devices = {k: dict(v) for k, v in
                                 (expanded_devices or self.devices).items()}
        self.profiles = list(profiles or [])
        self.ephemeral = ephemeral
        self.created_at = created_at
        self.last_used_at = last_used_at
        self.expires_at = expires_at
        self.size = size
        self.stateful = stateful

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        """Tolerant: LXD before 4.0 named it ``INSTANCE/SNAP``; the snapshot's
        own name is kept."""
        return cls(name=t_str(data, "name").rsplit("/", 1)[-1],
                   architecture=t_str(data, "architecture"),
                   config=t_str_map(data, "config"), devices=t_devices(data, "devices"),
                   expanded_config=t_str_map(data, "expanded_config"),
                   expanded_devices=t_devices(data, "expanded_devices"),
                   profiles=t_str_list(data, "profiles"), ephemeral=t_bool(data, "ephemeral"),
                   created_at=t_str(data, "created_at", ZERO_TIME),
                   last_used_at=t_str(data, "last_used_at", ZERO_TIME),
                   expires_at=t_str(data, "expires_at", ZERO_TIME),
                   size=t_int(data, "size", -1), stateful=t_bool(data, "stateful"))

    def to_wire(self) -> dict[str, Any]:
        return {s: getattr(self, s) for s in self.__slots__}


def snapshot(snap: SnapshotRecord, inst: InstanceRecord | None = None) -> dict[str, Any]:
    """The LXD object of a stored snapshot. ``inst`` (with its expanded
    fields): the profiles' config and devices are expanded over the
    snapshot's own as they are today (LXD does the same)."""
    expanded_config = {**((inst.expanded_config or {}) if inst else {}), **snap.config}
    expanded_devices = {**((inst.expanded_devices or {}) if inst else {}), **snap.devices}
    return InstanceSnapshot(
        name=snap.name, architecture=snap.architecture, config=snap.config,
        devices=snap.devices, expanded_config=expanded_config,
        expanded_devices=expanded_devices, profiles=snap.profiles, ephemeral=snap.ephemeral,
        created_at=_rfc3339(snap.created_at), expires_at=_rfc3339(snap.expires_at),
        size=snap.size).to_wire()
