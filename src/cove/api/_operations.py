"""The operation, event and error objects of the LXD API.

Design note: as ``cove.api._instances`` (names from LXD's Go ``shared/api``:
``Operation``, ``Event``; the error envelope is LXD's ``Response`` of type
``error``; ``from_wire`` tolerant, ``to_wire`` LXD's JSON). The JSON field
``class`` is the attribute ``class_``.

Standard library only, no ``typing`` at run time: the CLI imports this.
"""

from __future__ import annotations

from cove.api._fields import Wire, t_bool, t_dict, t_int, t_str

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Self

__all__ = ["ErrorResponse", "Event", "Operation"]

_ZERO_TIME = "0001-01-01T00:00:00Z"


class Operation(Wire):
    """A background action as ``GET /1.0/operations/ID`` reports it (LXD ``Operation``).

    ``class_`` is ``task``, ``websocket`` or ``token``; ``status`` one of
    LXD's (``Running``, ``Success``, ``Failure``, ``Cancelled``...);
    ``metadata`` what the action reports (progress, exec fds, return code);
    ``err`` the failure's message.
    """

    __slots__ = (
        "class_",
        "created_at",
        "description",
        "err",
        "id",
        "location",
        "may_cancel",
        "metadata",
        "resources",
        "status",
        "status_code",
        "updated_at",
    )

    def __init__(self, *, id: str = "", class_: str = "task", description: str = "",
                 created_at: str = _ZERO_TIME, updated_at: str = _ZERO_TIME,
                 status: str = "", status_code: int = 0,
                 resources: Mapping[str, list[str]] | None = None,
                 metadata: Mapping[str, Any] | None = None, may_cancel: bool = False,
                 err: str = "", location: str = "none") -> None:
        self.id = id
        self.class_ = class_
        self.description = description
        self.created_at = created_at
        self.updated_at = updated_at
        self.status = status
        self.status_code = status_code
        self.resources = {k: list(v) for k, v in (resources or {}).items()}
        self.metadata = None if metadata is None else dict(metadata)
        self.may_cancel = may_cancel
        self.err = err
        self.location = location

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        metadata = data.get("metadata")
        return cls(id=t_str(data, "id"), class_=t_str(data, "class", "task"),
                   description=t_str(data, "description"),
                   created_at=t_str(data, "created_at", _ZERO_TIME),
                   updated_at=t_str(data, "updated_at", _ZERO_TIME),
                   status=t_str(data, "status"), status_code=t_int(data, "status_code"),
                   resources={str(k): [str(x) for x in v]
                              for k, v in t_dict(data, "resources").items()
                              if isinstance(v, list)},
                   metadata=dict(metadata) if isinstance(metadata, dict) else None,
                   may_cancel=t_bool(data, "may_cancel"), err=t_str(data, "err"),
                   location=t_str(data, "location", "none"))

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "class": self.class_, "description": self.description,
                "created_at": self.created_at, "updated_at": self.updated_at,
                "status": self.status, "status_code": self.status_code,
                "resources": {k: list(v) for k, v in self.resources.items()},
                "metadata": None if self.metadata is None else dict(self.metadata),
                "may_cancel": self.may_cancel, "err": self.err, "location": self.location}


class Event(Wire):
    """One message of ``GET /1.0/events`` (LXD ``Event``): ``type`` is
    ``lifecycle``, ``operation`` or ``logging``."""

    __slots__ = ("location", "metadata", "project", "timestamp", "type")

    def __init__(self, *, type: str = "", timestamp: str = _ZERO_TIME,
                 metadata: Mapping[str, Any] | None = None, location: str = "none",
                 project: str = "default") -> None:
        self.type = type
        self.timestamp = timestamp
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.location = location
        self.project = project

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(type=t_str(data, "type"), timestamp=t_str(data, "timestamp", _ZERO_TIME),
                   metadata=t_dict(data, "metadata"), location=t_str(data, "location", "none"),
                   project=t_str(data, "project", "default"))

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "timestamp": self.timestamp, "metadata": dict(self.metadata),
                "location": self.location, "project": self.project}


class ErrorResponse(Wire):
    """LXD's error envelope: ``error`` the message, ``error_code`` the HTTP status."""

    __slots__ = ("error", "error_code")

    def __init__(self, *, error: str = "", error_code: int = 500) -> None:
        self.error = error
        self.error_code = error_code

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(error=t_str(data, "error"), error_code=t_int(data, "error_code", 500))

    def to_wire(self) -> dict[str, Any]:
        return {"type": "error", "error": self.error, "error_code": self.error_code,
                "status": "", "status_code": 0, "operation": "", "metadata": None}
