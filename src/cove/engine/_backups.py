"""Instance backups: LXD's ``/1.0/instances/NAME/backups`` and importing a
backup tarball as a new instance (``POST /1.0/instances`` with the tarball
as the body; the import itself is ``_backup_import``).

Design notes:

* What a backup is. A tarball in LXD's layout (``_backup_archive``) with the
  instance's FLATTENED root filesystem (its image's layers and its upper
  layer merged) and each snapshot's, so it stands alone and imports into
  LXD as one made by LXD does. It is kept under ``instances/KEY/backups/ID``
  (renaming or deleting the instance carries it along) and named by a row
  of ``store._backups``.
* How it is made. The upper layer is copied as a snapshot copies it
  (``_snapshots.copy_tree``, the cgroup frozen while a running instance is
  copied); each tree to archive is then an overlay mounted read-only in
  spirit (nothing writes to it) under ``instances/KEY/.backup-ID/backup/``:
  the copy, or a snapshot's upper, over the image's rootfs. ``tar`` walks
  that staging tree, crossing the mounts. The result is written as
  ``backups/.tmp-ID``, renamed to ``backups/ID``, and only then is the row
  added. Optimized storage is ignored, as LXD's ``dir`` driver does
  (``optimized_storage`` is then false in the object).
* How an imported instance is stored. It has no image: its whole root
  filesystem becomes its upper layer, over an empty lower layer
  (``Rootfs``: an instance whose ``image`` is ""). Why: a backup from LXD
  names an image cove may not have, and layers cannot be recovered from a
  flattened tree; a private image made for one instance would show in
  ``image list`` and need its own collection rules. Snapshots keep working
  (each holds its whole tree as its upper). The cost: nothing is shared
  with an image on disk.
* Hostile input. The tarball is unpacked through ``BackupExtractor`` into
  ``tmp/backup-import-ID`` (nothing outside it is written), with the same
  ``Budget`` as an image (the server setting ``cove.images.max_size``, else
  90% of the free space): a bomb is refused when its declared sizes pass
  the cap. Names (index.yaml's, X-LXD-name, snapshots) are checked as LXD
  does before anything is made; a bad member is a 400 naming it.
* Crash safety. Leftovers of a killed coved are removed at startup
  (``sweep``): staging trees (their mounts first), ``.tmp-*`` tarballs and
  files no row names; an import is moved into ``instances/KEY`` in one
  rename and its rows are added between ``begin_import`` and
  ``end_import``, so an import found pending is removed whole. So the next
  coved has the backup or import whole or not at all, and the source
  instance was never written.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import quote

from cove.engine._backup_archive import (
    POOL,
    compression_of,
    make_tarball,
    write_yaml,
)
from cove.engine._backup_import import BackupImages, BackupImports, ProfileCheck, ProjectLimits
from cove.engine._backup_incremental import (
    MANIFEST,
    Manifest,
    changes,
    load_manifest,
    manifest_of,
    save_manifest,
)
from cove.engine._failpoints import failpoint
from cove.engine._inst_metadata import effective_templates, snapshot_source, stage_templates
from cove.engine._runs import Paths, RunTable
from cove.engine._snapshots import Freezer, copy_tree
from cove.engine.events import EventBus
from cove.engine.operations import Operation, Operations
from cove.model.errors import BadRequest, Conflict, CoveError, InternalError, NotFound
from cove.model.names import validate_snapshot_name
from cove.model.profiles import Profile
from cove.model.projects import instance_url, split_key
from cove.model.records import Backup, Instance, Snapshot
from cove.model.states import Status
from cove.storage import overlay
from cove.store import Store

__all__ = ["BackupTarget", "Backups"]

log = logging.getLogger("cove.engine")

_TMP = ".tmp-"
_STAGE = ".backup-"


class BackupTarget(Protocol):
    """What backups need of the instances service."""

    def get(self, name: str, *, project: str = "default") -> Instance:
        """The instance (its ``name`` is its key), expanded. Raises NotFound."""
        ...


def _backup_url(key: str, backup: str) -> str:
    return instance_url(key, f"/backups/{quote(backup, safe='')}")


def _validate_backup_name(name: str) -> str:
    if "/" in name:
        raise BadRequest("Backup names may not contain slashes")
    return validate_snapshot_name(name)


def _for_lxd(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with the root disk LXD needs in ``expanded_devices`` (its import
    moves that device to the pool it restores into, and fails without one):
    a cove instance lives in the ``default`` pool whether or not a profile
    says so. Without cove's ``volatile.cove.*`` keys (LXD refuses a volatile
    key it does not know; the chain's id is in index.yaml)."""
    for k in ("config", "expanded_config"):
        if isinstance(obj.get(k), dict):
            obj[k] = {n: v for n, v in obj[k].items() if not n.startswith("volatile.cove.")}
    devices = obj.get("expanded_devices") or {}
    if not any(d.get("type") == "disk" and d.get("path") == "/" for d in devices.values()):
        name = "root" if "root" not in devices else "root-cove"
        obj["expanded_devices"] = {**devices, name: {"path": "/", "pool": POOL, "type": "disk"}}
    return obj


class Backups:
    """The backups of one root's instances. Thread-safe: every change runs
    as an operation holding the instance's lock (``instance:KEY``)."""

    def __init__(self, *, store: Store, paths: Paths, runs: RunTable, runtime: Freezer,
                 instances: BackupTarget, images: BackupImages, profiles: ProfileCheck,
                 validate_devices: Callable[[Any], dict[str, dict[str, str]]],
                 operations: Operations, events: EventBus,
                 clock: Callable[[], float] = time.time,
                 projects: ProjectLimits | None = None) -> None:
        self._store = store
        self._paths = paths
        self._runs = runs
        self._runtime = runtime
        self._instances = instances
        self._images = images
        self._operations = operations
        self._events = events
        self._now = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._imports = BackupImports(
            store=store, paths=paths, runs=runs, images=images, profiles=profiles,
            validate_devices=validate_devices, operations=operations, events=events,
            clock=clock, projects=projects)

    # -- reads ----------------------------------------------------------------
    def all(self, name: str, *, project: str = "default") -> list[Backup]:
        """The instance's backups, oldest first. Raises: NotFound."""
        key = self._instances.get(name, project=project).name
        return self._store.backups.all(key)

    def get(self, name: str, backup: str, *, project: str = "default") -> Backup:
        """Raises: NotFound (the instance or the backup)."""
        key = self._instances.get(name, project=project).name
        return self._store.backups.get(key, backup)

    def open(self, name: str, backup: str, *, project: str = "default") -> BinaryIO:
        """The backup's tarball, open for reading (the caller closes it; a
        delete meanwhile does not cut the stream short).

        Raises: NotFound.
        """
        b = self.get(name, backup, project=project)
        try:
            return open(self._dir(b.instance) / b.file, "rb")
        except FileNotFoundError:
            raise NotFound(f"Backup not found: {backup}") from None

    def _dir(self, key: str) -> Path:
        return self._paths.instance_dir(key) / "backups"

    def _run(self, key: str, work: Callable[[Operation], Any], description: str,
             resources: dict[str, list[str]]) -> Operation:
        return self._operations.run(work, description=description,
                                    resources={"instances": [instance_url(key)], **resources},
                                    lock=f"instance:{key}", project=split_key(key)[0])

    def _lifecycle(self, action: str, key: str, backup: str, **context: Any) -> None:
        self._events.lifecycle(action, _backup_url(key, backup), project=split_key(key)[0],
                               **context)

    # -- create ---------------------------------------------------------------
    def create(self, name: str, backup: str = "", *, project: str = "default",
               expires_at: float = 0.0, instance_only: bool = False,
               optimized_storage: bool = False, compression: str = "",
               since: str = "") -> Operation:
        """Make a backup, as an operation. Not idempotent. ``backup`` "":
        the next free ``backup%d``. ``optimized_storage`` is ignored (the
        ``dir`` driver's behaviour). ``since`` (cove's own): only what
        changed since that kept backup (``_backup_incremental``), no snapshots.

        Raises:
            BadRequest: a bad name or compression algorithm; ``since`` has no manifest.
            NotFound: no such instance, or no backup ``since``.
            Conflict: the name is taken, or busy.
        """
        inst = self._instances.get(name, project=project)
        key = inst.name
        compression = compression_of(compression)
        if since:
            base = self._store.backups.get(key, since)
            if not (self._dir(key) / (base.file + MANIFEST)).is_file():
                raise BadRequest(f"Field 'since': backup {since!r} has no manifest of its "
                                 "files (made by an older cove); make a full backup first")
        if not backup:
            taken = {b.name for b in self._store.backups.all(key)}
            i = 0
            while f"backup{i}" in taken:
                i += 1
            backup = f"backup{i}"
        _validate_backup_name(backup)
        self._check_free(key, backup)
        final = backup

        def work(op: Operation) -> Backup:
            self._check_free(key, final)
            base_file = self._store.backups.get(key, since).file if since else ""
            return self._take(op, self._store.get_instance(key), final, expires_at,
                              instance_only or bool(since), compression, base_file)

        # LXD 5.0 names the backup /1.0/backups/NAME here (lxc takes its base name)
        return self._run(key, work, "Backing up instance", {
            "backups": [f"/1.0/backups/{quote(backup, safe='')}"]})

    def _check_free(self, key: str, backup: str) -> None:
        if any(b.name == backup for b in self._store.backups.all(key)):
            raise Conflict(f"Backup {backup!r} already exists")

    def _take(self, op: Operation, inst: Instance, backup: str, expires_at: float,
              instance_only: bool, compression: str, base_file: str = "") -> Backup:
        key = inst.name
        bdir = self._dir(key)
        bdir.mkdir(mode=0o700, exist_ok=True)
        bid = uuid.uuid4().hex
        stage = self._paths.instance_dir(key) / f"{_STAGE}{bid}"
        tmp = bdir / f"{_TMP}{bid}"
        snaps = [] if instance_only else self._store.snapshots.all(key)
        try:
            stage.mkdir(mode=0o700)
            op.progress("Copying the upper layer", 0)
            self._copy_upper(inst, stage / "upper")
            failpoint("backup.after-copy")
            base = (base_file, load_manifest(bdir / (base_file + MANIFEST))) if base_file \
                else None
            with self._staged(stage, inst, snaps, bid, base) as (members, listing):
                op.progress("Writing the backup", 10)
                make_tarball(stage, members, tmp, compression, listing)
            failpoint("backup.after-tar")
            size = tmp.stat().st_size
            os.rename(stage / "manifest", bdir / (bid + MANIFEST))
            os.rename(tmp, bdir / bid)
        except BaseException:
            tmp.unlink(missing_ok=True)
            (bdir / (bid + MANIFEST)).unlink(missing_ok=True)
            raise
        finally:
            self._remove_stage(stage)
        failpoint("backup.after-rename")  # a file no row names: the sweep's
        record = Backup(instance=key, name=backup, file=bid, created_at=float(int(self._now())),
                        expires_at=expires_at, instance_only=instance_only,
                        compression=compression, size=size)
        try:
            self._store.backups.add(record)
        except BaseException:
            (bdir / bid).unlink(missing_ok=True)
            raise
        op.progress("Writing the backup", 100)
        self._lifecycle("instance-backup-created", key, backup)
        return record

    def _copy_upper(self, inst: Instance, dst: Path) -> None:
        key = inst.name
        freeze = inst.status is Status.RUNNING and self._runs.pid(key) > 0
        if freeze:
            self._runtime.pause(key)
        try:
            copy_tree(self._paths.instance_dir(key) / "upper", dst)
        finally:
            if freeze:
                self._runtime.resume(key)

    def _lower(self, inst: Instance, stage: Path) -> list[Path]:
        if not inst.image:
            return []
        lower = self._images.rootfs(inst.image)
        if not lower.is_dir():
            raise InternalError(f"Image {inst.image[:12]} of {inst.name} is missing")
        return [lower]

    @contextmanager
    def _staged(self, stage: Path, inst: Instance, snaps: list[Snapshot], bid: str,
                base: tuple[str, Manifest] | None
                ) -> Iterator[tuple[list[str], Path | None]]:
        """The staging tree under ``stage/backup`` with each root filesystem
        mounted, and ``stage/manifest``; yields the members to tar, in LXD's
        order, and for an increment over ``base`` the file listing them
        (then tar does not recurse)."""
        lower = self._lower(inst, stage)
        root = stage / "backup"
        docs = self._documents(inst, snaps)
        docs["index"]["cove_backup_id"] = bid
        members = ["backup/index.yaml"]
        d = self._paths.instance_dir(inst.name)
        with ExitStack() as mounts:
            for i, snap in enumerate(snaps):
                sdir = root / "snapshots" / snap.name
                sdir.mkdir(parents=True, mode=0o700)
                write_yaml(sdir / "backup.yaml", docs["snapshot"][snap.name])
                # the snapshot's own metadata.yaml and templates/, as in LXD's volume
                own = snapshot_source(d, d / "snapshots" / snap.dir)
                write_yaml(sdir / "metadata.yaml", self._metadata_doc(own, snap))
                stage_templates(own, self._images, snap, sdir / "templates")
                src = d / "snapshots" / snap.dir / "upper"
                self._mount(mounts, [src, *lower], stage / f"o{i}", sdir / "rootfs")
                members.append(f"backup/snapshots/{snap.name}")
            cdir = root / "container"
            cdir.mkdir(parents=True, mode=0o700)
            write_yaml(cdir / "backup.yaml", docs["config"])
            write_yaml(cdir / "metadata.yaml", docs["metadata"])
            tpl = stage_templates(d, self._images, inst,
                                  cdir / "templates")  # LXD's backup/container/templates/
            self._mount(mounts, [stage / "upper", *lower], stage / "oc", cdir / "rootfs")
            now = manifest_of(cdir / "rootfs")
            save_manifest(stage / "manifest", now)
            listing = None
            if base is None:
                members.append("backup/container")
            else:
                changed, gone = changes(base[1], now)
                docs["index"].update(cove_since=base[0], cove_deleted=gone)
                members += ["backup/container", "backup/container/backup.yaml",
                            "backup/container/metadata.yaml",
                            *(f"backup/container/{t}" for t in tpl), "backup/container/rootfs"]
                listing = stage / "listing"
                listing.write_bytes(b"".join(
                    os.fsencode(m) + b"\0" for m in
                    (*members, *(f"backup/container/rootfs/{p}" for p in changed))))
                members = []
            write_yaml(root / "index.yaml", docs["index"])
            yield members, listing

    @staticmethod
    def _mount(mounts: ExitStack, lower: list[Path], scratch: Path, target: Path) -> None:
        # an overlay needs two lower layers without an upper; a scratch upper
        # (nothing writes to it) is simpler and works with one
        overlay.mount_overlay(lower, scratch / "u", scratch / "w", target)
        mounts.callback(overlay.umount, target)

    def _documents(self, inst: Instance, snaps: list[Snapshot]) -> dict[str, Any]:
        from cove import api  # the renderers need the records (see cove.api)

        project, plain = split_key(inst.name)
        full = self._instances.get(plain, project=project)
        container = _for_lxd(api.instance(full))
        snapshots = {s.name: _for_lxd(api.snapshot(s, full)) for s in snaps}
        for s in snapshots.values():
            s.pop("name", None)  # LXD keeps the short name; set below
        snap_docs = [{**snapshots[s.name], "name": s.name} for s in snaps]
        profiles = [api.profile(p, []) for p in (self._profile(n, project)
                                                  for n in full.profiles) if p is not None]
        pool = {"config": {}, "description": "", "name": POOL, "driver": "dir",
                "used_by": [], "status": "Created", "locations": ["none"]}
        config: dict[str, Any] = {"container": container}
        if snap_docs:
            config["snapshots"] = snap_docs
        config.update(pool=pool, profiles=profiles, volume={
            "config": {}, "description": "", "name": plain,
            "type": "container", "used_by": [], "location": "none",
            "content_type": "filesystem", "project": project})
        index: dict[str, Any] = {"name": plain, "backend": "dir",
                                 "pool": POOL}
        if snaps:
            index["snapshots"] = [s.name for s in snaps]
        index.update(optimized=False, optimized_header=False, type="container",
                     config=config)
        metadata = self._metadata_doc(self._paths.instance_dir(inst.name), inst)
        per_snapshot = {s["name"]: {"container": {**s, "project": project},
                                    "pool": pool} for s in snap_docs}
        return {"index": index, "config": config, "metadata": metadata,
                "snapshot": per_snapshot}

    def _metadata_doc(self, d: Path, rec: Instance | Snapshot) -> dict[str, Any]:
        """The metadata.yaml of an instance (directory ``d``) or snapshot (its
        ``snapshot_source``) in a backup: its templates' rules."""
        props = {k[len("image."):]: v for k, v in rec.config.items()
                 if k.startswith("image.")}
        return {"architecture": rec.architecture, "creation_date": int(rec.created_at),
                "properties": props,
                "templates": effective_templates(d, self._images, rec) or {}}

    def _profile(self, name: str, project: str) -> Profile | None:
        for owner in (project, "default"):
            try:
                return self._store.profiles.get(name, owner)
            except NotFound:
                continue
        return None

    def _remove_stage(self, stage: Path) -> None:
        for mnt in sorted(overlay.mounts_under(str(stage)), key=len, reverse=True):
            overlay.umount(mnt)
        shutil.rmtree(stage, ignore_errors=True)

    # -- rename, delete -------------------------------------------------------
    def rename(self, name: str, backup: str, new_name: str, *,
               project: str = "default") -> Operation:
        """Rename, as an operation (one row update). Raises: BadRequest,
        NotFound, Conflict (taken, or busy)."""
        _validate_backup_name(new_name)
        key = self.get(name, backup, project=project).instance
        self._check_free(key, new_name)

        def work(op: Operation) -> None:
            self._store.backups.rename(key, backup, new_name)
            self._lifecycle("instance-backup-renamed", key, new_name, old_name=backup)

        return self._run(key, work, "Renaming instance backup",
                         {"backups": [_backup_url(key, backup)]})

    def delete(self, name: str, backup: str, *, project: str = "default") -> Operation:
        """Delete, as an operation. Not idempotent (NotFound when gone)."""
        key = self.get(name, backup, project=project).instance

        def work(op: Operation) -> None:
            self.delete_now(self._store.backups.get(key, backup))

        return self._run(key, work, "Deleting instance backup",
                         {"backups": [_backup_url(key, backup)]})

    def delete_now(self, b: Backup) -> None:
        """The row, then the file. Idempotent."""
        self._store.backups.delete(b.instance, b.name)
        (self._dir(b.instance) / b.file).unlink(missing_ok=True)
        (self._dir(b.instance) / (b.file + MANIFEST)).unlink(missing_ok=True)
        self._lifecycle("instance-backup-deleted", b.instance, b.name)

    def prune_expired(self) -> int:
        """Delete every backup past its ``expires_at``; how many. Never raises
        for one that went meanwhile or an instance that is busy (it is
        tried again next time)."""
        now = self._now()
        n = 0
        for b in self._store.backups.all():
            if not b.expires_at or b.expires_at > now:
                continue
            try:
                project, name = split_key(b.instance)
                self.delete(name, b.name, project=project).wait()
                n += 1
            except CoveError as exc:
                log.debug("expired backup %s/%s not removed yet: %s", b.instance, b.name, exc)
        return n

    def start(self, every: float = 60.0) -> None:
        """Remove expired backups now and every ``every`` seconds after, in a
        thread, until ``close`` (LXD's hourly task, more often: a backup
        made to expire in minutes should not outlive that by an hour)."""
        def loop() -> None:
            while True:
                try:
                    self.prune_expired()
                except Exception:  # keep the thread: the next round may succeed
                    log.exception("pruning expired backups failed")
                if self._stop.wait(every):
                    return

        self._thread = threading.Thread(target=loop, name="cove-backup-expiry", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- import (``_backup_import``) -------------------------------------------
    def import_file(self, path: Path, *, name: str = "", pool: str = "",
                    project: str = "default") -> Operation:
        """See ``BackupImports.import_file``."""
        return self._imports.import_file(path, name=name, pool=pool, project=project)

    # -- startup --------------------------------------------------------------
    def sweep(self) -> None:
        """Remove what a killed coved left (see module note). At startup,
        before anything starts. Idempotent."""
        self._imports.sweep()
        for inst in self._store.list_instances():
            d = self._paths.instance_dir(inst.name)
            if not d.is_dir():
                continue
            for entry in d.iterdir():
                if entry.name.startswith(_STAGE):
                    log.info("removing leftover backup staging %s", entry)
                    self._remove_stage(entry)
            bdir = d / "backups"
            if not bdir.is_dir():
                continue
            owned = {b.file for b in self._store.backups.all(inst.name)}
            for entry in bdir.iterdir():
                if entry.name.removesuffix(MANIFEST) not in owned:
                    log.info("removing leftover backup file %s", entry)
                    if entry.is_dir():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
