"""Publish an instance (or a snapshot) as an image, and export an image.

Design notes:

* A published image is layered, not copied: its chain is its parent
  image's layers with the instance's (or the snapshot's) upper layer on
  top as ONE new layer (``storage.layers``). Only the upper layer is
  copied: with the instance frozen when it runs (``runc pause``, thawed
  right after, also on failure), by the snapshot copier (``cp -a
  --reflink=auto``), which keeps overlay's whiteouts and opaque
  directories; the copy is then cleaned of what a container may plant
  (``sanitize_upper``). A launch from it mounts all its layers.
* Metadata: the instance's own ``metadata.yaml`` and templates when it
  has them (edited through ``/1.0/instances/NAME/metadata``,
  ``_inst_metadata``; a snapshot's: those it was taken with), else the
  parent's, with ``architecture`` the instance's, ``creation_date`` now,
  and the request's ``properties`` over the parent's (LXD replaces them
  when given; cove merges, so ``os``/``release`` carry over unless
  overridden). An OCI parent's
  ``oci.json`` (``cove.cwd``, ``cove.uid``, ``cove.halt``, ``cove.health*``)
  is carried as it is, as its command and environment are on the row, so
  an instance of the published image starts as the instance did.
* Fingerprint: the SHA-256 of the image's export, the unified tarball
  with the layers flattened (``storage.export``), as LXD's is the SHA-256 of
  the file it writes; so ``lxc image export`` (which checks it) works and
  the exported file imports into LXD under the same fingerprint. The
  tarball is hashed while it is produced and never stored. ``size`` is its
  length. Compression is accepted in the request and not applied: the
  export is an uncompressed tar (LXD reads any).
* Crash safety: the layer is copied into a ``.tmp-publish-*`` directory,
  moved into ``layers/`` under a fresh id, the image directory (chain,
  metadata, templates) is built in the same ``.tmp-`` directory and renamed
  to its fingerprint, and only then the row is added. A kill between any
  two steps leaves a temporary directory, an unreferenced layer or a
  directory no row names: startup's ``Images.sweep`` removes each. The
  source instance is only read (and thawed in a ``finally``; a coved
  killed while it is frozen leaves it frozen, as a kill during a snapshot
  does: the next coved's reconciler finds runc's container paused and
  records it ``Frozen``, and ``cove resume`` or ``lxc start`` thaws it).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from cove.engine._failpoints import failpoint
from cove.engine._images import Images
from cove.engine._inst_metadata import own_files, snapshot_source
from cove.engine._runs import Paths, RunTable
from cove.engine._snapshots import Freezer, SnapshotTarget, copy_tree
from cove.engine.operations import Operation, Operations
from cove.model.errors import BadRequest, Conflict, NotFound
from cove.model.projects import DEFAULT
from cove.model.records import Image
from cove.model.states import Status
from cove.storage.export import ExportPart, FlatStream, flatten
from cove.storage.images import host_architecture
from cove.storage.layers import MAX_LAYERS, LayerStore, sanitize_upper
from cove.storage.oci_keep import export_member, write_full
from cove.storage.oci_layout import OCI_KEYS_FILE, instance_keys
from cove.store import Store

__all__ = ["SOURCE_TYPES", "Publisher"]

log = logging.getLogger("cove.engine")

SOURCE_TYPES = ("instance", "container", "virtual-machine", "snapshot")
_CHUNK = 1 << 20
_MOUNT_DATA = 4095  # mount(2) copies one page of options


class Publisher:
    """Publishing and exporting for one root. Thread-safe: a publish runs
    as an operation holding the source instance's lock."""

    def __init__(self, *, store: Store, paths: Paths, runs: RunTable, runtime: Freezer,
                 instances: SnapshotTarget, images: Images, operations: Operations,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._paths = paths
        self._runs = runs
        self._runtime = runtime
        self._instances = instances
        self._images = images
        self._operations = operations
        self._now = clock

    @property
    def _layers(self) -> LayerStore:
        return self._images.layers.layers

    # -- publish --------------------------------------------------------------
    def publish(self, source_type: str, name: str, *, aliases: list[str] | None = None,
                properties: dict[str, str] | None = None, public: bool = False,
                filename: str = "", project: str = DEFAULT) -> Operation:
        """Make an image of instance ``name`` (``source_type`` instance,
        container) or of snapshot ``INSTANCE/SNAP`` (``snapshot``), as an
        operation whose metadata gets ``fingerprint`` and ``size``. Not
        idempotent: publishing the same unchanged instance twice makes two
        images (their ``creation_date`` differs).

        Raises:
            BadRequest: a bad source type or name, a bad alias, too many layers.
            NotFound: no such instance or snapshot.  Conflict: an alias
                exists, or the instance is busy.
        """
        if source_type not in SOURCE_TYPES:
            raise BadRequest(f"Field 'source.type': {source_type!r} is not one of "
                             f"{', '.join(SOURCE_TYPES)}")
        if source_type == "virtual-machine":
            raise BadRequest("Field 'source.type': cove runs containers only")
        if not name:
            raise BadRequest("Field 'source.name' is required")
        is_snap = "/" in name
        if source_type == "snapshot" and not is_snap:
            raise BadRequest("Field 'source.name': not a snapshot (use INSTANCE/SNAPSHOT)")
        if source_type != "snapshot" and is_snap:
            raise BadRequest("Field 'source.name': this is a snapshot (use type snapshot)")
        props = _string_map(properties, "properties")
        names = self._images.free_aliases(aliases, project=project)
        inst_name, _, snap_name = name.partition("/")
        inst = self._instances.get(inst_name, project=project)
        key = inst.name
        if is_snap:
            self._store.snapshots.get(key, snap_name)  # NotFound before the operation
        self._check_depth(inst.image)

        def work(op: Operation) -> Image:
            return self._publish(op, key, snap_name if is_snap else "", names, props,
                                 public, filename, project)

        return self._operations.run(work, description="Publishing image",
                                    resources={"images": []}, lock=f"instance:{key}",
                                    project=self._images_project(project))

    def _images_project(self, project: str) -> str:
        return project if project == DEFAULT else self._images.owner(project)

    def _check_depth(self, parent: str) -> None:
        try:
            depth = len(self._chain(parent))
            lowers = [str(p) for p in self._layers.lowers(parent)] if parent else []
        except NotFound:
            raise BadRequest(f"The image {parent[:12]} of the instance is not in the store") \
                from None
        if depth + 1 > MAX_LAYERS:
            raise BadRequest(f"An image has at most {MAX_LAYERS} layers and this one would "
                             f"have {depth + 1}: export it and import the tarball to "
                             "flatten it")
        # the mount options of an instance of it must fit in one page: its
        # layers (the new one as long as any) and its upper and work dirs
        longest = max(len(p) for p in [*lowers, str(self._layers.dir / ("0" * 64))])
        inst = len(str(self._paths.instance_dir("x" * 64 + "_" + "x" * 64)))
        if sum(len(p) + 1 for p in lowers) + longest + 2 * (inst + 6) + 40 > _MOUNT_DATA:
            raise BadRequest("The layers of this image would not fit in one overlay mount "
                             "(paths too long): export it and import the tarball to flatten it")

    def _publish(self, op: Operation, key: str, snap: str, aliases: list[str],
                 props: dict[str, str], public: bool, filename: str,
                 project: str) -> Image:
        inst = self._store.get_instance(key)
        d = self._paths.instance_dir(key)
        if snap:
            row = self._store.snapshots.get(key, snap)
            upper = d / "snapshots" / row.dir / "upper"
            parent, arch = row.image, row.architecture
            d = snapshot_source(d, upper.parent)
        else:
            upper = d / "upper"
            parent, arch = inst.image, inst.architecture
        # the instance's (or snapshot's) own metadata and templates, as LXD publishes them
        own = own_files(d)
        self._check_depth(parent)
        chain = self._chain(parent)
        tmp = self._layers.mkdtemp("publish")
        try:
            op.progress("Copying the upper layer", 0)
            freeze = not snap and inst.status is Status.RUNNING and self._runs.pid(key) > 0
            if freeze:
                self._runtime.pause(key)
            try:
                failpoint("publish.while-frozen")
                copy_tree(upper, tmp / "layer")
            finally:
                if freeze:
                    self._runtime.resume(key)
            sanitize_upper(tmp / "layer")
            op.progress("Copying the upper layer", 40)
            failpoint("publish.after-copy")
            metadata = self._metadata(parent, arch or host_architecture(), props,
                                      own[0] if own else None)
            (tmp / "metadata.yaml").write_bytes(metadata)
            templates = own[1] if own else \
                self._images.layers.templates(parent) if parent else None
            if templates is not None:
                copy_tree(templates, tmp / "templates")
            oci = self._images.layers.path(parent) / OCI_KEYS_FILE if parent else None
            if oci is not None and oci.is_file() and not oci.is_symlink():
                # an OCI image's cove.cwd, cove.uid, cove.halt, cove.health*: an
                # instance of the published image starts as one of its parent;
                # with its command and environment, so that an export carries them
                write_full(tmp / OCI_KEYS_FILE, *self._images.run_config(parent),
                           instance_keys(oci.parent))
            op.progress("Hashing the image", 50)
            lowers = [tmp / "layer", *(self._layers.path(i) for i in reversed(chain))]
            fingerprint, size = self._hash(op, tmp, lowers, metadata)
            with self._layers.lock:  # no sweep between the layer and its chain
                layer = self._layers.add(tmp / "layer")
                try:
                    failpoint("publish.after-layer")  # a layer no chain lists: the sweep's
                    self._layers.write_chain(tmp, [*chain, layer])
                    self._images.layers.commit(tmp, fingerprint)
                except BaseException:
                    shutil.rmtree(self._layers.path(layer), ignore_errors=True)
                    raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        failpoint("publish.after-image")  # a directory no row names: the sweep's
        now = self._now()
        img = Image(fingerprint=fingerprint, size=size, architecture=arch or host_architecture(),
                    properties=_properties_of(metadata), filename=filename, public=public,
                    created_at=now, uploaded_at=now)
        cmd, env = self._images.run_config(parent)
        img.cmd, img.env = cmd, env
        op.progress("Hashing the image", 100, f"{size} bytes")
        try:
            return self._images.add_made(op, img, aliases, project=project)
        except Conflict:
            raise Conflict(f"The image already exists: {fingerprint}") from None

    def _chain(self, parent: str) -> list[str]:
        """The parent image's layers; none for an instance rebuilt empty."""
        return self._layers.chain(parent) if parent else []

    def _metadata(self, parent: str, arch: str, props: dict[str, str],
                  own: bytes | None = None) -> bytes:
        doc: dict[str, Any] = {}
        raw = own if own is not None else \
            self._images.layers.metadata(parent) if parent else None
        if raw is not None:
            try:
                loaded = yaml.safe_load(raw)
            except yaml.YAMLError:
                loaded = None
            if isinstance(loaded, dict):
                doc = loaded
        base = doc.get("properties")
        merged = {str(k): str(v) for k, v in base.items()} if isinstance(base, dict) else {}
        if not merged and parent:
            row = self._images.find(parent)
            merged = dict(row.properties) if row is not None else {}
        merged.update(props)
        doc["architecture"] = arch
        doc["creation_date"] = int(self._now())
        doc["properties"] = merged
        doc.pop("expiry_date", None)
        return bytes(yaml.safe_dump(doc, default_flow_style=False, sort_keys=True).encode())

    def _hash(self, op: Operation, image_dir: Path, lowers: list[Path],
              metadata: bytes) -> tuple[str, int]:
        """The SHA-256 and length of the image's flattened tarball, read
        once as tar writes it (progress: bytes so far, every 64 MiB)."""
        stream = flatten(self._layers.mkdtemp("export"), lowers, metadata,
                         _creation(metadata), _dir_or_none(image_dir / "templates"),
                         export_member(image_dir, lambda: ([], {})))
        h = hashlib.sha256()
        size = 0
        try:
            while chunk := stream.read(_CHUNK):
                h.update(chunk)
                size += len(chunk)
                if size % (64 << 20) < len(chunk):
                    op.progress("Hashing the image", 50, f"{size} bytes")
        finally:
            stream.close()
        return h.hexdigest(), size

    # -- export ---------------------------------------------------------------
    def export(self, fingerprint: str, *, project: str = DEFAULT) -> list[ExportPart]:
        """What ``GET /1.0/images/FP/export`` sends: one part (a unified
        tarball) or two (``metadata`` and ``rootfs`` of a split image). Each
        part is opened by the caller, read to the end and closed; a
        flattened part unmounts and cleans up on close.

        Raises:
            NotFound: no such image in ``project``, or its layers are gone.
        """
        img = self._images.get(fingerprint, project=project)
        fp = img.fingerprint
        store = self._images.layers
        kept = store.source_parts(fp)
        if kept is not None:
            return kept
        lowers = store.lowers(fp)  # NotFound when the layers are gone
        metadata = store.metadata(fp) or _generated_metadata(img)
        # a published image's size is its export's (hashed when published);
        # an OCI import's is its blobs' (so the export is sent without a length)
        oci_import = (store.path(fp) / "manifest.json").is_file()
        size = img.size if store.layers.chain(fp) != [fp] and not oci_import else None

        oci = export_member(store.path(fp), lambda: self._images.run_config(fp))

        def opener() -> FlatStream:
            return flatten(self._layers.mkdtemp("export"), lowers, metadata,
                           _creation(metadata), store.templates(fp), oci)

        return [ExportPart("", f"{fp}.tar", size, opener)]


def _dir_or_none(p: Path) -> Path | None:
    return p if p.is_dir() else None


def _string_map(value: object, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"Field {field!r} must be an object")
    return {str(k): str(v) for k, v in value.items()}


def _properties_of(metadata: bytes) -> dict[str, str]:
    doc = yaml.safe_load(metadata)
    props = doc.get("properties") if isinstance(doc, dict) else None
    return {str(k): str(v) for k, v in props.items()} if isinstance(props, dict) else {}


def _creation(metadata: bytes) -> float:
    try:
        doc = yaml.safe_load(metadata)
        value = doc.get("creation_date") if isinstance(doc, dict) else None
        return float(value) if isinstance(value, (int, float)) and value > 0 else 0.0
    except yaml.YAMLError:
        return 0.0


def _generated_metadata(img: Image) -> bytes:
    """``metadata.yaml`` for an image imported without one (a plain rootfs tarball)."""
    doc = {"architecture": img.architecture, "creation_date": int(img.created_at),
           "properties": dict(img.properties)}
    return bytes(yaml.safe_dump(doc, default_flow_style=False, sort_keys=True).encode())

