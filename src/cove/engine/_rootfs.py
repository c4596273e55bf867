"""An instance's root filesystem: its image's layers under its own upper
layer, mounted with overlayfs while anyone uses it.

Design note: the mount is refcounted. A running instance holds one
reference for its whole run; file access to a stopped instance takes one
for the duration of the call. The first user mounts, the last unmounts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cove.engine._runs import Paths, RunTable
from cove.engine.ports import ImageSource
from cove.model.errors import InternalError
from cove.storage import overlay
from cove.store import Store

__all__ = ["Rootfs"]


class Rootfs:
    def __init__(self, paths: Paths, runs: RunTable, store: Store,
                 images: ImageSource) -> None:
        self._paths = paths
        self._runs = runs
        self._store = store
        self._images = images

    def mount(self, name: str) -> Path:
        """Mount (first user) or count one more user; returns the mount point.

        Raises:
            NotFound: no such instance.  InternalError: its image is gone.
        """
        with self._runs.mutex(name):
            d = self._paths.instance_dir(name)
            target = d / "rootfs"
            refs = self._runs.mount_refs.get(name, 0)
            if refs == 0 and not overlay.is_mounted(target):
                inst = self._store.get_instance(name)
                if inst.image:
                    lower = self._images.rootfs(inst.image)
                    if not lower.is_dir():
                        raise InternalError(f"Image {inst.image[:12]} of {name} is missing")
                else:  # imported from a backup: its upper layer is all of it
                    lower = d / "empty"
                    lower.mkdir(mode=0o755, exist_ok=True)
                overlay.mount_overlay([lower], d / "upper", d / "work", target)
            self._runs.mount_refs[name] = refs + 1
            return target

    def unmount(self, name: str) -> None:
        """One user fewer; the last one unmounts. Idempotent past zero."""
        with self._runs.mutex(name):
            refs = self._runs.mount_refs.get(name, 0) - 1
            if refs > 0:
                self._runs.mount_refs[name] = refs
                return
            self._runs.mount_refs.pop(name, None)
            overlay.umount(self._paths.instance_dir(name) / "rootfs")

    @contextmanager
    def held(self, name: str) -> Iterator[Path]:
        """The instance's root filesystem, mounted for the duration."""
        path = self.mount(name)
        try:
            yield path
        finally:
            self.unmount(name)
