"""The requests on profiles of the LXD API: ``ProfilesPost`` (create),
``ProfilePut`` (``PUT``/``PATCH``) and ``ProfilePost`` (rename). The report,
``Profile``, is in ``cove.api._networks``.

Design note: as ``cove.api._instances`` (``parse`` strict, ``from_wire``
tolerant, ``to_wire`` LXD's JSON). Standard library only, no ``typing`` at
run time: the CLI imports this.
"""

from __future__ import annotations

from cove.api._fields import (
    Wire,
    opt_devices,
    opt_str,
    opt_str_map,
    require_object,
    t_devices,
    t_str,
    t_str_map,
)
from cove.model.errors import BadRequest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Self

__all__ = ["ProfilePost", "ProfilePut", "ProfilesPost"]


def _devices(devices: Mapping[str, Mapping[str, str]] | None) -> dict[str, dict[str, str]]:
    return {k: dict(v) for k, v in (devices or {}).items()}


class ProfilesPost(Wire):
    """``POST /1.0/profiles``: a new profile (LXD ``ProfilesPost``)."""

    __slots__ = ("config", "description", "devices", "name")

    def __init__(self, *, name: str = "", description: str = "",
                 config: Mapping[str, str] | None = None,
                 devices: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.name = name
        self.description = description
        self.config: dict[str, str] = dict(config or {})
        self.devices = _devices(devices)

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises: BadRequest (no name: LXD's "No name provided"; a field of
        the wrong type)."""
        body = require_object(body)
        name = opt_str(body, "name")
        if not name:
            raise BadRequest("No name provided")
        return cls(name=name, description=opt_str(body, "description"),
                   config=opt_str_map(body, "config"), devices=opt_devices(body))

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=t_str(data, "name"), description=t_str(data, "description"),
                   config=t_str_map(data, "config"), devices=t_devices(data, "devices"))

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "config": dict(self.config), "devices": _devices(self.devices)}


class ProfilePut(Wire):
    """``PUT``/``PATCH /1.0/profiles/NAME`` (LXD ``ProfilePut``); None: absent."""

    __slots__ = ("config", "description", "devices")

    def __init__(self, *, config: Mapping[str, str] | None = None,
                 devices: Mapping[str, Mapping[str, str]] | None = None,
                 description: str | None = None) -> None:
        self.config = None if config is None else dict(config)
        self.devices = None if devices is None else _devices(devices)
        self.description = description

    @classmethod
    def parse(cls, body: object) -> Self:
        """A field present (even null) is set (a null ``config`` or
        ``devices`` is empty). Raises: BadRequest (a field of the wrong type)."""
        body = require_object(body)
        return cls(
            config=(opt_str_map(body, "config") or {}) if "config" in body else None,
            devices=(opt_devices(body) or {}) if "devices" in body else None,
            description=opt_str(body, "description") if "description" in body else None)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(config=t_str_map(data, "config") if "config" in data else None,
                   devices=t_devices(data, "devices") if "devices" in data else None,
                   description=t_str(data, "description") if "description" in data else None)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.config is not None:
            out["config"] = dict(self.config)
        if self.devices is not None:
            out["devices"] = _devices(self.devices)
        if self.description is not None:
            out["description"] = self.description
        return out


class ProfilePost(Wire):
    """``POST /1.0/profiles/NAME``: rename (LXD ``ProfilePost``)."""

    __slots__ = ("name",)

    def __init__(self, *, name: str = "") -> None:
        self.name = name

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises: BadRequest (no name: LXD's "No name provided")."""
        name = opt_str(require_object(body), "name")
        if not name:
            raise BadRequest("No name provided")
        return cls(name=name)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=t_str(data, "name"))

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name}
