"""The publish and image-export steps, as ``drivers._steps``: data only,
performed by each driver's table. Part of ``_steps.Step``."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ExportImage", "PublishImage", "PublishStep"]


@dataclass(frozen=True)
class PublishImage:
    """Publish ``source`` (``NAME`` or ``NAME/SNAP``) and wait; the result
    is the new image's fingerprint."""

    source: str
    aliases: tuple[str, ...] = ()
    properties: dict[str, str] = field(default_factory=dict)
    public: bool = False


@dataclass(frozen=True)
class ExportImage:
    """Write the image's export (full fingerprint) into the existing local
    ``directory``; the result is the list of files written (one, or
    ``meta-FP...`` and ``FP...`` for a split image)."""

    fingerprint: str
    directory: str


PublishStep = PublishImage | ExportImage
