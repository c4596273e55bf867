"""Images and aliases: import (an operation), look-up by alias or prefix, delete."""

from __future__ import annotations

import contextlib
from pathlib import Path

from cove.engine._core import EngineCore
from cove.engine.operations import Operation
from cove.model.errors import BadRequest, Conflict, NotFound
from cove.model.names import validate_alias_name
from cove.model.records import Alias, Image

__all__ = ["ImagesMixin"]


class ImagesMixin(EngineCore):
    def list_images(self) -> list[Image]:
        return self.store.list_images()

    def get_image(self, fingerprint: str) -> Image:
        """By full fingerprint or a unique prefix.

        Raises:
            NotFound: no image matches. BadRequest: the prefix is ambiguous.
        """
        fp = (fingerprint or "").strip().lower()
        if not fp or any(c not in "0123456789abcdef" for c in fp):
            raise NotFound(f"Image not found: {fingerprint}")
        found = self.store.find_images(fp)
        if not found:
            raise NotFound(f"Image not found: {fingerprint}")
        if len(found) > 1:
            raise BadRequest(f"More than one image matches {fingerprint!r}")
        return found[0]

    def resolve_image(self, ref: str) -> Image:
        """An alias, else a fingerprint or its prefix."""
        if not ref:
            raise BadRequest("No image given: name an alias or a fingerprint")
        with contextlib.suppress(NotFound):
            return self.get_image(self.store.get_alias(ref).target)
        try:
            return self.get_image(ref)
        except NotFound:
            raise NotFound(f"Image not found: {ref!r} is neither an alias nor a fingerprint") \
                from None

    def import_image(self, path: Path, *, filename: str = "", public: bool = False,
                     aliases: list[str] | None = None, meta_path: Path | None = None,
                     properties: dict[str, str] | None = None) -> Operation:
        """Import the tarball at ``path`` (split format: ``meta_path`` + rootfs ``path``).

        The files are consumed: removed when the operation ends. The result is
        the Image; the operation's metadata gets ``fingerprint`` and ``size``.
        """
        names = [validate_alias_name(a) for a in aliases or []]
        for a in names:
            with contextlib.suppress(NotFound):
                self.store.get_alias(a)
                raise Conflict(f"Alias already exists: {a}")

        def work(op: Operation) -> Image:
            try:
                def progress(pct: int) -> None:
                    op.progress("Unpacking image", pct)
                if meta_path is not None:
                    got = self.images.import_split(meta_path, path)
                else:
                    got = self.images.import_file(path, filename=filename, progress=progress)
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
                self.store.add_image(img)
            except Conflict:
                raise
            except BaseException:
                self.images.delete(got.fingerprint)
                raise
            for a in names:
                self.store.add_alias(Alias(a, img.fingerprint))
            img = self.get_image(img.fingerprint)
            op.update(fingerprint=img.fingerprint, size=img.size)
            self.events.lifecycle("image-created", f"/1.0/images/{img.fingerprint}")
            return img

        return self.operations.run(work, description="Importing image",
                                   resources={"images": []})

    def update_image(self, fingerprint: str, *, properties: dict[str, str] | None = None,
                     public: bool | None = None) -> None:
        img = self.get_image(fingerprint)
        if properties is not None:
            if not isinstance(properties, dict):
                raise BadRequest("properties must be an object")
            img.properties = {str(k): str(v) for k, v in properties.items()}
        if public is not None:
            img.public = bool(public)
        self.store.update_image(img)

    def delete_image(self, fingerprint: str) -> Operation:
        img = self.get_image(fingerprint)
        users = self.store.instances_using_image(img.fingerprint)
        if users:
            raise BadRequest(f"Image is in use by instances: {', '.join(users)}")

        def work(op: Operation) -> None:
            self.store.delete_image(img.fingerprint)
            self.images.delete(img.fingerprint)
            self.events.lifecycle("image-deleted", f"/1.0/images/{img.fingerprint}")

        return self.operations.run(work, description="Deleting image",
                                   resources={"images": [f"/1.0/images/{img.fingerprint}"]},
                                   lock=f"image:{img.fingerprint}")

    # -- aliases -----------------------------------------------------------------
    def list_aliases(self) -> list[Alias]:
        return self.store.list_aliases()

    def get_alias(self, name: str) -> Alias:
        return self.store.get_alias(name)

    def add_alias(self, name: str, target: str, description: str = "") -> None:
        validate_alias_name(name)
        img = self.get_image(target)
        self.store.add_alias(Alias(name, img.fingerprint, description or ""))

    def update_alias(self, name: str, target: str, description: str = "") -> None:
        img = self.get_image(target)
        self.store.update_alias(Alias(name, img.fingerprint, description or ""))

    def rename_alias(self, name: str, new_name: str) -> None:
        validate_alias_name(new_name)
        self.store.rename_alias(name, new_name)

    def delete_alias(self, name: str) -> None:
        self.store.delete_alias(name)
