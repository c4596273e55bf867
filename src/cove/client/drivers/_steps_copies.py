"""The copy and rebuild steps, as ``drivers._steps``: data only, performed
by each driver's table. Part of ``_steps.Step``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CopyInstance", "CopyStep", "RebuildInstance"]


@dataclass(frozen=True)
class CopyInstance:
    """Copy ``source`` (an instance or ``INSTANCE/SNAPSHOT``) to a new
    instance ``name`` and wait, with this config, these devices and
    profiles (``lxc copy`` sends the source's; None: the server's choice)."""

    source: str
    name: str
    instance_only: bool = False
    profiles: tuple[str, ...] | None = None
    config: tuple[tuple[str, str], ...] = ()
    devices: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    description: str = ""

    def post_args(self) -> dict[str, Any]:
        """The keyword arguments of ``_wire_copies.copy_post``."""
        return {"instance_only": self.instance_only,
                "profiles": None if self.profiles is None else list(self.profiles),
                "config": dict(self.config),
                "devices": {k: dict(v) for k, v in self.devices},
                "description": self.description}


@dataclass(frozen=True)
class RebuildInstance:
    """Give the stopped instance a new root filesystem from ``image`` ("":
    an empty one) and wait."""

    name: str
    image: str = ""


CopyStep = CopyInstance | RebuildInstance
