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

Projects (``features.images``): every call takes ``project``; a project
without its own images uses the default project's (``image_project``
answers whose). An image is one row and one set of layers whatever holds
it; ``store.projects`` records which projects do; the row goes when the
last one lets go (the layers when, besides, no instance is made from them).
Aliases of a project are stored under ``PROJECT/NAME``
(``cove.model.projects.alias_key``) and shown by their name.
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
from cove.model.errors import BadRequest, Conflict, CoveError, NotFound
from cove.model.names import validate_alias_name
from cove.model.projects import DEFAULT, alias_key, split_alias
from cove.model.records import Alias, Image
from cove.model.trust import MAX_UNPACK_KEY
from cove.storage.images import Budget, ImageStore
from cove.storage.oci_keep import kept_run
from cove.storage.oci_layout import instance_keys
from cove.store import Store

__all__ = ["Images"]

log = logging.getLogger("cove.engine")


class Images:
    """The images of one root. Thread-safe (the store and the layer store are)."""

    def __init__(self, store: Store, layers: ImageStore, operations: Operations,
                 events: EventBus, clock: Callable[[], float],
                 max_unpack: Callable[[], int | None] = lambda: None,
                 image_project: Callable[[str], str] | None = None) -> None:
        self._store = store
        self.layers = layers
        self._operations = operations
        self._events = events
        self._now = clock
        self._max_unpack = max_unpack
        self._image_project = image_project
        self._gone: list[Callable[[str], None]] = []

    def on_layers_gone(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(fingerprint)`` after ``collect`` removed an image's
        layers (in the remover's thread; it must not raise or block long)."""
        self._gone.append(listener)

    def budget(self, op: Operation) -> Budget:
        """What an archive unpacked for ``op`` may write: the server setting
        ``cove.images.max_size`` when set, else 90% of the free space of the
        filesystem under the layers now; stops when ``op`` is cancelled."""
        limit = self._max_unpack()
        if limit is None:
            vfs = os.statvfs(self.layers.root)
            limit = vfs.f_bavail * vfs.f_frsize * 9 // 10
        return Budget(limit, lambda: op.cancelled, MAX_UNPACK_KEY)

    # -- projects -----------------------------------------------------------------------
    def owner(self, project: str) -> str:
        """Whose images ``project`` uses. Raises: NotFound (no such project)."""
        return self._owner(project)

    def _owner(self, project: str) -> str:
        """Whose images ``project`` uses. Raises: NotFound (no such project)."""
        if project == DEFAULT or self._image_project is None:
            return DEFAULT
        return self._image_project(project)

    def _held(self, img: Image, owner: str) -> bool:
        return owner in self._store.projects.image_projects(img.fingerprint)

    def _shown(self, img: Image, owner: str) -> Image:
        """``img`` with the aliases ``owner`` has for it, by their names, and
        where it was pulled from (``store.image_sources``)."""
        img.aliases = [Alias(split_alias(a.name)[1], a.target, a.description)
                       for a in img.aliases if split_alias(a.name)[0] == owner]
        src = self._store.image_sources.get(img.fingerprint)
        if src is not None:
            img.cached, img.auto_update = src.cached, src.auto_update
            img.update_source = src.update_source()
        return img

    # -- reads --------------------------------------------------------------------------
    def all(self, *, project: str = DEFAULT) -> list[Image]:
        """Every image of ``project`` (or of whose it uses), with its aliases."""
        owner = self._owner(project)
        return [self._shown(i, owner) for i in self._store.list_images()
                if self._held(i, owner)]

    def get(self, fingerprint: str, *, project: str = DEFAULT) -> Image:
        """By full fingerprint or a unique prefix, among ``project``'s images.

        Raises:
            NotFound: no image matches. BadRequest: the prefix is ambiguous.
        """
        owner = self._owner(project)
        fp = (fingerprint or "").strip().lower()
        if not fp or any(c not in "0123456789abcdef" for c in fp):
            raise NotFound(f"Image not found: {fingerprint}")
        found = [i for i in self._store.find_images(fp) if self._held(i, owner)]
        if not found:
            raise NotFound(f"Image not found: {fingerprint}")
        if len(found) > 1:
            raise BadRequest(f"More than one image matches {fingerprint!r}")
        return self._shown(found[0], owner)

    def find(self, fingerprint: str) -> Image | None:
        """The image with exactly this fingerprint, or None (never raises)."""
        found = self._store.find_images(fingerprint) if fingerprint else []
        return found[0] if found else None

    def resolve(self, ref: str, *, project: str = DEFAULT) -> Image:
        """An alias, else a fingerprint or its prefix (``project``'s).

        Raises:
            BadRequest: ``ref`` is empty or an ambiguous prefix.  NotFound: no match.
        """
        if not ref:
            raise BadRequest("No image given: name an alias or a fingerprint")
        owner = self._owner(project)
        with contextlib.suppress(NotFound):
            return self.get(self._store.get_alias(alias_key(owner, ref)).target,
                            project=project)
        try:
            return self.get(ref, project=project)
        except NotFound:
            raise NotFound(f"Image not found: {ref!r} is neither an alias nor a fingerprint") \
                from None

    def rootfs(self, fingerprint: str) -> Path:
        """The topmost layer of an image (proves all its layers are there).

        Raises: NotFound."""
        return self.layers.rootfs(fingerprint)

    def lowers(self, fingerprint: str) -> list[Path]:
        """The image's layers, topmost first (an instance's overlay lower dirs).

        Raises: NotFound (the image or a layer is missing)."""
        return self.layers.lowers(fingerprint)

    def users(self, fingerprint: str) -> list[str]:
        """Names of the instances made from the image."""
        return self._store.instances_using_image(fingerprint)

    # -- changes ------------------------------------------------------------------------
    def import_file(self, path: Path, *, filename: str = "", public: bool = False,
                    aliases: list[str] | None = None, meta_path: Path | None = None,
                    properties: dict[str, str] | None = None,
                    project: str = DEFAULT) -> Operation:
        """Import the tarball at ``path`` (split format: ``meta_path`` + rootfs ``path``).

        The files are consumed: removed when the operation ends. The result is
        the Image; the operation's metadata gets ``fingerprint`` and ``size``.
        Not idempotent: importing an image the project has fails the
        operation with Conflict; one another project has is shared (its
        layers are not stored twice).

        The operation can be cancelled (everything it wrote is removed), and
        an archive that unpacks past ``budget`` fails it with a 400.

        Raises:
            BadRequest: a bad alias name.  Conflict: an alias exists already.
            NotFound: no such project.
        """
        owner = self._owner(project)
        names = self.free_aliases(aliases, project=project)

        def work(op: Operation) -> Image:
            try:
                def progress(pct: int) -> None:
                    op.progress("Unpacking image", pct)
                budget = self.budget(op)
                # reuse: stored layers (kept for the instances of a deleted
                # image, or held by another project) are adopted, not a Conflict
                if meta_path is not None:
                    got = self.layers.import_split(meta_path, path, progress=progress,
                                                   budget=budget, reuse=True)
                else:
                    got = self.layers.import_file(path, filename=filename, progress=progress,
                                                  budget=budget, reuse=True)
                # its fingerprint is the hash of these bytes: an export sends them
                self.layers.keep_source(got.fingerprint, path, meta_path)
            finally:
                Path(path).unlink(missing_ok=True)
                if meta_path is not None:
                    Path(meta_path).unlink(missing_ok=True)
            failpoint("image-import.after-layers")  # unrecorded layers: the sweep's
            held = self.find(got.fingerprint)
            if held is not None:  # stored already: this project's too now, or a Conflict
                if self._held(held, owner):
                    raise Conflict(f"image {got.fingerprint} already exists")
                return self._share(op, held, owner, names)
            now = self._now()
            # an OCI image exported by cove runs its command again
            cmd, env = kept_run(self.layers.path(got.fingerprint)) or (list(got.cmd),
                                                                       dict(got.env))
            props = dict(got.properties)
            props.update(properties or {})
            img = Image(fingerprint=got.fingerprint, size=got.size,
                        architecture=got.architecture, properties=props, filename=filename,
                        public=public, created_at=got.created_at or now, uploaded_at=now,
                        cmd=cmd, env=env)
            try:
                self._store.add_image(img)
            except Conflict:
                raise
            except BaseException:
                self.collect(got.fingerprint, row_gone=True)
                raise
            if owner != DEFAULT:
                self._store.projects.add_image_project(img.fingerprint, owner)
                self._store.projects.drop_image_project(img.fingerprint, DEFAULT)
            return self._share(op, img, owner, names)

        return self._operations.run(work, description="Importing image",
                                    resources={"images": []}, project=owner,
                                    may_cancel=True)

    def free_aliases(self, aliases: list[str] | None, *, project: str = DEFAULT) -> list[str]:
        """The alias names checked: valid, and none taken in ``project``.

        Raises:
            BadRequest: a bad name.  Conflict: an alias exists already.
            NotFound: no such project.
        """
        owner = self._owner(project)
        names = [validate_alias_name(a) for a in aliases or []]
        for a in names:
            with contextlib.suppress(NotFound):
                self._store.get_alias(alias_key(owner, a))
                raise Conflict(f"Alias already exists: {a}")
        return names

    def add_made(self, op: Operation, img: Image, aliases: list[str], *,
                 project: str = DEFAULT) -> Image:
        """Record an image whose layers are in the store already (a
        published one) for ``project``, with ``aliases``; the end of its
        operation (metadata ``fingerprint`` and ``size``, lifecycle event).
        On failure nothing of the row stays and its layers are collected.

        Raises:
            Conflict: the fingerprint or an alias exists.
        """
        owner = self._owner(project)
        self._store.add_image(img)  # a Conflict here: the layers are the other's
        try:
            if owner != DEFAULT:
                self._store.projects.add_image_project(img.fingerprint, owner)
                self._store.projects.drop_image_project(img.fingerprint, DEFAULT)
            return self._share(op, img, owner, aliases)
        except BaseException:
            self._store.delete_image(img.fingerprint)  # its aliases with it
            self.collect(img.fingerprint, row_gone=True)
            raise

    def hold(self, op: Operation, img: Image, aliases: list[str], *,
             project: str = DEFAULT) -> Image:
        """``project`` holds the stored ``img`` (again) with ``aliases`` (checked
        free by :meth:`free_aliases`): an import of an image that is here
        already. Idempotent but for the aliases."""
        return self._share(op, img, self._owner(project), aliases)

    def instance_keys(self, fingerprint: str) -> dict[str, str]:
        """The config keys an instance of the image starts with (an OCI
        image's ``WorkingDir``, ``User``, ``StopSignal``, ``Healthcheck``);
        {} for other images. Never raises."""
        try:
            return instance_keys(self.layers.path(fingerprint))
        except CoveError:
            return {}

    def _share(self, op: Operation, img: Image, owner: str, names: list[str]) -> Image:
        """``owner`` holds ``img`` (stored now, or already for another project)
        with its aliases ``names``: the end of an import."""
        self._store.projects.add_image_project(img.fingerprint, owner)
        for a in names:
            self._store.add_alias(Alias(alias_key(owner, a), img.fingerprint))
        img = self.get(img.fingerprint, project=owner)
        op.update(fingerprint=img.fingerprint, size=img.size)
        url = f"/1.0/images/{img.fingerprint}"
        self._events.lifecycle("image-created", url if owner == DEFAULT
                               else f"{url}?project={owner}", project=owner)
        return img

    def update(self, fingerprint: str, *, properties: dict[str, str] | None = None,
               public: bool | None = None, patch: bool = True,
               project: str = DEFAULT, auto_update: bool | None = None) -> None:
        """Merge (``patch``: the given properties over the current ones) or
        replace (PUT: absent properties become none) an image's writable
        fields. Idempotent.

        Raises:
            NotFound: no such image.  BadRequest: properties is not an object;
                auto-update asked of an image that was not pulled (no source).
        """
        img = self.get(fingerprint, project=project)
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
        if auto_update and img.update_source is None:
            raise BadRequest("Image auto-update needs a source: this image was not "
                             "pulled from an image server")
        self._store.update_image(img)
        if auto_update is not None:
            self._store.image_sources.set_flags(img.fingerprint, auto_update=auto_update)

    def delete(self, fingerprint: str, *, project: str = DEFAULT) -> Operation:
        """Remove an image from ``project`` (an operation). When no project
        holds it any more, its row and aliases go at once and its layers once
        no instance is made from them, as LXD. Not idempotent.

        Raises:
            NotFound: no such image.
        """
        owner = self._owner(project)
        img = self.get(fingerprint, project=project)

        def work(op: Operation) -> None:
            if not self._store.projects.drop_image_project(img.fingerprint, owner):
                if self.users(img.fingerprint) and self.layers.exists(img.fingerprint):
                    # what the instances' next start needs of the row, kept first
                    self.layers.save_run_config(img.fingerprint, img.cmd, img.env)
                self._store.delete_image(img.fingerprint)
                users = self.users(img.fingerprint)
                if users:
                    log.info("image %s deleted; its layers stay for %d instance(s)",
                             img.fingerprint[:12], len(users))
                self.collect(img.fingerprint)
            url = f"/1.0/images/{img.fingerprint}"
            self._events.lifecycle("image-deleted", url if owner == DEFAULT
                                   else f"{url}?project={owner}", project=owner)

        return self._operations.run(work, description="Deleting image",
                                    resources={"images": [f"/1.0/images/{img.fingerprint}"]},
                                    lock=f"image:{img.fingerprint}", project=owner)

    def run_config(self, fingerprint: str) -> tuple[list[str], dict[str, str]]:
        """The image's command and environment (OCI images have them): from
        its row, or from beside its layers once the row is deleted; empty
        when neither is there. Never raises."""
        row = self._store.image_run_config(fingerprint) if fingerprint else None
        if row is not None:
            return row
        kept = self.layers.run_config(fingerprint) if fingerprint else None
        return kept if kept is not None else ([], {})

    def template_files(self, fingerprint: str) -> tuple[bytes | None, Path | None]:
        """The image's ``metadata.yaml`` and ``templates/`` directory as
        stored beside its layers (each None if absent; kept after the row
        is deleted, as long as instances use the layers), for the image
        templates (``_templates``). Never raises."""
        try:
            return self.layers.metadata(fingerprint), self.layers.templates(fingerprint)
        except (CoveError, OSError):
            return None, None

    def mark_used(self, fingerprint: str) -> None:
        """Set ``last_used_at`` (an instance was made from it), as LXD. Never raises
        for an image that went meanwhile."""
        self._store.touch_image(fingerprint, self._now())

    def collect(self, fingerprint: str, *, row_gone: bool = False) -> bool:
        """Remove the layers of ``fingerprint`` if no image row and no
        instance refers to them (``row_gone``: the caller knows the row is
        not there to stay). Idempotent; True if it removed them.
        """
        if not fingerprint or not self.layers.exists(fingerprint):
            return False
        if (not row_gone and self.find(fingerprint) is not None) or self.users(fingerprint):
            return False
        if self.layers.shared(fingerprint):  # a published image stands on its rootfs
            return False
        try:
            chain = self.layers.layers.chain(fingerprint)
            self.layers.delete(fingerprint)
        except NotFound:
            return False
        log.info("removed the layers of image %s (no image, no instance)", fingerprint[:12])
        self.layers.sweep_layers()
        for listener in self._gone:  # e.g. the registry download directory forgets it
            try:
                listener(fingerprint)
            except Exception:  # the layers are gone either way; a listener's own sweep retries
                log.exception("after removing image %s", fingerprint[:12])
        for below in chain[:-1]:  # parents kept only for this one may go now
            self.collect(below)
        return True

    def sweep(self) -> None:
        """At startup: remove unpack leftovers, and layers that neither an
        image row nor an instance refers to (unpacked but never recorded, or
        kept for instances whose last one went while coved was down)."""
        self.layers.cleanup_temp()
        recorded = {img.fingerprint for img in self._store.list_images()}
        for fp in self.layers.fingerprints():  # the tops of chains first: sorted is
            if fp not in recorded and not self.users(fp):  # no order, so collect
                self.collect(fp, row_gone=True)  # retries the parents it frees
        self.layers.sweep_layers()

    # -- aliases ------------------------------------------------------------------------
    def _alias_key(self, name: str, project: str) -> str:
        if "/" in name:  # no alias has one: it would be another project's key
            raise NotFound(f"Image alias not found: {name}")
        return alias_key(self._owner(project), name)

    @staticmethod
    def _alias_shown(a: Alias) -> Alias:
        return Alias(split_alias(a.name)[1], a.target, a.description)

    def list_aliases(self, *, project: str = DEFAULT) -> list[Alias]:
        """Every alias of ``project`` (or of whose images it uses)."""
        owner = self._owner(project)
        return [self._alias_shown(a) for a in self._store.list_aliases()
                if split_alias(a.name)[0] == owner]

    def get_alias(self, name: str, *, project: str = DEFAULT) -> Alias:
        """Raises: NotFound."""
        return self._alias_shown(self._store.get_alias(self._alias_key(name, project)))

    def add_alias(self, name: str, target: str, description: str = "", *,
                  project: str = DEFAULT) -> None:
        """Raises: BadRequest (name), NotFound (target), Conflict (exists)."""
        validate_alias_name(name)
        img = self.get(target, project=project)
        self._store.add_alias(Alias(self._alias_key(name, project), img.fingerprint,
                                    description or ""))

    def update_alias(self, name: str, target: str, description: str = "", *,
                     project: str = DEFAULT) -> None:
        """Point ``name`` at ``target``. Idempotent. Raises: NotFound."""
        img = self.get(target, project=project)
        self._store.update_alias(Alias(self._alias_key(name, project), img.fingerprint,
                                       description or ""))

    def rename_alias(self, name: str, new_name: str, *, project: str = DEFAULT) -> None:
        """Raises: BadRequest (name), NotFound, Conflict (new name taken)."""
        validate_alias_name(new_name)
        self._store.rename_alias(self._alias_key(name, project),
                                 self._alias_key(new_name, project))

    def delete_alias(self, name: str, *, project: str = DEFAULT) -> None:
        """Raises: NotFound."""
        self._store.delete_alias(self._alias_key(name, project))
