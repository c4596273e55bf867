"""The state of an instance as LXD reports it (``GET /1.0/instances/NAME/state``).

Moved out of ``_instances`` (which re-exports it) to keep that module under
the size limit. Standard library only, no ``typing`` at run time: the CLI
imports this.
"""

from __future__ import annotations

from cove.api._fields import Wire, t_dict, t_int, t_str

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Self

__all__ = ["InstanceState"]


class InstanceState(Wire):
    """``GET /1.0/instances/NAME/state`` (LXD ``InstanceState``).

    ``cpu``, ``memory``, ``disk`` and ``network`` are LXD's nested objects as
    plain JSON (``network`` is None while the instance is stopped). ``cove``
    is cove's own (absent from LXD and when empty): the app-stack state of
    an instance with ``cove.ready`` or ``cove.health``, ``{"ready": bool,
    "health": {"status", "failing_streak", "output", "checked_at"}}``.
    """

    __slots__ = (
        "cove",
        "cpu",
        "disk",
        "memory",
        "network",
        "pid",
        "processes",
        "status",
        "status_code",
    )

    def __init__(self, *, status: str = "", status_code: int = 0, pid: int = 0,
                 processes: int = 0, cpu: Mapping[str, Any] | None = None,
                 memory: Mapping[str, Any] | None = None, disk: Mapping[str, Any] | None = None,
                 network: Mapping[str, Any] | None = None,
                 cove: Mapping[str, Any] | None = None) -> None:
        self.status = status
        self.status_code = status_code
        self.pid = pid
        self.processes = processes
        self.cpu: dict[str, Any] = {"usage": 0} if cpu is None else dict(cpu)
        self.memory: dict[str, Any] = (
            {"usage": 0, "usage_peak": 0, "swap_usage": 0, "swap_usage_peak": 0}
            if memory is None else dict(memory))
        self.disk: dict[str, Any] = {} if disk is None else dict(disk)
        self.network = None if network is None else dict(network)
        self.cove: dict[str, Any] = {} if cove is None else dict(cove)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        network = data.get("network")
        return cls(status=t_str(data, "status"), status_code=t_int(data, "status_code"),
                   pid=t_int(data, "pid"), processes=t_int(data, "processes"),
                   cpu=t_dict(data, "cpu"), memory=t_dict(data, "memory"),
                   disk=t_dict(data, "disk"),
                   network=dict(network) if isinstance(network, dict) else None,
                   cove=t_dict(data, "cove"))

    def to_wire(self) -> dict[str, Any]:
        out = {"status": self.status, "status_code": self.status_code, "pid": self.pid,
                "processes": self.processes, "cpu": dict(self.cpu), "memory": dict(self.memory),
                "disk": dict(self.disk),
                "network": None if self.network is None else dict(self.network)}
        if self.cove:
            out["cove"] = dict(self.cove)
        return out
