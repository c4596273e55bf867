"""The one ``PUT``/``PATCH`` body of config and description that LXD's
networks, projects and storage volumes share (``NetworkPut``,
``ProjectPut``, ``StorageVolumePut`` are this shape). Standard library only.
"""

from __future__ import annotations

from cove.api._fields import Wire, opt_str, opt_str_map, require_object, t_str, t_str_map

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Self

__all__ = ["ConfigPut"]


class ConfigPut(Wire):
    """``config`` and ``description``; None: absent (so PATCH leaves it)."""

    __slots__ = ("config", "description")

    def __init__(self, *, config: Mapping[str, str] | None = None,
                 description: str | None = None) -> None:
        self.config = None if config is None else dict(config)
        self.description = description

    @classmethod
    def parse(cls, body: object) -> Self:
        """A field present (even null) is set (a null ``config`` is empty).

        Raises:
            BadRequest: a field of the wrong type.
        """
        body = require_object(body)
        return cls(config=(opt_str_map(body, "config") or {}) if "config" in body else None,
                   description=opt_str(body, "description") if "description" in body else None)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(config=t_str_map(data, "config") if "config" in data else None,
                   description=t_str(data, "description") if "description" in data else None)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.config is not None:
            out["config"] = dict(self.config)
        if self.description is not None:
            out["description"] = self.description
        return out
