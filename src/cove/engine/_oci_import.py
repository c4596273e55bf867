"""Importing an OCI image layout as an image of shared layers.

Design note: an OCI image becomes an image directory ``<fp>/`` (``fp`` the
manifest digest's hex, as Incus' ``instance_oci`` names its images) holding
``layers.json`` (the layers' ``diff_id`` hexes, bottom first), the manifest
and config blobs as they were (``manifest.json``, ``config.json``) and
``oci.json`` (the instance config keys the config means: ``cove.cwd``,
``cove.uid``, ``cove.halt``, ``cove.health*``; see
``storage.oci_layout.run_settings``; with the command and environment, so
an export carries them: ``storage.oci_keep``). Each layer is unpacked once, into
``layers/<diff_id>``, by ``storage.oci_layer`` (hostile input); a layer
already stored (another image's base) is not read at all. The image row
carries the command (Entrypoint + Cmd) and environment, as any image's.

Order, so that a crash or a failure leaves nothing the sweep cannot take:
layers are unpacked into ``.tmp-`` directories of the store, then, with the
layer store's lock held (a sweep cannot run in between), renamed into
``layers/`` and the image directory (chain included) renamed into place;
then the row. Layers with no chain, and an image directory with no row,
are what ``Images.sweep`` removes at the next start.

This is the engine's entry for the registry client too (issue 13): it
fetches into a layout directory and calls :meth:`OciImages.import_oci_layout`
inside its own operation.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import re
from collections.abc import Callable
from pathlib import Path

from cove.engine._failpoints import failpoint
from cove.engine._images import Images
from cove.engine.operations import Operation, Operations
from cove.model.projects import DEFAULT
from cove.model.records import Image
from cove.storage._extract import Budget, Extractor, HashingReader, ProgressMeter
from cove.storage.images import ImageExists, host_architecture
from cove.storage.oci_keep import write_full
from cove.storage.oci_layer import extract_layer
from cove.storage.oci_layout import OCI_KEYS_FILE, Layout, OciImage, run_settings
from cove.storage.safefs import RootFS

__all__ = ["OciImages"]

log = logging.getLogger("cove.engine")

_CREATED = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)")


def _created(config: dict[str, object]) -> float:
    m = _CREATED.match(str(config.get("created") or ""))
    if not m:
        return 0.0
    try:
        return float(calendar.timegm(tuple(int(x) for x in m.groups()) + (0, 0, 0)))
    except (ValueError, OverflowError):
        return 0.0


class OciImages:
    """OCI image layouts into the images service's store. Thread-safe."""

    def __init__(self, images: Images, operations: Operations,
                 clock: Callable[[], float]) -> None:
        self._images = images
        self._operations = operations
        self._now = clock

    def import_archive(self, path: Path, ref: str | None = None, *, public: bool = False,
                       aliases: list[str] | None = None, filename: str = "",
                       project: str = DEFAULT) -> Operation:
        """Import an OCI layout sent as a tar archive (``cove image import
        DIR`` packs one): unpacked as hostile input into a temporary
        directory of the store, imported by :meth:`import_oci_layout`. The
        file is consumed. The result is the Image (metadata
        ``fingerprint``, ``size``).

        Raises:
            BadRequest: a bad alias name.  Conflict: an alias exists.
        """
        names = self._images.free_aliases(aliases, project=project)
        owner = self._images.owner(project)
        store = self._images.layers

        def work(op: Operation) -> Image:
            tmp = store.layers.mkdtemp("ocitar")
            try:
                with RootFS(tmp) as fs:
                    op.progress("Unpacking layout", 0)
                    with open(path, "rb") as f:
                        head = f.read(8)
                        f.seek(0)
                        ex = Extractor(fs, route_rootfs=False, budget=self._images.budget(op))
                        ex.kind = "OCI layout"
                        try:
                            ex.run(HashingReader(f, hashlib.sha256(), None), head,
                                   filename or "OCI layout")
                        finally:
                            ex.close()
                fp = self.import_oci_layout(tmp, ref, op=op, project=project, aliases=names,
                                            source_label=filename, public=public)
            finally:
                Path(path).unlink(missing_ok=True)
                store.discard(tmp)
            return self._images.get(fp, project=owner)

        return self._operations.run(work, description="Importing image",
                                    resources={"images": []}, project=owner,
                                    may_cancel=True)

    def import_oci_layout(self, layout: Path, ref: str | None, *, op: Operation,
                          project: str = DEFAULT, aliases: list[str] | None = None,
                          source_label: str = "", public: bool = False) -> str:
        """Import the image ``ref`` names in the OCI layout directory
        ``layout`` (``None``: its only image; an index resolves to the
        host's architecture) into ``project``, in the caller's operation
        ``op`` (progress: ``Unpacking layers``, percent of the new layers'
        bytes, text ``layer i/n``). Returns the fingerprint: the manifest
        digest's hex.

        The layout is only read. Layers already stored are not read again.
        Idempotent for the same image: an image the project holds already
        gets the new aliases and its fingerprint is returned; one another
        project holds is shared.

        Raises:
            BadRequest: a malformed layout, manifest or config, a digest or
                size mismatch, a hostile layer (see ``storage.oci_layer``),
                a bad alias name, no image for this architecture.
            NotFound: ``ref`` names nothing; a blob is missing.
            Conflict: an alias exists already.
            InternalError: cancelled, or the disk failed.
        """
        names = self._images.free_aliases(aliases, project=project)
        owner = self._images.owner(project)
        with Layout(layout) as lay:
            image = lay.pick(ref, host_architecture())
            fp = image.fingerprint
            held = self._images.find(fp)
            if held is not None and self._images.layers.exists(fp):
                self._images.hold(op, held, names, project=owner)
                return fp
            self._store_layers(lay, image, op)
        store = self._images.layers
        lowers = store.lowers(fp)
        cmd, env, _, props = run_settings(image, lowers)
        now = self._now()
        img = Image(fingerprint=fp, size=sum(x.size for x in image.layers) + image.manifest.size,
                    architecture=image.architecture or host_architecture(), properties=props,
                    filename=source_label, public=public,
                    created_at=_created(image.config) or now, uploaded_at=now,
                    cmd=cmd, env=env)
        failpoint("oci-import.after-dir")  # an image directory no row names: the sweep's
        self._images.add_made(op, img, names, project=owner)
        return fp

    def _store_layers(self, lay: Layout, image: OciImage, op: Operation) -> None:
        """Unpack the layers not stored yet, then move them and the image
        directory into place (see the module note)."""
        store = self._images.layers
        ls = store.layers
        todo = [(i, d) for i, d in enumerate(image.layers) if not ls.has(image.diff_ids[i])]
        at = [0]  # the layer being unpacked, for the progress text

        def progress(pct: int) -> None:
            op.progress("Unpacking layers", pct,
                        f"layer {at[0]} of {len(todo)} new ({len(image.layers)} in the image), "
                        f"{meter.done} of {meter.total} bytes")

        meter = ProgressMeter(sum(d.size for _, d in todo), progress)
        budget: Budget = self._images.budget(op)
        trees: list[tuple[Path, str]] = []
        try:
            for n, (i, d) in enumerate(todo, 1):
                at[0] = n
                tree = ls.mkdtemp("layer")
                tree.chmod(0o755)  # a layer's root is the container's / unless it says
                trees.append((tree, image.diff_ids[i]))
                log.info("image %s: unpacking layer %d/%d %s", image.fingerprint[:12], n,
                         len(todo), d.digest[:19])
                with lay.open_blob(d) as blob:
                    extract_layer(blob, tree, digest=d.hex, size=d.size,
                                  diff_id=image.diff_ids[i], budget=budget, meter=meter,
                                  label=f"layer {d.digest[:19]}")
            meter.finish()
            self._commit(image, trees)
        finally:
            for tree, _ in trees:
                if tree.exists():
                    store.discard(tree)

    def _commit(self, image: OciImage, trees: list[tuple[Path, str]]) -> None:
        store = self._images.layers
        ls = store.layers
        tmp = ls.mkdtemp("oci")
        try:
            chain = list(image.diff_ids)
            ls.write_chain(tmp, chain)
            (tmp / "manifest.json").write_bytes(image.manifest_bytes)
            (tmp / "config.json").write_bytes(image.config_bytes)
            new = {lid: tree for tree, lid in trees}
            cmd, env, keys, _ = run_settings(image, [new.get(i) or ls.path(i)
                                                     for i in reversed(chain)])
            # the full form: an export carries it (``storage.oci_keep``)
            write_full(tmp / OCI_KEYS_FILE, cmd, env, keys)
            with ls.lock:  # no sweep between the layers' renames and the chain's
                for tree, lid in trees:
                    ls.add_as(tree, lid)  # False: stored meanwhile; ours is dropped
                for lid in chain:
                    ls.path(lid)  # every layer there (NotFound: swept before we held it)
                failpoint("oci-import.after-layers")  # layers no chain lists: the sweep's
                try:
                    store.commit(tmp, image.fingerprint)
                except ImageExists:  # kept for instances of a deleted image: adopted
                    log.info("image %s: its layers are stored already", image.fingerprint[:12])
        finally:
            if tmp.exists():
                store.discard(tmp)
