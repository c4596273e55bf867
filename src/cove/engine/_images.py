"""Images and their aliases: import (an operation), look-up by alias or
fingerprint prefix, update, delete.

Design note: the service owns the image rows and the unpacked layers
(``storage.images.ImageStore``, called ``layers`` here). An image in use by
an instance cannot be deleted; the instances service resolves the image
of a new instance through ``resolve``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from cove.engine._failpoints import failpoint
from cove.engine.events import EventBus
from cove.engine.operations import Operation, Operations
from cove.model.errors import BadRequest, Conflict, NotFound
from cove.model.names import validate_alias_name
from cove.model.records import Alias, Image
from cove.model.trust import MAX_UNPACK_KEY
from cove.storage.images import Budget, ImageStore
from cove.store import Store

__all__ = ["Images"]

log = logging.getLogger("cove.engine")


class Images:
    """The images of one root. Thread-safe (the store and the layer store are)."""

    def __init__(self, store: Store, layers: ImageStore, operations: Operations,
                 events: EventBus, clock: Callable[[], float],
                 max_unpack: Callable[[], int | None] = lambda: None) -> None:
        self._store = store
        self.layers = layers
        self._operations = operations
        self._events = events
        self._now = clock
        self._max_unpack = max_unpack

    def budget(self, op: Operation) -> Budget:
        """What an archive unpacked for ``op`` may write: the server setting
        ``cove.images.max_size`` when set, else 90% of the free space of the
        filesystem under the layers now; stops when ``op`` is cancelled."""
        limit = self._max_unpack()
        if limit is None:
            vfs = os.statvfs(self.layers.root)
            limit = vfs.f_bavail * vfs.f_frsize * 9 // 10
        return Budget(limit, lambda: op.cancelled, MAX_UNPACK_KEY)

    # -- reads --------------------------------------------------------------------------
    def all(self) -> list[Image]:
        """Every image, with its aliases."""
        return self._store.list_images()

    def get(self, fingerprint: str) -> Image:
        """By full fingerprint or a unique prefix.

        Raises:
            NotFound: no image matches. BadRequest: the prefix is ambiguous.
        """
        fp = (fingerprint or "").strip().lower()
        if not fp or any(c not in "0123456789abcdef" for c in fp):
            raise NotFound(f"Image not found: {fingerprint}")
        found = self._store.find_images(fp)
        if not found:
            raise NotFound(f"Image not found: {fingerprint}")
        if len(found) > 1:
            raise BadRequest(f"More than one image matches {fingerprint!r}")
        return found[0]

    def find(self, fingerprint: str) -> Image | None:
        """The image with exactly this fingerprint, or None (never raises)."""
        found = self._store.find_images(fingerprint) if fingerprint else []
        return found[0] if found else None

    def resolve(self, ref: str) -> Image:
        """An alias, else a fingerprint or its prefix.

        Raises:
            BadRequest: ``ref`` is empty or an ambiguous prefix.  NotFound: no match.
        """
        if not ref:
            raise BadRequest("No image given: name an alias or a fingerprint")
        with contextlib.suppress(NotFound):
            return self.get(self._store.get_alias(ref).target)
        try:
            return self.get(ref)
        except NotFound:
            raise NotFound(f"Image not found: {ref!r} is neither an alias nor a fingerprint") \
                from None

    def rootfs(self, fingerprint: str) -> Path:
        """The unpacked root filesystem of an image (a lower layer)."""
        return self.layers.rootfs(fingerprint)

    def users(self, fingerprint: str) -> list[str]:
        """Names of the instances made from the image."""
        return self._store.instances_using_image(fingerprint)

    # -- changes ------------------------------------------------------------------------
    def import_file(self, path: Path, *, filename: str = "", public: bool = False,
                    aliases: list[str] | None = None, meta_path: Path | None = None,
                    properties: dict[str, str] | None = None) -> Operation:
        """Import the tarball at ``path`` (split format: ``meta_path`` + rootfs ``path``).

        The files are consumed: removed when the operation ends. The result is
        the Image; the operation's metadata gets ``fingerprint`` and ``size``.
        Not idempotent: importing an image that exists fails the operation
        with Conflict.

        The operation can be cancelled (everything it wrote is removed), and
        an archive that unpacks past ``budget`` fails it with a 400.

        Raises:
            BadRequest: a bad alias name.  Conflict: an alias exists already.
        """
        names = [validate_alias_name(a) for a in aliases or []]
        for a in names:
            with contextlib.suppress(NotFound):
                self._store.get_alias(a)
                raise Conflict(f"Alias already exists: {a}")

        def work(op: Operation) -> Image:
            try:
                def progress(pct: int) -> None:
                    op.progress("Unpacking image", pct)
                budget = self.budget(op)
                if meta_path is not None:
                    got = self.layers.import_split(meta_path, path, progress=progress,
                                                   budget=budget)
                else:
                    got = self.layers.import_file(path, filename=filename, progress=progress,
                                                  budget=budget)
            finally:
                Path(path).unlink(missing_ok=True)
                if meta_path is not None:
                    Path(meta_path).unlink(missing_ok=True)
            failpoint("image-import.after-layers")  # unrecorded layers: the sweep's
            now = self._now()
            props = dict(got.properties)
            props.update(properties or {})
            img = Image(fingerprint=got.fingerprint, size=got.size,
                        architecture=got.architecture, properties=props, filename=filename,
                        public=public, created_at=got.created_at or now, uploaded_at=now,
                        cmd=list(got.cmd), env=dict(got.env))
            try:
                self._store.add_image(img)
            except Conflict:
                raise
            except BaseException:
                self.layers.delete(got.fingerprint)
                raise
            for a in names:
                self._store.add_alias(Alias(a, img.fingerprint))
            img = self.get(img.fingerprint)
            op.update(fingerprint=img.fingerprint, size=img.size)
            self._events.lifecycle("image-created", f"/1.0/images/{img.fingerprint}")
            return img

        return self._operations.run(work, description="Importing image",
                                    resources={"images": []}, may_cancel=True)

    def update(self, fingerprint: str, *, properties: dict[str, str] | None = None,
               public: bool | None = None, patch: bool = True) -> None:
        """Merge (``patch``: the given properties over the current ones) or
        replace (PUT: absent properties become none) an image's writable
        fields. Idempotent.

        Raises:
            NotFound: no such image.  BadRequest: properties is not an object.
        """
        img = self.get(fingerprint)
        if properties is not None and not isinstance(properties, dict):
            raise BadRequest("properties must be an object")
        if patch and properties is not None:
            properties = {**img.properties, **properties}
        if not patch and properties is None:
            properties = {}
        if properties is not None:
            img.properties = {str(k): str(v) for k, v in properties.items()}
        if public is not None:
            img.public = bool(public)
        self._store.update_image(img)

    def delete(self, fingerprint: str) -> Operation:
        """Remove an image and its layers (an operation).

        Raises:
            NotFound: no such image.  BadRequest: an instance uses it.
        """
        img = self.get(fingerprint)
        users = self.users(img.fingerprint)
        if users:
            raise BadRequest(f"Image is in use by instances: {', '.join(users)}")

        def work(op: Operation) -> None:
            self._store.delete_image(img.fingerprint)
            self.layers.delete(img.fingerprint)
            self._events.lifecycle("image-deleted", f"/1.0/images/{img.fingerprint}")

        return self._operations.run(work, description="Deleting image",
                                    resources={"images": [f"/1.0/images/{img.fingerprint}"]},
                                    lock=f"image:{img.fingerprint}")

    def sweep(self) -> None:
        """At startup: remove unpack leftovers and layers no row records."""
        self.layers.cleanup_temp()
        recorded = {img.fingerprint for img in self._store.list_images()}
        for fp in self.layers.fingerprints():
            if fp not in recorded:  # unpacked, but coved died before recording it
                log.info("removing unrecorded image %s", fp[:12])
                self.layers.delete(fp)

    # -- aliases ------------------------------------------------------------------------
    def list_aliases(self) -> list[Alias]:
        """Every alias. Never raises."""
        return self._store.list_aliases()

    def get_alias(self, name: str) -> Alias:
        """Raises: NotFound."""
        return self._store.get_alias(name)

    def add_alias(self, name: str, target: str, description: str = "") -> None:
        """Raises: BadRequest (name), NotFound (target), Conflict (exists)."""
        validate_alias_name(name)
        img = self.get(target)
        self._store.add_alias(Alias(name, img.fingerprint, description or ""))

    def update_alias(self, name: str, target: str, description: str = "") -> None:
        """Point ``name`` at ``target``. Idempotent. Raises: NotFound."""
        img = self.get(target)
        self._store.update_alias(Alias(name, img.fingerprint, description or ""))

    def rename_alias(self, name: str, new_name: str) -> None:
        """Raises: BadRequest (name), NotFound, Conflict (new name taken)."""
        validate_alias_name(new_name)
        self._store.rename_alias(name, new_name)

    def delete_alias(self, name: str) -> None:
        """Raises: NotFound."""
        self._store.delete_alias(name)
