"""Images from OCI registries: ``source: {type: image, protocol: oci,
server, alias}`` (Incus' ``instance_oci`` wire), for ``POST /1.0/images``
(LXD's ``mode: pull``) and ``POST /1.0/instances``; and pushes of an image
to a registry (``cove image push``).

Design notes:

* **Where the bytes go**: the registry client
  (:mod:`cove.storage.registry`) fetches into ``<root>/registry``, an OCI
  image layout used as a content-addressed download directory, and the
  OCI importer (``engine.oci.import_oci_layout``) unpacks from there, each
  layer once by its diff_id. A layer whose diff_id is stored already is not
  downloaded at all (a second image on the same base fetches only its new
  layers); after an import the layer blobs are deleted (the unpacked layers
  are what cove keeps), while the small manifest and config blobs stay. A
  pull cut off half-way keeps what it fetched (``blobs/``, and the partial
  blob in ``ingest/``, resumed with ``Range``), so trying again fetches only
  the rest. Pulls run one at a time (one lock): a pull deleting the blobs
  it imported cannot take those of another pull that needs them.
* **Cached by manifest digest**: the image's fingerprint is its manifest
  digest's hex (as Incus); a pull or launch asks the registry for the
  manifest (one small request) and, when that fingerprint is here, uses the
  image without fetching anything else.
* **What the wire carries**: ``server`` is the registry's URL
  (``https://HOST[:PORT]``; ``http://`` only to a loopback address, which is
  what ``--insecure`` means), ``alias`` the reference (``library/alpine:3.20``
  or ``REPO@sha256:...``), ``certificate`` a PEM certificate to trust
  instead of the system CAs (the registry's own, pinned, or its CA), and
  ``secret`` the credentials as a containers-auth.json ``auth`` value
  (base64 of ``user:password``): used for this pull only, never stored.
  Without a secret, coved's own ``<root>/registry-auth.json`` (the same
  format) is read when present.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

from cove.api import InstanceSource, InstancesPost
from cove.engine._failpoints import failpoint
from cove.engine._images import Images
from cove.engine._oci_import import OciImages
from cove.engine.operations import Operation, Operations
from cove.model.errors import BadRequest, CoveError, NotFound
from cove.model.names import validate_instance_name
from cove.model.projects import DEFAULT
from cove.model.records import Image
from cove.storage.registry import Descriptor, Layout, Reference, Registry

__all__ = ["RegistryPulls", "check_oci_source", "is_oci"]

log = logging.getLogger("cove.engine")

PROTOCOL = "oci"
AUTH_FILE = "registry-auth.json"
SWEEP_AGE = 3 * 86400.0  # an unfinished pull's blobs wait this long for a retry


def is_oci(src: InstanceSource) -> bool:
    """An image source on an OCI registry (this module's)."""
    return src.type == "image" and src.protocol == PROTOCOL


def check_oci_source(src: InstanceSource) -> Reference:
    """The reference an OCI source names, checked before anything is made.

    Raises:
        BadRequest: naming the field: no ``server`` or a bad URL, a ``mode``
            other than pull, no ``alias`` or a bad reference, a
            ``fingerprint`` (registries know digests: give ``REPO@sha256:...``
            as the alias), a ``secret`` that is not base64 ``user:password``.
    """
    if not src.server:
        raise BadRequest("Field 'source.server' is required for protocol 'oci' "
                         "(the registry's URL)")
    if src.mode not in ("", "pull"):
        raise BadRequest(f"Invalid source mode {src.mode!r}: cove pulls OCI images ('pull')")
    if src.fingerprint and not src.alias:
        raise BadRequest("Field 'source.alias' is required for protocol 'oci' (REPO:TAG or "
                         "REPO@sha256:DIGEST); 'fingerprint' is not a registry reference")
    if not src.alias:
        raise BadRequest("Field 'source.alias' is required for protocol 'oci' (REPO:TAG)")
    parts = urllib.parse.urlsplit(src.server if "://" in src.server else f"https://{src.server}")
    if parts.path not in ("", "/"):
        raise BadRequest(f"Field 'source.server' must be the registry's URL without a path "
                         f"(got {src.server!r}); the repository goes in 'alias'")
    _credentials(src.secret)
    _registry(src, None)  # the URL (https, or http on loopback) checked
    try:
        return Reference.parse(src.alias)
    except BadRequest as e:
        raise BadRequest(f"Field 'source.alias': {e}") from None


def _credentials(secret: str) -> tuple[str, str] | None:
    if not secret:
        return None
    try:
        user, sep, password = base64.b64decode(secret, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        user, sep, password = "", "", ""
    if not sep or not user:
        raise BadRequest("Field 'source.secret' must be base64 of 'user:password' for "
                         "protocol 'oci'")
    return user, password


def _registry(src: InstanceSource, ca_file: Path | None,
              auth_file: Path | None = None) -> Registry:
    server = src.server if "://" in src.server else f"https://{src.server}"
    insecure = server.startswith("http://")  # Origin allows it on loopback only
    creds = _credentials(src.secret)
    return Registry(server, credentials=creds, ca_file=ca_file, insecure=insecure,
                    auth_file=auth_file if creds is None and auth_file is not None
                    and auth_file.exists() else None)


class RegistryPulls:
    """Pulls from OCI registries into the image store, and pushes. Thread-safe."""

    def __init__(self, images: Images, oci: OciImages, operations: Operations, *,
                 root: Path, tmp: Path,
                 create: Callable[..., Operation],
                 record_source: Callable[[str, InstanceSource, bool], None] | None = None,
                 ) -> None:
        """``root``: cove's root (``registry/`` and ``registry-auth.json`` in
        it); ``create``: the instances service's create; ``record_source``:
        told (fingerprint, source, cached) after a pull, for LXD's
        ``update_source`` and ``cached``."""
        self._images = images
        self._oci = oci
        self._operations = operations
        self._layout = root / "registry"
        self._auth_file = root / AUTH_FILE
        self._tmp = tmp
        self._create = create
        self._record = record_source
        self._lock = threading.Lock()  # one pull at a time; sweeps wait for it
        self._sweep_due = False  # an image went while a pull held the lock
        images.on_layers_gone(self._image_gone)

    # -- the public calls ------------------------------------------------------------------
    def pull(self, src: InstanceSource, *, aliases: list[str] | None = None,
             public: bool = False, project: str = DEFAULT) -> Operation:
        """``POST /1.0/images`` from a registry, as an operation whose result
        is the Image (metadata ``fingerprint``, ``size``, as LXD's pull). An
        image that is here already gets the aliases; nothing is downloaded.

        Raises:
            BadRequest: the source (see :func:`check_oci_source`), an alias.
            Conflict: an alias exists.  NotFound: the project.
        """
        check_oci_source(src)
        names = self._images.free_aliases(aliases, project=project)

        def work(op: Operation) -> Image:
            img = self.fetch(op, src, project=project, aliases=names, public=public,
                             cached=False)
            op.update(fingerprint=img.fingerprint, size=img.size)
            return img

        return self._operations.run(work, description="Downloading image",
                                    resources={"images": []}, project=project,
                                    may_cancel=True)

    def create_instance(self, req: InstancesPost, *, project: str = DEFAULT) -> Operation:
        """``POST /1.0/instances`` whose image is on a registry: the image
        pulled (or found here by its manifest digest), then the instance made
        from it by the instances service (its operation waited for). Not
        idempotent.

        Raises:
            BadRequest: the name, the source.  NotFound: the project.
        """
        validate_instance_name(req.name)
        check_oci_source(req.source)
        src = req.source

        def work(op: Operation) -> object:
            img = self.fetch(op, src, project=project, cached=True)
            req.source = InstanceSource(type="image", fingerprint=img.fingerprint)
            inner = self._create(req, project=project)
            op.on_cancel(inner.cancel)
            inner.wait()
            inner.raise_for_error()
            return inner.result

        return self._operations.run(work, description="Creating instance",
                                    resources={"instances": [f"/1.0/instances/{req.name}"]},
                                    project=project, may_cancel=True)

    def push(self, fingerprint: str, dest: InstanceSource, *,
             project: str = DEFAULT) -> Operation:
        """Push the image ``fingerprint`` (an OCI image pulled or imported
        here: its manifest and layers) to the registry and reference
        ``dest`` names (``server``, ``alias`` REPO:TAG, ``certificate``,
        ``secret``). The result is the manifest digest.

        Raises:
            BadRequest: the destination.  NotFound: the image.
        """
        ref = check_oci_source(dest)
        img = self._images.get(fingerprint, project=project)

        def work(op: Operation) -> str:
            from cove.engine._registry_push import export_layout  # the image's blobs

            with self._session(op, dest) as registry, tempfile.TemporaryDirectory(
                    prefix="push-", dir=self._tmp) as tmp:
                manifest = export_layout(self._images, img.fingerprint, Path(tmp), op)
                registry.push(Path(tmp), manifest, ref, progress=op.progress)
            op.update(digest=manifest.digest)
            return manifest.digest

        return self._operations.run(work, description="Pushing image",
                                    resources={"images": [f"/1.0/images/{img.fingerprint}"]},
                                    project=project, may_cancel=True)

    def sweep(self, max_age: float = SWEEP_AGE) -> list[str]:
        """Startup: the download directory forgets the images that are gone
        from the store, and drops what an unfinished pull left once it is
        ``max_age`` seconds old (``Layout.prune``). Never raises."""
        layout = Layout(self._layout)
        store = self._images.layers

        def stored(digest: str) -> bool:
            try:
                return store.exists(digest.split(":", 1)[-1])
            except CoveError:  # not a fingerprint cove would have made
                return False

        try:
            gone = layout.prune(stored, max_age=max_age)
        except (OSError, ValueError) as e:
            log.warning("the registry download directory was not swept: %s", e)
            return []
        if gone:
            log.info("registry download directory: removed %d files", len(gone))
        return gone

    def _image_gone(self, fingerprint: str) -> None:
        """An image's layers were removed: the download directory forgets
        its manifest and config now (``Layout.prune``; blobs another image
        needs stay). A pull in flight holds ``_lock`` from its manifest to
        its image row, so the sweep never sees a half-made image: then it
        runs when that pull ends (``_pulling``). Never raises or blocks."""
        del fingerprint  # the store decides what stays
        if not self._lock.acquire(blocking=False):
            self._sweep_due = True
            return
        try:
            self._sweep_due = False
            self.sweep()
        finally:
            self._lock.release()

    @contextlib.contextmanager
    def _pulling(self) -> Iterator[None]:
        """Hold the pull lock; a sweep an image deletion asked for meanwhile
        runs before it is released."""
        with self._lock:
            try:
                yield
            finally:
                if self._sweep_due:
                    self._sweep_due = False
                    self.sweep()

    # -- in an operation -------------------------------------------------------------------
    @contextlib.contextmanager
    def _session(self, op: Operation, src: InstanceSource) -> Iterator[Registry]:
        """A client for ``src``'s registry; a pinned certificate as a file while it lives."""
        del op
        if not src.certificate:
            yield _registry(src, None, self._auth_file)
            return
        self._tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="registry-ca-", suffix=".pem", dir=self._tmp)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(src.certificate)
            yield _registry(src, Path(name), self._auth_file)
        finally:
            os.unlink(name)

    def fetch(self, op: Operation, src: InstanceSource, *, project: str,
              aliases: list[str] | None = None, public: bool = False,
              cached: bool = True) -> Image:
        """The image ``src`` names, here: found by its manifest digest, or
        pulled and imported. ``aliases`` must have been checked free.

        Raises:
            NotFound: no such repository or tag.  BadRequest: see
            ``storage.registry`` (digests, sizes, TLS, redirects) and
            ``import_oci_layout`` (a hostile layer).
            Forbidden: the registry refused the credentials.
        """
        ref = check_oci_source(src)
        op.progress("Resolving image", None, src.alias)
        with self._session(op, src) as registry, self._pulling():
            manifest, _, _ = registry.resolve(ref)
            fp = manifest.digest.split(":", 1)[1]
            here = self._here(fp, project)
            if here is not None:
                log.info("image %s from %s is here already", fp[:12], src.alias)
                for name in aliases or []:
                    self._images.add_alias(name, fp, project=project)
                self._images.mark_used(fp)
                return self._images.get(fp, project=project)
            # not here, or another project's: only what is not stored travels
            store = self._images.layers.layers
            pulled = registry.pull(ref, self._layout, progress=op.progress,
                                   have_layer=store.has, cancelled=lambda: op.cancelled)
            log.info("image %s from %s: %d bytes fetched", fp[:12], src.alias,
                     pulled.fetched_bytes)
            op.update(fetched_bytes=pulled.fetched_bytes)  # cove's: what travelled
            failpoint("registry-pull.pulled")  # tagged in the layout, no image row yet
            try:
                fp = self._import(op, pulled.manifest, src, project, aliases, public)
            except BadRequest:  # refused content (a bomb, a hostile layer): not kept
                self._drop_layer_blobs(pulled.layers)
                raise
            self._drop_layer_blobs(pulled.layers)
        if self._record is not None:
            self._record(fp, src, cached)
        if cached:
            self._images.mark_used(fp)
        return self._images.get(fp, project=project)

    def _import(self, op: Operation, manifest: Descriptor, src: InstanceSource, project: str,
                aliases: list[str] | None, public: bool) -> str:
        label = f"{src.server.rstrip('/')}/{src.alias}"
        return self._oci.import_oci_layout(self._layout, manifest.digest, op=op,
                                           project=project, aliases=aliases or [],
                                           source_label=label, public=public)

    def _drop_layer_blobs(self, layers: list[Descriptor]) -> None:
        """The layers are unpacked now: their compressed blobs go (never raises)."""
        layout = Layout(self._layout)
        for d in layers:
            with contextlib.suppress(OSError):
                layout.blob(d.digest).unlink(missing_ok=True)

    def _here(self, fp: str, project: str) -> Image | None:
        with contextlib.suppress(NotFound):
            img = self._images.get(fp, project=project)
            if self._images.layers.exists(fp):
                return img
        return None
