"""Copies of instances (``POST /1.0/instances`` with ``source.type: copy``)
and rebuilds (``POST /1.0/instances/NAME/rebuild``).

Design notes:

* What a copy is. An instance is its image's shared read-only layers under
  its own ``upper/`` (``_rootfs``); a copy lies on the same image with a
  copy of the source's upper layer, and of each snapshot's (unless
  ``instance_only``), made with the snapshots' copier (``copy_tree``:
  ``cp -a --reflink=auto``, whiteouts and xattrs kept). A snapshot as source
  (``c1/snap0``) gives its upper layer and its settings.
* What it gets, as LXD 5.0 (``createFromCopy``): the source's own config
  without its ``volatile.*`` keys (but ``volatile.base_image``), overlaid
  by the request's; its own devices, overlaid by the request's; its
  profiles unless the request lists some. Its MAC and addresses are its
  own (cove derives a MAC from the instance's name, and leases are made at
  start); ``volatile.last_state.*`` is not carried. The request's
  ``description`` and ``ephemeral`` are the copy's (``lxc copy`` sends the
  source's). Its image's ``copy`` templates are applied at its first start
  (``volatile.apply_template: copy``, as LXD; ``_templates``), a rebuild's
  ``create`` ones.
* Consistency. A running source's upper layer is copied with its cgroup
  frozen, as a snapshot is; the operation holds the source's lock and the
  target's, so no stop, restore or delete of the source overlaps it.
* Crash safety. The copy is made whole in ``instances/.copy-ID`` (no
  instance has a ``.`` in its name, so the startup sweep removes it as a
  directory no row owns), renamed to the target's directory, and only then
  are its row and its snapshots' rows added, in one transaction. A coved
  killed anywhere leaves the copy whole or absent; the source is only read.
* Rebuild (LXD's ``instances_rebuild``): a stopped instance gets a new,
  empty upper layer on another image (or on none: an empty root
  filesystem) and that image's ``image.*`` keys and ``volatile.base_image``;
  name, config, devices, profiles and snapshots stay (a snapshot keeps the
  image it was taken on, and a restore takes it back). A rebuild is
  idempotent once its target is known, so it is crash-only: the intent
  (image and config) is recorded in the store first, then the upper layers
  are swapped (the restore's ``.restore-new``/``.restore-old``), then the
  row is updated and the intent dropped. At startup ``sweep`` does again
  every rebuild whose intent is still recorded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol

from cove.api import InstanceSource, InstancesPost
from cove.engine._failpoints import failpoint
from cove.engine._inst_metadata import copy_own, copy_snapshot_own, drop_own, snapshot_source
from cove.engine._runs import Paths, RunTable
from cove.engine._snapshots import Freezer, copy_progress, copy_tree, swap_upper, tree_size
from cove.engine.events import EventBus
from cove.engine.operations import Operation, Operations
from cove.engine.ports import ImageSource, ProfileSource, ProjectSource
from cove.model import config as cfg
from cove.model.errors import BadRequest, NoSpace, NotFound
from cove.model.names import validate_instance_name
from cove.model.projects import DEFAULT, instance_key, instance_url, split_key
from cove.model.records import Instance, Snapshot
from cove.model.states import Status
from cove.model.templates import TRIGGER_KEY
from cove.store import Store

__all__ = ["Copies", "CopyTarget"]

log = logging.getLogger("cove.engine")

_TMP = ".copy-"
_NEW, _OLD = ".restore-new", ".restore-old"  # the restore's names: its sweep finishes a swap
_STAGE = "Copying the upper layer"
_INTENT = "pending-rebuild:"  # meta keys: a rebuild recorded, maybe not done


class CopyTarget(Protocol):
    """What copies and rebuilds need of the instances service."""

    def validate_devices(self, devices: Any) -> dict[str, dict[str, str]]:
        """The shape check of a devices object. Raises: BadRequest."""
        ...

    def check_expansion(self, inst: Instance, config: dict[str, str],
                        devices: dict[str, dict[str, str]]) -> None:
        """Raises BadRequest or Conflict if ``inst`` cannot run so."""
        ...

    def start_now(self, name: str) -> None:
        """Start the stopped instance keyed ``name`` (caller holds its lock)."""
        ...


def _carried(config: dict[str, str]) -> dict[str, str]:
    """The source's config a copy keeps (LXD's ``InstanceIncludeWhenCopying``)."""
    return {k: v for k, v in config.items()
            if not k.startswith("volatile.") or k == "volatile.base_image"}


class _Source:
    """What a copy is made from: an instance, or one of its snapshots."""

    def __init__(self, key: str, inst: Instance, snap: Snapshot | None) -> None:
        self.key, self.inst, self.snap = key, inst, snap

    @property
    def url(self) -> str:
        if self.snap is None:
            return instance_url(self.key)
        return instance_url(self.key, f"/snapshots/{self.snap.name}")

    @property
    def config(self) -> dict[str, str]:
        return dict(self.snap.config if self.snap else self.inst.config)

    @property
    def devices(self) -> dict[str, dict[str, str]]:
        devs = self.snap.devices if self.snap else self.inst.devices
        return {k: dict(v) for k, v in devs.items()}

    @property
    def profiles(self) -> list[str]:
        return list(self.snap.profiles if self.snap else self.inst.profiles)

    @property
    def image(self) -> str:
        return self.snap.image if self.snap else self.inst.image


class Copies:
    """Copies and rebuilds of one root's instances. Thread-safe: each runs
    as an operation holding the locks of the instances it touches."""

    def __init__(self, *, store: Store, paths: Paths, runs: RunTable, runtime: Freezer,
                 instances: CopyTarget, images: ImageSource, profiles: ProfileSource,
                 operations: Operations, events: EventBus, clock: Callable[[], float],
                 projects: ProjectSource | None = None) -> None:
        self._store = store
        self._paths = paths
        self._runs = runs
        self._runtime = runtime
        self._instances = instances
        self._images = images
        self._profiles = profiles
        self._operations = operations
        self._events = events
        self._now = clock
        self._projects = projects

    def _key(self, name: str, project: str) -> str:
        if project != DEFAULT and self._projects is not None:
            self._projects.check(project)
        if "_" in name:
            raise NotFound(f"Instance not found: {name}")
        return instance_key(project, name)

    # -- copy -----------------------------------------------------------------
    def _source(self, source: InstanceSource, project: str) -> _Source:
        """The instance or snapshot ``source`` names. Raises: BadRequest, NotFound."""
        if not source.source:
            raise BadRequest("Must specify a source instance")
        if source.refresh:
            raise BadRequest("Refreshing an existing instance (source.refresh) is not "
                             "supported: delete the target and copy again")
        owner, _, snapshot = source.source.partition("/")
        key = self._key(owner, source.project or project)
        inst = self._store.get_instance(key)
        snap = self._store.snapshots.get(key, snapshot) if snapshot else None
        return _Source(key, inst, snap)

    def copy(self, req: InstancesPost, *, project: str = DEFAULT) -> Operation:
        """Make instance ``req.name`` of ``project`` a copy of
        ``req.source.source`` (an instance or ``INSTANCE/SNAPSHOT``, of
        ``req.source.project`` or ``project``), as an operation; started if
        ``req.start``. Not idempotent.

        Raises:
            BadRequest: a bad name, config key or device; no source named;
                ``refresh``.
            NotFound: the source, a project or a profile does not exist.
            Conflict: the name is taken, or the source or target is busy.
        """
        src = self._source(req.source, project)  # first, as LXD: a missing source is a 404
        key = self._key(validate_instance_name(req.name), project)
        self._store.check_free(key)
        config = cfg.validate_config({**_carried(src.config), **(req.config or {})})
        config.setdefault(TRIGGER_KEY, "copy")  # the image's templates, at its first start
        devices = {**src.devices, **self._instances.validate_devices(req.devices)}
        profiles = src.profiles if req.profiles is None else list(req.profiles)
        self._profiles.check(profiles, project)
        probe = Instance(name=key, image=src.image, profiles=[], project=project)
        self._instances.check_expansion(
            probe, self._profiles.expand_config(profiles, config, project),
            self._profiles.expand(profiles, devices, project))
        if self._projects is not None:
            self._projects.check_instance(project, config)
        with_snapshots = not (req.source.instance_only or req.source.container_only) \
            and src.snap is None
        inst = Instance(name=key, image=src.image, config=config, devices=devices,
                        profiles=profiles, description=req.description or "",
                        ephemeral=bool(req.ephemeral), status=Status.STOPPED,
                        architecture=src.inst.architecture if src.snap is None
                        else src.snap.architecture, project=project)

        def work(op: Operation) -> Instance:
            current = _Source(src.key, self._store.get_instance(src.key), src.snap)
            if src.snap is not None:  # deleted since: the lock was not held then
                current.snap = self._store.snapshots.get(src.key, src.snap.name)
            self._make(op, current, inst, with_snapshots)
            if req.start:
                op.progress("Starting instance")
                self._instances.start_now(key)
            return inst

        resources = {"instances": [instance_url(key), src.url]}
        resources["containers"] = list(resources["instances"])
        return self._operations.run(work, description="Creating instance",
                                    resources=resources, project=project,
                                    lock=(f"instance:{key}", f"instance:{src.key}"),
                                    check=lambda: self._store.check_free(key))

    def _make(self, op: Operation, src: _Source, inst: Instance, with_snapshots: bool) -> None:
        """Copy the files into a temporary directory, rename it into place,
        then add the rows (see module note)."""
        root = self._paths.instance_dir(inst.name).parent
        tmp = root / f"{_TMP}{uuid.uuid4().hex}"
        final = self._paths.instance_dir(inst.name)
        snaps: list[Snapshot] = []
        with ExitStack() as undo:
            tmp.mkdir(mode=0o700)
            undo.callback(shutil.rmtree, tmp, True)
            (tmp / "work").mkdir(mode=0o700)
            (tmp / "rootfs").mkdir(mode=0o755)
            self._check_room(src, root, with_snapshots)
            if with_snapshots:
                snaps = self._copy_snapshots(op, src.key, inst.name, tmp / "snapshots")
            self._copy_upper(op, src, tmp / "upper")
            d = self._paths.instance_dir(src.key)  # its (or the snapshot's) metadata, templates
            copy_own(snapshot_source(d, d / "snapshots" / src.snap.dir) if src.snap else d, tmp)
            failpoint("copy.after-files")
            if final.exists():  # left by a crash; no row owns it
                shutil.rmtree(final)
            os.rename(tmp, final)
            undo.pop_all()
            undo.callback(shutil.rmtree, final, True)
            failpoint("copy.after-rename")  # a directory no row owns: the sweep's
            inst.created_at = self._now()
            self._store.add_instance(inst, snaps)
            undo.pop_all()
        failpoint("copy.after-row")
        self._images.mark_used(inst.image)
        op.progress(_STAGE, 100)
        self._events.lifecycle("instance-created", instance_url(inst.name),
                               project=split_key(inst.name)[0])

    def _check_room(self, src: _Source, root: Path, with_snapshots: bool) -> None:
        """Refuse a copy that cannot fit before copying a byte (``cp`` says
        why it failed in words only). Raises: NoSpace."""
        d = self._paths.instance_dir(src.key)
        trees = [d / "snapshots" / src.snap.dir / "upper" if src.snap else d / "upper"]
        if with_snapshots:
            trees += [d / "snapshots" / s.dir / "upper"
                      for s in self._store.snapshots.all(src.key)]
        need = sum(tree_size(t) for t in trees if t.is_dir())
        st = os.statvfs(root)
        if need > st.f_bavail * st.f_frsize:
            raise NoSpace(f"No space left on the device holding the cove root: the copy "
                          f"needs {need} bytes, {st.f_bavail * st.f_frsize} are free")

    def _copy_upper(self, op: Operation, src: _Source, dst: Path) -> None:
        d = self._paths.instance_dir(src.key)
        upper = d / "snapshots" / src.snap.dir / "upper" if src.snap else d / "upper"
        total = tree_size(upper)  # before any freeze: only for the progress
        op.progress(_STAGE, 0, f"0 of {total} bytes")
        freeze = src.snap is None and src.inst.status is Status.RUNNING \
            and self._runs.pid(src.key) > 0
        if freeze:  # a frozen source stays as it is; a running one is frozen for the copy
            self._runtime.pause(src.key)
        try:
            with copy_progress(op, dst, total):
                copy_tree(upper, dst)
        finally:
            if freeze:
                self._runtime.resume(src.key)

    def _copy_snapshots(self, op: Operation, src_key: str, key: str,
                        sdir: Path) -> list[Snapshot]:
        """Each of the source's snapshots, under new ids; their rows, unsaved."""
        out: list[Snapshot] = []
        sdir.mkdir(mode=0o700)
        origin = self._paths.instance_dir(src_key) / "snapshots"
        for snap in self._store.snapshots.all(src_key):
            op.progress("Copying snapshots", None, snap.name)
            sid = uuid.uuid4().hex
            (sdir / sid).mkdir(mode=0o700)
            copy_tree(origin / snap.dir / "upper", sdir / sid / "upper")
            copy_snapshot_own(origin / snap.dir, sdir / sid)
            out.append(Snapshot(
                instance=key, name=snap.name, dir=sid, created_at=snap.created_at,
                expires_at=snap.expires_at, description=snap.description,
                config=dict(snap.config), devices={k: dict(v) for k, v in snap.devices.items()},
                profiles=list(snap.profiles), ephemeral=snap.ephemeral,
                architecture=snap.architecture, image=snap.image, size=snap.size))
        return out

    # -- rebuild --------------------------------------------------------------
    def rebuild(self, name: str, source: InstanceSource, *,
                project: str = DEFAULT) -> Operation:
        """Give the stopped instance a new, empty upper layer on the image
        ``source`` names (type ``none``: on no image), as an operation. Not
        idempotent (what the instance wrote is lost).

        Raises:
            BadRequest: the instance runs; a bad source.
            NotFound: the instance or the image does not exist.
            Conflict: the instance is busy.
        """
        key = self._key(name, project)
        if self._store.get_instance(key).status is not Status.STOPPED:
            raise BadRequest("Instance must be stopped to be rebuilt")
        fingerprint = ""
        if source.type not in ("", "none"):
            fingerprint = self._images.resolve(source.image_ref(), project=project).fingerprint

        def work(op: Operation) -> None:
            inst = self._store.get_instance(key)
            if inst.status is not Status.STOPPED:
                raise BadRequest("Instance must be stopped to be rebuilt")
            if fingerprint:
                self._images.rootfs(fingerprint)  # the layers exist (unpacked)
            config = {k: v for k, v in inst.config.items()
                      if not k.startswith("image.") and k != "volatile.base_image"
                      and not k.startswith("volatile.last_state.")}
            img = self._images.find(fingerprint) if fingerprint else None
            if img is not None:
                config.update({f"image.{k}": v for k, v in img.properties.items()})
            if fingerprint:
                config["volatile.base_image"] = fingerprint
            config.setdefault(TRIGGER_KEY, "create")  # made anew, as LXD: at next start
            self._store.set_meta(_INTENT + key,
                                 json.dumps({"image": fingerprint, "config": config}))
            failpoint("rebuild.after-intent")
            self._finish_rebuild(key, fingerprint, config)
            if fingerprint:
                self._images.mark_used(fingerprint)
            # LXD sends no event of its own for a rebuild; its config changed
            self._events.lifecycle("instance-updated", instance_url(key),
                                   project=split_key(key)[0])

        return self._operations.run(
            work, description="Rebuilding instance", project=split_key(key)[0],
            resources={"instances": [instance_url(key)]}, lock=f"instance:{key}")

    def _finish_rebuild(self, key: str, fingerprint: str, config: dict[str, str]) -> None:
        """The recorded rebuild of ``key``: a fresh empty upper layer, the
        row, the intent dropped. Idempotent."""
        inst = self._store.get_instance(key)
        old_image = inst.image
        self._swap_empty_upper(key)
        drop_own(self._paths.instance_dir(key))  # the new image's metadata, as LXD
        failpoint("rebuild.after-swap")
        inst.config = config
        self._store.update_instance(inst)
        self._store.set_instance_image(key, fingerprint)
        self._store.delete_meta(_INTENT + key)
        if old_image and old_image != fingerprint:
            try:
                self._images.collect(old_image)
            except Exception:
                log.exception("collecting the layers of image %s", old_image[:12])

    def sweep(self) -> None:
        """At startup, before anything starts: do again the rebuilds a
        killed coved left recorded (see module note). Idempotent."""
        for key, raw in self._store.meta_with_prefix(_INTENT).items():
            try:
                intent = json.loads(raw)
                log.info("finishing the interrupted rebuild of %s", key)
                self._finish_rebuild(key, str(intent["image"]), dict(intent["config"]))
            except NotFound:  # the instance went: nothing to finish
                self._store.delete_meta(_INTENT + key)
            except (ValueError, KeyError, TypeError):
                log.exception("dropping an unreadable rebuild intent of %s", key)
                self._store.delete_meta(_INTENT + key)

    def _swap_empty_upper(self, key: str) -> None:
        d = self._paths.instance_dir(key)
        new, old = d / _NEW, d / _OLD
        for leftover in (new, old):
            shutil.rmtree(leftover, ignore_errors=True)
        new.mkdir(mode=0o755)
        swap_upper(self._paths, self._runs, key, new, "rebuild.after-old")
