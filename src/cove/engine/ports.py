"""The small interfaces one engine service holds another by.

Design note: a service is handed only what it needs, typed as one of these
``Protocol``s, so it cannot reach past them and a unit test can fake them
(no ``cast``). The composition root (``Engine``) passes the real services,
which satisfy them structurally.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol

from cove.engine._net_base import NetPlan
from cove.model.records import Image, Instance

__all__ = ["ImageSource", "NetworkPort", "ProfileSource"]


class ImageSource(Protocol):
    """What the instances service needs of images."""

    def resolve(self, ref: str) -> Image:
        """An alias, a fingerprint or a unique prefix. Raises BadRequest, NotFound."""
        ...

    def find(self, fingerprint: str) -> Image | None:
        """Exactly this fingerprint, or None."""
        ...

    def rootfs(self, fingerprint: str) -> Path:
        """The image's unpacked root filesystem (a lower layer)."""
        ...

    def run_config(self, fingerprint: str) -> tuple[list[str], dict[str, str]]:
        """The image's command and environment, kept after the image is deleted."""
        ...

    def mark_used(self, fingerprint: str) -> None:
        """An instance was made from it: set its ``last_used_at``. Never raises."""
        ...

    def collect(self, fingerprint: str) -> bool:
        """Drop its layers if no image and no instance refers to them. Idempotent."""
        ...


class ProfileSource(Protocol):
    """What the instances service needs of profiles."""

    def check(self, profiles: list[str]) -> None:
        """Raises NotFound for a profile that does not exist."""
        ...

    def expanded_devices(self, inst: Instance) -> dict[str, dict[str, str]]:
        """Profile devices overlaid by the instance's own."""
        ...


class NetworkPort(Protocol):
    """The networks side of an instance's life (``InstanceNetworks``)."""

    def check_devices(self, name: str, devices: dict[str, dict[str, str]],
                      profiles: list[str]) -> None:
        """Raises BadRequest or Conflict for devices the host cannot give."""
        ...

    def prepare(self, inst: Instance, undo: ExitStack) -> NetPlan:
        """Lease and write files before the container exists (undo registered)."""
        ...

    def attach(self, name: str, pid: int, plan: NetPlan, undo: ExitStack) -> None:
        """Attach the planned NICs inside ``pid``'s namespace (undo registered)."""
        ...

    def release(self, name: str) -> None:
        """Withdraw all the run held. Idempotent."""
        ...

    def apply_devices(self, inst: Instance, new_devices: dict[str, dict[str, str]]) -> None:
        """Apply changed proxy devices live. Raises BadRequest, Conflict."""
        ...

    def state(self, inst: Instance) -> dict[str, Any]:
        """LXD's ``state.network`` of a running instance."""
        ...
