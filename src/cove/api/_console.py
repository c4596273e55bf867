"""The console objects of the LXD API (``console`` extension): what a client
sends to attach to an instance's console (LXD ``InstanceConsolePost``) and
the control messages on its ``control`` websocket.

Standard library only, no ``typing`` at run time: the CLI imports this.
"""

from __future__ import annotations

from cove.api._fields import Wire, opt_int, opt_str, require_object, t_int, t_str
from cove.model.errors import BadRequest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Self

__all__ = ["InstanceConsolePost"]


class InstanceConsolePost(Wire):
    """``POST /1.0/instances/NAME/console``: ``type`` is ``console`` (the
    default) or ``vga`` (virtual machines only, so refused by cove);
    ``width``/``height`` 0 mean "not given" (the console keeps its size)."""

    __slots__ = ("height", "type", "width")

    def __init__(self, *, type: str = "console", width: int = 0, height: int = 0) -> None:
        self.type = type
        self.width = width
        self.height = height

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises:
            BadRequest: a field of the wrong type, an unknown console type,
                or ``vga`` (a container has no VGA console).
        """
        body = require_object(body)
        kind = opt_str(body, "type") or "console"
        if kind == "vga":
            raise BadRequest("VGA console is only supported by virtual machines")
        if kind != "console":
            raise BadRequest(f"Unknown console type {kind!r}")
        width, height = opt_int(body, "width", 0), opt_int(body, "height", 0)
        if width < 0 or height < 0:
            raise BadRequest("Fields 'width' and 'height' must not be negative")
        return cls(type=kind, width=width, height=height)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(type=t_str(data, "type") or "console", width=t_int(data, "width"),
                   height=t_int(data, "height"))

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "width": self.width, "height": self.height}
