"""``POST /1.0/images`` from an instance or a snapshot (LXD ``ImagesPost``
with ``source.type`` ``instance``, ``container`` or ``snapshot``).

Standard library only, no ``typing`` at run time: the CLI imports this.
"""

from __future__ import annotations

from cove.api._fields import (
    Wire,
    opt_bool,
    opt_object,
    opt_str,
    opt_str_map,
    require_object,
    t_bool,
    t_dict,
    t_list,
    t_str,
    t_str_map,
)
from cove.model.errors import BadRequest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Self

__all__ = ["PUBLISH_SOURCES", "ImagesPostPublish"]

PUBLISH_SOURCES = ("instance", "container", "virtual-machine", "snapshot")


class ImagesPostPublish(Wire):
    """A publish request. ``aliases`` are names (LXD sends ``{"name",
    "description"}`` objects; descriptions are kept as ``""``)."""

    __slots__ = ("aliases", "compression_algorithm", "filename", "name", "properties",
                 "public", "source_type")

    def __init__(self, *, source_type: str = "instance", name: str = "",
                 aliases: list[str] | None = None, properties: Mapping[str, str] | None = None,
                 public: bool = False, compression_algorithm: str = "",
                 filename: str = "") -> None:
        self.source_type = source_type
        self.name = name
        self.aliases = list(aliases or [])
        self.properties = dict(properties or {})
        self.public = public
        self.compression_algorithm = compression_algorithm
        self.filename = filename

    @staticmethod
    def is_publish(body: object) -> bool:
        """Whether a JSON ``POST /1.0/images`` body asks for a publish."""
        source = body.get("source") if isinstance(body, dict) else None
        return isinstance(source, dict) and source.get("type") in PUBLISH_SOURCES

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises:
            BadRequest: no source name, a bad source type, or a field of the
                wrong type (named).
        """
        body = require_object(body)
        source = opt_object(body, "source") or {}
        stype = opt_str(source, "type")
        if stype not in PUBLISH_SOURCES:
            raise BadRequest(f"Field 'source.type': {stype!r} is not one of "
                             f"{', '.join(PUBLISH_SOURCES)}")
        name = opt_str(source, "name")
        if not name:
            raise BadRequest("Field 'source.name' is required")
        raw = body.get("aliases") or []
        if not isinstance(raw, list):
            raise BadRequest("Field 'aliases' must be a list")
        aliases = []
        for i, a in enumerate(raw):
            alias = a.get("name") if isinstance(a, dict) else a
            if not isinstance(alias, str) or not alias:
                raise BadRequest(f"Field 'aliases[{i}].name' must be a non-empty string")
            aliases.append(alias)
        return cls(source_type=stype, name=name, aliases=aliases,
                   properties=opt_str_map(body, "properties") or {},
                   public=opt_bool(body, "public"),
                   compression_algorithm=opt_str(body, "compression_algorithm"),
                   filename=opt_str(body, "filename"))

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        source = t_dict(data, "source")
        return cls(source_type=t_str(source, "type"), name=t_str(source, "name"),
                   aliases=[str(a.get("name", "")) if isinstance(a, dict) else str(a)
                            for a in t_list(data, "aliases")],
                   properties=t_str_map(data, "properties"), public=t_bool(data, "public"),
                   compression_algorithm=t_str(data, "compression_algorithm"),
                   filename=t_str(data, "filename"))

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": {"type": self.source_type, "name": self.name},
            "aliases": [{"name": a, "description": ""} for a in self.aliases],
            "properties": dict(self.properties),
            "public": self.public,
        }
        if self.compression_algorithm:
            out["compression_algorithm"] = self.compression_algorithm
        if self.filename:
            out["filename"] = self.filename
        return out
