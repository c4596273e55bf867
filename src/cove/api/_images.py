"""The image objects of the LXD API: images and their aliases.

Design note: as ``cove.api._instances`` (names from LXD's Go ``shared/api``:
``Image``, ``ImagePut``, ``ImageAlias``, ``ImageAliasesEntry``,
``ImageAliasesPost``, ``ImageAliasesEntryPut``, ``ImageAliasesEntryPost``;
``parse`` strict, ``from_wire`` tolerant, ``to_wire`` LXD's JSON).

Standard library only, no ``typing`` at run time: the CLI imports this.
"""

from __future__ import annotations

from cove.api._fields import (
    Wire,
    opt_bool,
    opt_str,
    opt_str_list,
    opt_str_map,
    require_object,
    t_bool,
    t_int,
    t_list,
    t_str,
    t_str_list,
    t_str_map,
)
from cove.api._instances import ZERO_TIME
from cove.model.errors import BadRequest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Self

__all__ = [
    "Image",
    "ImageAlias",
    "ImageAliasesEntry",
    "ImageAliasesEntryPost",
    "ImageAliasesEntryPut",
    "ImageAliasesPost",
    "ImagePut",
]


# -- requests --------------------------------------------------------------------------

class ImagePut(Wire):
    """``PUT``/``PATCH /1.0/images/FP``: the writable fields (LXD ``ImagePut``).

    A field that is None was absent from the body (PATCH leaves it as it is).
    """

    __slots__ = ("auto_update", "expires_at", "profiles", "properties", "public")

    def __init__(self, *, auto_update: bool | None = None,
                 properties: Mapping[str, str] | None = None, public: bool | None = None,
                 expires_at: str | None = None, profiles: list[str] | None = None) -> None:
        self.auto_update = auto_update
        self.properties = None if properties is None else dict(properties)
        self.public = public
        self.expires_at = expires_at
        self.profiles = None if profiles is None else list(profiles)

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises:
            BadRequest: a field of the wrong type.
        """
        body = require_object(body)
        properties = opt_str_map(body, "properties")
        public = opt_bool(body, "public") if "public" in body else None
        return cls(auto_update=opt_bool(body, "auto_update") if "auto_update" in body else None,
                   properties=properties, public=public,
                   expires_at=opt_str(body, "expires_at") if "expires_at" in body else None,
                   profiles=opt_str_list(body, "profiles"))

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(auto_update=t_bool(data, "auto_update") if "auto_update" in data else None,
                   properties=t_str_map(data, "properties") if "properties" in data else None,
                   public=t_bool(data, "public") if "public" in data else None,
                   expires_at=t_str(data, "expires_at") if "expires_at" in data else None,
                   profiles=t_str_list(data, "profiles") if "profiles" in data else None)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in self.__slots__:
            value = getattr(self, key)
            if value is not None:
                out[key] = type(value)(value) if isinstance(value, (dict, list)) else value
        return out


class ImageAliasesPost(Wire):
    """``POST /1.0/images/aliases``: a new alias (LXD ``ImageAliasesPost``)."""

    __slots__ = ("description", "name", "target", "type")

    def __init__(self, *, name: str = "", description: str = "", target: str = "",
                 type: str = "") -> None:
        self.name = name
        self.description = description
        self.target = target
        self.type = type

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises:
            BadRequest: no name, no target, a type other than ``container``,
                or a field of the wrong type.
        """
        body = require_object(body)
        name, target = opt_str(body, "name"), opt_str(body, "target")
        if not name:
            raise BadRequest("Field 'name' is required")
        if not target:
            raise BadRequest("Field 'target' (an image fingerprint) is required")
        itype = opt_str(body, "type")
        if itype not in ("", "container"):
            raise BadRequest(f"Alias type {itype!r} is not supported: cove has container "
                             "images only")
        return cls(name=name, target=target, type=itype,
                   description=opt_str(body, "description"))

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=t_str(data, "name"), description=t_str(data, "description"),
                   target=t_str(data, "target"), type=t_str(data, "type"))

    def to_wire(self) -> dict[str, Any]:
        out = {"name": self.name, "description": self.description, "target": self.target}
        if self.type:
            out["type"] = self.type
        return out


class ImageAliasesEntryPut(Wire):
    """``PUT``/``PATCH /1.0/images/aliases/NAME`` (LXD ``ImageAliasesEntryPut``).

    ``target`` "" and ``description`` None are absent (PATCH keeps them).
    """

    __slots__ = ("description", "target")

    def __init__(self, *, description: str | None = None, target: str = "") -> None:
        self.description = description
        self.target = target

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises:
            BadRequest: a field of the wrong type.
        """
        body = require_object(body)
        target, description = opt_str(body, "target"), opt_str(body, "description")
        return cls(target=target, description=description if "description" in body else None)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(target=t_str(data, "target"),
                   description=t_str(data, "description") if "description" in data else None)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.description is not None:
            out["description"] = self.description
        if self.target:
            out["target"] = self.target
        return out


class ImageAliasesEntryPost(Wire):
    """``POST /1.0/images/aliases/NAME``: rename (LXD ``ImageAliasesEntryPost``)."""

    __slots__ = ("name",)

    def __init__(self, *, name: str = "") -> None:
        self.name = name

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises:
            BadRequest: no new name, or it is not a string.
        """
        name = opt_str(require_object(body), "name")
        if not name:
            raise BadRequest("Field 'name' (the new name) is required")
        return cls(name=name)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=t_str(data, "name"))

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name}


# -- reports ---------------------------------------------------------------------------

class ImageAlias(Wire):
    """One alias as an image lists it (LXD ``ImageAlias``)."""

    __slots__ = ("description", "name")

    def __init__(self, *, name: str = "", description: str = "") -> None:
        self.name = name
        self.description = description

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=t_str(data, "name"), description=t_str(data, "description"))

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description}


class ImageAliasesEntry(Wire):
    """An alias as ``GET /1.0/images/aliases/NAME`` reports it (LXD ``ImageAliasesEntry``)."""

    __slots__ = ("description", "name", "target", "type")

    def __init__(self, *, name: str = "", description: str = "", target: str = "",
                 type: str = "container") -> None:
        self.name = name
        self.description = description
        self.target = target
        self.type = type

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=t_str(data, "name"), description=t_str(data, "description"),
                   target=t_str(data, "target"), type=t_str(data, "type", "container"))

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "target": self.target,
                "type": self.type}


class Image(Wire):
    """An image as ``GET /1.0/images/FP`` reports it (LXD ``Image``)."""

    __slots__ = (
        "aliases",
        "architecture",
        "auto_update",
        "cached",
        "created_at",
        "expires_at",
        "filename",
        "fingerprint",
        "last_used_at",
        "profiles",
        "project",
        "properties",
        "public",
        "size",
        "type",
        "update_source",
        "uploaded_at",
    )

    def __init__(self, *, fingerprint: str = "", filename: str = "", size: int = 0,
                 architecture: str = "", type: str = "container", public: bool = False,
                 properties: Mapping[str, str] | None = None,
                 aliases: list[ImageAlias] | None = None, auto_update: bool = False,
                 cached: bool = False, profiles: list[str] | None = None,
                 project: str = "default", created_at: str = ZERO_TIME,
                 uploaded_at: str = ZERO_TIME, last_used_at: str = ZERO_TIME,
                 expires_at: str = ZERO_TIME,
                 update_source: Mapping[str, Any] | None = None) -> None:
        self.fingerprint = fingerprint
        self.filename = filename
        self.size = size
        self.architecture = architecture
        self.type = type
        self.public = public
        self.properties: dict[str, str] = dict(properties or {})
        self.aliases: list[ImageAlias] = list(aliases or [])
        self.auto_update = auto_update
        self.cached = cached
        self.profiles = ["default"] if profiles is None else list(profiles)
        self.project = project
        self.created_at = created_at
        self.uploaded_at = uploaded_at
        self.last_used_at = last_used_at
        self.expires_at = expires_at
        self.update_source = None if update_source is None else dict(update_source)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        source = data.get("update_source")
        return cls(fingerprint=t_str(data, "fingerprint"), filename=t_str(data, "filename"),
                   size=t_int(data, "size"), architecture=t_str(data, "architecture"),
                   type=t_str(data, "type", "container"), public=t_bool(data, "public"),
                   properties=t_str_map(data, "properties"),
                   aliases=[ImageAlias.from_wire(a) for a in t_list(data, "aliases")
                            if isinstance(a, dict)],
                   auto_update=t_bool(data, "auto_update"), cached=t_bool(data, "cached"),
                   profiles=t_str_list(data, "profiles"),
                   project=t_str(data, "project", "default"),
                   created_at=t_str(data, "created_at", ZERO_TIME),
                   uploaded_at=t_str(data, "uploaded_at", ZERO_TIME),
                   last_used_at=t_str(data, "last_used_at", ZERO_TIME),
                   expires_at=t_str(data, "expires_at", ZERO_TIME),
                   update_source=dict(source) if isinstance(source, dict) else None)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "fingerprint": self.fingerprint, "filename": self.filename, "size": self.size,
            "architecture": self.architecture, "type": self.type, "public": self.public,
            "properties": dict(self.properties),
            "aliases": [a.to_wire() for a in self.aliases],
            "auto_update": self.auto_update, "cached": self.cached,
            "profiles": list(self.profiles), "project": self.project,
            "created_at": self.created_at, "uploaded_at": self.uploaded_at,
            "last_used_at": self.last_used_at, "expires_at": self.expires_at,
        }
        if self.update_source is not None:
            out["update_source"] = dict(self.update_source)
        return out
