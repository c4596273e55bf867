"""The project objects of the LXD API.

Design note: as ``cove.api._instances`` (names from LXD's Go ``shared/api``:
``ProjectsPost``, ``ProjectPut``, ``ProjectPost``, ``Project``,
``ProjectState``; ``parse`` strict, ``from_wire`` tolerant, ``to_wire``
LXD's JSON).

Standard library only, no ``typing`` at run time: the CLI imports this.
"""

from __future__ import annotations

from cove.api._fields import (
    Wire,
    opt_str,
    opt_str_map,
    require_object,
    t_dict,
    t_str,
    t_str_list,
    t_str_map,
)
from cove.api._put import ConfigPut
from cove.model.errors import BadRequest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Self

__all__ = ["Project", "ProjectPost", "ProjectPut", "ProjectState", "ProjectsPost"]


class ProjectsPost(Wire):
    """``POST /1.0/projects``: a new project (LXD ``ProjectsPost``)."""

    __slots__ = ("config", "description", "name")

    def __init__(self, *, name: str = "", description: str = "",
                 config: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.description = description
        self.config: dict[str, str] = dict(config or {})

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises: BadRequest (no name, or a field of the wrong type)."""
        body = require_object(body)
        name = opt_str(body, "name")
        if not name:
            raise BadRequest("No name provided")
        return cls(name=name, description=opt_str(body, "description"),
                   config=opt_str_map(body, "config"))

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=t_str(data, "name"), description=t_str(data, "description"),
                   config=t_str_map(data, "config"))

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "config": dict(self.config)}


class ProjectPut(ConfigPut):
    """``PUT``/``PATCH /1.0/projects/NAME`` (LXD ``ProjectPut``); None: absent."""

    __slots__ = ()


class ProjectPost(Wire):
    """``POST /1.0/projects/NAME``: rename (LXD ``ProjectPost``)."""

    __slots__ = ("name",)

    def __init__(self, *, name: str = "") -> None:
        self.name = name

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises: BadRequest (no name)."""
        body = require_object(body)
        name = opt_str(body, "name")
        if not name:
            raise BadRequest("No name provided")
        return cls(name=name)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=t_str(data, "name"))

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name}


class Project(Wire):
    """A project as ``GET /1.0/projects/NAME`` reports it (LXD ``Project``)."""

    __slots__ = ("config", "description", "name", "used_by")

    def __init__(self, *, name: str = "", description: str = "",
                 config: Mapping[str, str] | None = None,
                 used_by: list[str] | None = None) -> None:
        self.name = name
        self.description = description
        self.config: dict[str, str] = dict(config or {})
        self.used_by: list[str] = list(used_by or [])

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=t_str(data, "name"), description=t_str(data, "description"),
                   config=t_str_map(data, "config"), used_by=t_str_list(data, "used_by"))

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "config": dict(self.config),
                "used_by": list(self.used_by)}


class ProjectState(Wire):
    """``GET /1.0/projects/NAME/state`` (LXD ``ProjectState``): per resource,
    its ``limit`` (-1: none) and ``usage``."""

    __slots__ = ("resources",)

    def __init__(self, *, resources: Mapping[str, Mapping[str, int]] | None = None) -> None:
        self.resources = {k: {"limit": int(v.get("limit", -1)), "usage": int(v.get("usage", 0))}
                          for k, v in (resources or {}).items()}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        res = t_dict(data, "resources")
        return cls(resources={str(k): v for k, v in res.items() if isinstance(v, dict)})

    def to_wire(self) -> dict[str, Any]:
        return {"resources": {k: dict(v) for k, v in self.resources.items()}}
