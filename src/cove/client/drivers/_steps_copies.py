"""The copy and rebuild steps, as ``drivers._steps``: data only, performed
by each driver's table. Part of ``_steps.Step``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CopyInstance", "CopyStep", "RebuildInstance"]


@dataclass(frozen=True)
class CopyInstance:
    """Copy ``source`` (an instance or ``INSTANCE/SNAPSHOT``) to a new
    instance ``name`` and wait. ``profiles`` None: the source's; ``config``
    is laid over the source's."""

    source: str
    name: str
    instance_only: bool = False
    profiles: tuple[str, ...] | None = None
    config: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RebuildInstance:
    """Give the stopped instance a new root filesystem from ``image`` ("":
    an empty one) and wait."""

    name: str
    image: str = ""


CopyStep = CopyInstance | RebuildInstance
