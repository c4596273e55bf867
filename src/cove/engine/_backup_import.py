"""Importing a backup tarball as a new instance (``POST /1.0/instances``
with the tarball as the body), or applying an increment onto the instance
restored from its base: the import side of ``_backups`` (see its module
note for how an imported instance is stored, the hostile-input rules and
crash safety; ``_backup_incremental`` for increments).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from cove.engine._backup_archive import POOL, BackupExtractor, read_index
from cove.engine._backup_incremental import BACKUP_ID_KEY, check_deleted
from cove.engine._failpoints import failpoint
from cove.engine._inst_metadata import replace_restored, restore_own
from cove.engine._runs import Paths, RunTable
from cove.engine._snapshots import copy_tree, tree_size
from cove.engine.events import EventBus
from cove.engine.operations import Operation, Operations
from cove.model.config import validate_config
from cove.model.errors import BadRequest, Conflict, NotFound
from cove.model.names import validate_instance_name, validate_snapshot_name
from cove.model.projects import instance_key, instance_url, split_key
from cove.model.records import Instance, Snapshot
from cove.model.states import Status
from cove.storage import overlay
from cove.storage._extract import Budget, HashingReader
from cove.storage.safefs import RootFS
from cove.store import Store

__all__ = ["BackupImages", "BackupImports", "ProfileCheck", "ProjectLimits"]

log = logging.getLogger("cove.engine")

_IMPORT = "backup-import-"


class BackupImages(Protocol):
    """What backups need of the images service."""

    def rootfs(self, fingerprint: str) -> Path: ...

    def budget(self, op: Operation) -> Budget: ...

    def template_files(self, fingerprint: str) -> tuple[bytes | None, Path | None]: ...


class ProfileCheck(Protocol):
    def check(self, profiles: list[str], project: str = "default") -> None: ...


class ProjectLimits(Protocol):
    """The projects service: its ``limits.*`` for a new instance."""

    lock: Any

    def check_instance(self, project: str, config: dict[str, str], *,
                       replacing: str | None = None) -> None: ...


class _Sink:
    def update(self, data: bytes) -> None:
        pass


def _no_snapshots(name: str) -> None:
    raise BadRequest(f"snapshot {name!r}: an increment holds no snapshots")


class BackupImports:
    """Imports into one root. Each runs as an operation holding the new (or
    updated) instance's lock (``instance:KEY``)."""

    def __init__(self, *, store: Store, paths: Paths, runs: RunTable, images: BackupImages,
                 profiles: ProfileCheck,
                 validate_devices: Callable[[Any], dict[str, dict[str, str]]],
                 operations: Operations, events: EventBus,
                 clock: Callable[[], float] = time.time,
                 projects: ProjectLimits | None = None) -> None:
        self._store = store
        self._paths = paths
        self._runs = runs
        self._images = images
        self._profiles = profiles
        self._validate_devices = validate_devices
        self._operations = operations
        self._events = events
        self._now = clock
        self._projects = projects

    def import_file(self, path: Path, *, name: str = "", pool: str = "",
                    project: str = "default") -> Operation:
        """Make an instance from the backup tarball at ``path`` (taken over:
        it is removed when the import ends, either way), as an operation.
        ``name`` "" and ``pool`` "": index.yaml's name, cove's pool.

        Raises (before anything is made):
            BadRequest: not a backup, a bad name, a pool other than cove's.
            Conflict: the instance exists.
        """
        try:
            index = read_index(path)
            if index.get("cove_since"):
                return self._apply_increment(path, index, name, project)
            key = self._import_key(index, name, project)
            if pool and pool != POOL:
                raise NotFound(f"Storage pool not found: {pool}")
            snapshots = index.get("snapshots") or []
            if not isinstance(snapshots, list):
                raise BadRequest("backup/index.yaml: 'snapshots' must be a list")
            for s in snapshots:
                validate_snapshot_name(s)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

        def work(op: Operation) -> Instance:
            try:
                return self._import(op, path, key, project, [str(s) for s in snapshots])
            finally:
                path.unlink(missing_ok=True)

        return self._operations.run(work, description="Restoring backup",
                                    resources={"instances": [instance_url(key)]},
                                    lock=f"instance:{key}", project=project,
                                    check=lambda: self._store.check_free(key))

    def _apply_increment(self, path: Path, index: dict[str, Any], name: str,
                         project: str) -> Operation:
        """An increment (``_backup_incremental``) onto the instance imported
        from its base, as an operation. Raises (before anything changes):
        NotFound (no instance), BadRequest (not imported, running, out of order)."""
        plain = validate_instance_name(name or index.get("name"))
        key = instance_key(project, plain)
        inst = self._store.get_instance(key)
        if inst.image:
            raise BadRequest(f"Instance {plain!r} was not imported from a backup: an "
                             "increment applies only onto the chain it follows")
        if inst.status is not Status.STOPPED:
            raise BadRequest(f"Instance {plain!r} is running: stop it to apply an increment")
        since, have = str(index["cove_since"]), inst.config.get(BACKUP_ID_KEY, "")
        if have != since:
            raise BadRequest(f"This increment follows backup {since[:12]}; instance {plain!r} "
                             f"is at {have[:12] or 'no backup'}: apply the chain in order")
        deleted = check_deleted(index.get("cove_deleted"))

        def work(op: Operation) -> Instance:
            try:
                return self._apply(op, path, key, deleted)
            finally:
                path.unlink(missing_ok=True)

        return self._operations.run(work, description="Restoring backup",
                                    resources={"instances": [instance_url(key)]},
                                    lock=f"instance:{key}", project=project)

    def _apply(self, op: Operation, path: Path, key: str, deleted: list[str]) -> Instance:
        d = self._paths.instance_dir(key)
        new, old = d / ".restore-new", d / ".restore-old"  # the snapshot sweep's names
        stage = self._paths.root / "tmp" / f"{_IMPORT}{uuid.uuid4().hex}"
        for leftover in (new, old):
            shutil.rmtree(leftover, ignore_errors=True)
        try:
            op.progress("Copying the upper layer", 0)
            copy_tree(d / "upper", new)
            # deletions first: a directory that became a file is then empty
            # when the file replaces it
            with RootFS(new) as fs:
                for p in deleted:
                    with contextlib.suppress(NotFound):
                        fs.remove("/" + p, recursive=True)
            stage.mkdir(mode=0o700)
            ex = BackupExtractor(stage, self._images.budget(op), _no_snapshots, upper=new)
            try:
                with open(path, "rb") as f:
                    head = f.read(8)
                    f.seek(0)
                    ex.run(HashingReader(f, _Sink(), None), head, "backup")
                index = ex.read_meta("index.yaml") or {}
                conf = index.get("config") or ex.read_meta("container", "backup.yaml") or {}
            finally:
                ex.close()
            inst = self._store.get_instance(key)
            c = conf.get("container") if isinstance(conf, dict) else None
            settings = self._settings(c, inst.project, "container") if isinstance(c, dict) \
                else {}
            with self._runs.mutex(key):
                if self._runs.mount_refs.get(key, 0):
                    raise Conflict("The instance's files are in use; try again")
                overlay.umount(d / "rootfs")
                os.rename(d / "upper", old)
                failpoint("backup-apply.after-old")
                os.rename(new, d / "upper")
                shutil.rmtree(d / "work", ignore_errors=True)
                (d / "work").mkdir(mode=0o700)
            # its metadata and templates (the increment has them whole); before
            # the row, so a kill here leaves the increment to apply again
            replace_restored(stage / "meta" / "backup" / "container", d)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            shutil.rmtree(new, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
        volatile = {k: v for k, v in inst.config.items() if k.startswith("volatile.")}
        inst.config = {**{k: v for k, v in settings.get("config", inst.config).items()
                          if not k.startswith("volatile.")}, **volatile,
                       BACKUP_ID_KEY: str(index.get("cove_backup_id") or "")}
        inst.devices = settings.get("devices", inst.devices)
        inst.profiles = settings.get("profiles", inst.profiles)
        self._store.update_instance(inst)
        self._events.lifecycle("instance-updated", instance_url(key), project=inst.project)
        return inst

    def _import_key(self, index: dict[str, Any], name: str, project: str) -> str:
        if index.get("type", "container") != "container":
            raise BadRequest("Only container backups can be imported: cove runs containers")
        if index.get("optimized"):
            raise BadRequest(f"An optimized backup (made with --optimized-storage on a "
                             f"{index.get('backend') or 'storage'} pool) holds that driver's "
                             "own format; cove imports the plain (dir) one")
        plain = name or index.get("name")
        if not isinstance(plain, str):
            raise BadRequest("backup/index.yaml: 'name' must be a string")
        validate_instance_name(plain)
        key = instance_key(project, plain)
        self._store.check_free(key)
        return key

    def _import(self, op: Operation, path: Path, key: str, project: str,
                snapshots: list[str]) -> Instance:
        stage = self._paths.root / "tmp" / f"{_IMPORT}{uuid.uuid4().hex}"
        stage.mkdir(mode=0o700)
        try:
            op.progress("Unpacking the backup", 0)
            allowed = set(snapshots)

            def check_snapshot(s: str) -> None:
                validate_snapshot_name(s)
                if s not in allowed:
                    raise BadRequest(f"snapshot {s!r} is not listed in backup/index.yaml")

            extractor = BackupExtractor(stage, self._images.budget(op), check_snapshot)
            try:
                with open(path, "rb") as f:
                    head = f.read(8)
                    f.seek(0)
                    extractor.run(HashingReader(f, _Sink(), None), head, "backup")
                failpoint("backup-import.after-unpack")
                inst, snaps = self._records(extractor, key, project, snapshots)
            finally:
                extractor.close()
            missing = [s for s in snapshots if s not in extractor.snapshots]
            if missing:
                raise BadRequest(f"snapshot {missing[0]!r} is listed in backup/index.yaml "
                                 "but its rootfs is not in the archive")
            return self._commit(op, stage, inst, snaps)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def _records(self, ex: BackupExtractor, key: str, project: str,
                 snapshots: list[str]) -> tuple[Instance, list[Snapshot]]:
        index = ex.read_meta("index.yaml") or {}
        conf = index.get("config") or ex.read_meta("container", "backup.yaml")
        if not isinstance(conf, dict) or not isinstance(conf.get("container"), dict):
            raise BadRequest("backup: no instance config (backup/index.yaml 'config' or "
                             "backup/container/backup.yaml)")
        c = conf["container"]
        inst = Instance(name=key, image="", project=project, status=Status.STOPPED,
                        created_at=self._now(), **self._settings(c, project, "container"))
        inst.config[BACKUP_ID_KEY] = str(index.get("cove_backup_id") or "")
        snap_confs = {s.get("name"): s for s in conf.get("snapshots") or []
                      if isinstance(s, dict)}
        snaps = []
        for i, s in enumerate(snapshots):
            sc = snap_confs.get(s) or ((ex.read_meta("snapshots", s, "backup.yaml") or {})
                                       .get("container")) or {}
            settings = self._settings(sc, project, f"snapshot {s}") if sc else {}
            settings.pop("description", None)
            snaps.append(Snapshot(instance=key, name=s, dir=uuid.uuid4().hex,
                                  created_at=inst.created_at - len(snapshots) + i,
                                  **settings))
        return inst, snaps

    def _settings(self, c: dict[str, Any], project: str, what: str) -> dict[str, Any]:
        """Config, devices, profiles... of a backup.yaml object, checked."""
        raw = c.get("devices") or {}
        if isinstance(raw, dict):
            # LXD moves the root disk to the pool it restores into
            raw = {k: ({**v, "pool": POOL} if isinstance(v, dict) and v.get("type") == "disk"
                       and v.get("path") == "/" and "pool" in v else v)
                   for k, v in raw.items()}
        try:
            config = validate_config(c.get("config") or {})
            devices = self._validate_devices(raw)
        except BadRequest as exc:
            raise BadRequest(f"backup ({what}): {exc.message}") from None
        profiles = c.get("profiles")
        if profiles is None:
            profiles = ["default"]
        if not isinstance(profiles, list) or not all(isinstance(p, str) for p in profiles):
            raise BadRequest(f"backup ({what}): 'profiles' must be a list of names")
        self._profiles.check(profiles, project)
        arch = c.get("architecture") or "x86_64"
        return {"config": config, "devices": devices, "profiles": list(profiles),
                "ephemeral": bool(c.get("ephemeral")), "architecture": str(arch),
                "description": str(c.get("description") or "")}

    def _commit(self, op: Operation, stage: Path, inst: Instance,
                snaps: list[Snapshot]) -> Instance:
        """Move the unpacked trees into place as the instance (see module note)."""
        key = inst.name
        new = stage / "instance"
        new.mkdir(mode=0o700)
        os.rename(stage / "upper", new / "upper")
        os.chmod(new / "upper", 0o755)
        for sub, mode in (("work", 0o700), ("rootfs", 0o755), ("snapshots", 0o700)):
            (new / sub).mkdir(mode=mode)
        restore_own(stage / "meta" / "backup" / "container", new)  # metadata.yaml, templates/
        for s in snaps:
            (new / "snapshots" / s.dir).mkdir(mode=0o700)
            os.rename(stage / "snapshots" / s.name, new / "snapshots" / s.dir / "upper")
            # its own (if only {}): not the instance's, as for a snapshot taken here
            restore_own(stage / "meta" / "backup" / "snapshots" / s.name,
                        new / "snapshots" / s.dir, always=True)
        d = self._paths.instance_dir(key)
        if d.exists():  # left by a crash; no row owns it
            shutil.rmtree(d)
        op.progress("Creating the instance", 90)
        for s in snaps:  # what ``lxc info`` shows, as for a snapshot taken here
            s.size = tree_size(new / "snapshots" / s.dir / "upper")
        os.rename(new, d)
        self._store.backups.begin_import(key)
        failpoint("backup-import.after-begin")
        try:
            with self._projects.lock if self._projects else contextlib.nullcontext():
                if self._projects is not None:  # limits.instances, limits.memory...
                    self._projects.check_instance(inst.project, inst.config)
                self._store.add_instance(inst)
            for s in snaps:
                self._store.snapshots.add(s)
            failpoint("backup-import.after-rows")
        except BaseException:
            self._undo_import(key)
            raise
        self._store.backups.end_import(key)
        self._events.lifecycle("instance-created", instance_url(key),
                               project=split_key(key)[0])
        return inst

    def _undo_import(self, key: str) -> None:
        self._store.delete_instance(key)
        shutil.rmtree(self._paths.instance_dir(key), ignore_errors=True)
        self._store.backups.end_import(key)

    def sweep(self) -> None:
        """Remove the half-made imports a killed coved left (``backup_imports``
        names them). At startup. Idempotent."""
        for key in self._store.backups.pending_imports():
            log.info("removing the half-made import of %s", key)
            for s in self._store.snapshots.all(key):
                self._store.snapshots.delete(s.instance, s.name)
            self._undo_import(key)
