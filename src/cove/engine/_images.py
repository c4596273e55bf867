"""Images and their aliases: import (an operation), look-up by alias or
fingerprint prefix, update, delete.

Design note: the service owns the image rows and the unpacked layers
(``storage.images.ImageStore``, called ``layers`` here); the instances
service resolves the image of a new instance through ``resolve`` and marks
it used (``last_used_at``) through ``mark_used``.

An image that instances use can be deleted, as in LXD: its row goes at once
(it leaves the list, its aliases go), but its layers stay as long as an
instance is made from them (they are that instance's overlay lower layer).
The instances service calls ``collect`` when it deletes an instance, which
drops layers no row and no instance refers to; startup's ``sweep`` does the
same for a crash in between. Importing the same image again adopts the
kept layers (the same bytes make the same tree) instead of a conflict.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from cove.engine.events import EventBus
from cove.engine.operations import Operation, Operations
from cove.model.errors import BadRequest, Conflict, NotFound
from cove.model.names import validate_alias_name
from cove.model.records import Alias, Image
from cove.storage.images import ImageStore
from cove.store import Store

__all__ = ["Images"]

log = logging.getLogger("cove.engine")


class Images:
    """The images of one root. Thread-safe (the store and the layer store are)."""

    def __init__(self, store: Store, layers: ImageStore, operations: Operations,
                 events: EventBus, clock: Callable[[], float]) -> None:
        self._store = store
        self.layers = layers
        self._operations = operations
        self._events = events
        self._now = clock

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
                # reuse: layers kept for instances of a deleted image are adopted
                if meta_path is not None:
                    got = self.layers.import_split(meta_path, path, reuse=True)
                else:
                    got = self.layers.import_file(path, filename=filename, progress=progress,
                                                  reuse=True)
            finally:
                Path(path).unlink(missing_ok=True)
                if meta_path is not None:
                    Path(meta_path).unlink(missing_ok=True)
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
                self.collect(got.fingerprint, row_gone=True)
                raise
            for a in names:
                self._store.add_alias(Alias(a, img.fingerprint))
            img = self.get(img.fingerprint)
            op.update(fingerprint=img.fingerprint, size=img.size)
            self._events.lifecycle("image-created", f"/1.0/images/{img.fingerprint}")
            return img

        return self._operations.run(work, description="Importing image",
                                    resources={"images": []})

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
        """Remove an image (an operation): its row and aliases at once, its
        layers once no instance is made from them. Not idempotent.

        Raises:
            NotFound: no such image.
        """
        img = self.get(fingerprint)

        def work(op: Operation) -> None:
            if self.users(img.fingerprint) and self.layers.exists(img.fingerprint):
                # what the instances' next start needs of the row, kept first
                self.layers.save_run_config(img.fingerprint, img.cmd, img.env)
            self._store.delete_image(img.fingerprint)
            users = self.users(img.fingerprint)
            if users:
                log.info("image %s deleted; its layers stay for %d instance(s)",
                         img.fingerprint[:12], len(users))
            self.collect(img.fingerprint)
            self._events.lifecycle("image-deleted", f"/1.0/images/{img.fingerprint}")

        return self._operations.run(work, description="Deleting image",
                                    resources={"images": [f"/1.0/images/{img.fingerprint}"]},
                                    lock=f"image:{img.fingerprint}")

    def run_config(self, fingerprint: str) -> tuple[list[str], dict[str, str]]:
        """The image's command and environment (OCI images have them): from
        its row, or from beside its layers once the row is deleted; empty
        when neither is there. Never raises."""
        img = self.find(fingerprint)
        if img is not None:
            return list(img.cmd), dict(img.env)
        kept = self.layers.run_config(fingerprint) if fingerprint else None
        return kept if kept is not None else ([], {})

    def mark_used(self, fingerprint: str) -> None:
        """Set ``last_used_at`` (an instance was made from it), as LXD. Never raises
        for an image that went meanwhile."""
        img = self.find(fingerprint)
        if img is not None:
            img.last_used_at = self._now()
            self._store.update_image(img)

    def collect(self, fingerprint: str, *, row_gone: bool = False) -> bool:
        """Remove the layers of ``fingerprint`` if no image row and no
        instance refers to them (``row_gone``: the caller knows the row is
        not there to stay). Idempotent; True if it removed them.
        """
        if not fingerprint or not self.layers.exists(fingerprint):
            return False
        if (not row_gone and self.find(fingerprint) is not None) or self.users(fingerprint):
            return False
        try:
            self.layers.delete(fingerprint)
        except NotFound:
            return False
        log.info("removed the layers of image %s (no image, no instance)", fingerprint[:12])
        return True

    def sweep(self) -> None:
        """At startup: remove unpack leftovers, and layers that neither an
        image row nor an instance refers to (unpacked but never recorded, or
        kept for instances whose last one went while coved was down)."""
        self.layers.cleanup_temp()
        recorded = {img.fingerprint for img in self._store.list_images()}
        for fp in self.layers.fingerprints():
            if fp not in recorded and not self.users(fp):
                log.info("removing unreferenced image layers %s", fp[:12])
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
