"""``POST /1.0/instances/NAME/rebuild`` (LXD ``InstanceRebuildPost``,
extension ``instances_rebuild``): a new root filesystem from an image, or
an empty one (``source.type: none``).

A copy has no object of its own: it is an ``InstancesPost`` whose source is
``{"type": "copy", "source": "c1" | "c1/snap0", "instance_only": ...}``.

Standard library only, no ``typing`` at run time: the CLI imports this.
"""

from __future__ import annotations

from cove.api._fields import Wire, require_object
from cove.api._instances import InstanceSource
from cove.model.errors import BadRequest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Self

__all__ = ["InstanceRebuildPost"]

_REBUILD_TYPES = ("image", "none")


class InstanceRebuildPost(Wire):
    """The body of a rebuild: its ``source`` (type ``image`` or ``none``)."""

    __slots__ = ("source",)

    def __init__(self, *, source: InstanceSource | None = None) -> None:
        self.source = source if source is not None else InstanceSource(type="none")

    @classmethod
    def parse(cls, body: object) -> Self:
        """Raises:
            BadRequest: no ``source``, a type other than ``image`` or
                ``none``, an image source naming no image, or a field of the
                wrong type.
        """
        body = require_object(body)
        if "source" not in body:
            raise BadRequest("Field 'source' is required")
        source = InstanceSource.parse(body["source"])
        if not source.type and (source.alias or source.fingerprint):
            source.type = "image"
        if source.type not in _REBUILD_TYPES:
            raise BadRequest(f"Field 'source.type': {source.type!r} is not one of "
                             f"{', '.join(_REBUILD_TYPES)}")
        if source.type == "image":
            source.image_ref()  # names one local image
        return cls(source=source)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        source = data.get("source")
        return cls(source=InstanceSource.from_wire(source if isinstance(source, dict) else {}))

    def to_wire(self) -> dict[str, Any]:
        return {"source": self.source.to_wire()}
