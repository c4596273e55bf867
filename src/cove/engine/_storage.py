"""Storage: the root's one pool, its custom volumes, and instances' disk devices.

Design note: cove has one storage pool, ``default``, of driver ``dir``
whose source is the cove root. ``dir`` is what it is, whatever the
filesystem under the root (ext4, xfs, btrfs): an instance's rootfs is an
overlay upper layer in a plain directory and a custom volume is a plain
directory, with none of the snapshots, clones or quotas a ``btrfs`` or
``zfs`` pool promises, so naming those would mislead a client. As in LXD's
``dir`` driver, a volume's ``size`` is recorded but only enforced where the
filesystem has project quotas, which cove does not set up (so: never, for
now; ``GET .../resources`` reports the filesystem's real space).

A custom volume lives in ``<root>/storage/custom/<dir>/`` (0711, root), where
``dir`` is the name (``<project>_<name>`` outside the default project, as
LXD). Each change is crash-only: a create records the row before making the
directory, a delete removes the row before the directory, a rename renames
the row, then the directory, then records the new ``dir``; ``sweep`` at
startup finishes whatever a killed daemon left (a missing directory is made,
a rename is completed, a directory no row owns is removed).

Disk devices become bind mounts in the runtime spec, inside the container's
mount namespace, so they leave nothing on the host. The mount target inside
the rootfs is hostile (a symlink planted at ``/data`` pointing at ``/etc``
or ``../../..``): it is made and resolved with ``safefs.RootFS``
(``openat2(RESOLVE_IN_ROOT)``) while the container is not yet running, and
runc is handed the resolved, symlink-free path, so the mount lands inside
the container's root whatever the image or the last run planted. A target
that resolves to the root itself is refused. A disk added to or removed from
a running instance is mounted or unmounted at once (``apply_disks``, through
``host.mountns``: the new mount API, no path the container could race).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from cove.engine.events import EventBus
from cove.engine.ports import DeviceSource
from cove.host import mountns
from cove.model.disks import (
    DEFAULT_POOL,
    Disk,
    Volume,
    disk_from_device,
    validate_volume_config,
    validate_volume_name,
)
from cove.model.errors import BadRequest, Conflict, CoveError, NotFound
from cove.model.projects import display_name, instance_url
from cove.model.records import Instance
from cove.model.states import Status
from cove.storage.safefs import RootFS
from cove.store import Store

__all__ = ["Storage", "disks_of"]

log = logging.getLogger("cove.engine")

_TYPES = ("custom",)


def disks_of(devices: dict[str, dict[str, str]]) -> list[Disk]:
    """The non-root disk devices among ``devices``, checked, by device name.

    Raises:
        BadRequest: a bad disk device.
    """
    out = []
    for name in sorted(devices):
        dev = devices[name]
        if dev.get("type") == "disk":
            disk = disk_from_device(name, dev)
            if disk is not None:
                out.append(disk)
    return out


def _volume_url(v: Volume) -> str:
    url = f"/1.0/storage-pools/{v.pool}/volumes/custom/{v.name}"
    return url if v.project == "default" else f"{url}?project={v.project}"


class Storage:
    """The default pool and its custom volumes. Thread-safe (one lock for
    volume changes; reads go to the store)."""

    def __init__(self, root: Path, store: Store, profiles: DeviceSource, events: EventBus,
                 clock: Callable[[], float]) -> None:
        self._root = root
        self._custom = root / "storage" / "custom"
        self._store = store
        self._profiles = profiles
        self._events = events
        self._now = clock
        self._lock = threading.Lock()
        self._owner_of: Callable[[str], str] | None = None
        for d in (root / "storage", self._custom):
            d.mkdir(mode=0o711, exist_ok=True)
            os.chmod(d, 0o711)

    def bind_projects(self, owner_of: Callable[[str], str]) -> None:
        """Hand over the projects' answer to "whose custom volumes does project
        P use" (``features.storage.volumes``: its own, or the default's)."""
        self._owner_of = owner_of

    def owner(self, project: str) -> str:
        """The project whose volumes ``project`` uses; every call that takes a
        project resolves it through this first (LXD's rule). Raises: NotFound."""
        if project == "default" or self._owner_of is None:
            return project
        return self._owner_of(project)

    # -- the pool ---------------------------------------------------------------
    def pool_names(self) -> list[str]:
        """The pools there are: ``default``."""
        return [DEFAULT_POOL]

    def _check_pool(self, pool: str) -> None:
        if pool != DEFAULT_POOL:
            raise NotFound(f"Storage pool not found: {pool}")

    def pool(self, name: str) -> dict[str, Any]:
        """LXD's ``StoragePool`` (without ``used_by``). Raises: NotFound."""
        self._check_pool(name)
        return {"name": name, "driver": "dir", "status": "Created", "locations": ["none"],
                "description": "The cove root's pool (a directory on its filesystem)",
                "config": {"source": str(self._root)}}

    def pool_used_by(self, name: str) -> list[str]:
        """Instances (their root disks are on it) and custom volumes. Raises: NotFound."""
        self._check_pool(name)
        urls = [instance_url(i.name) for i in self._store.list_instances()]
        urls += [_volume_url(v) for v in self._store.volumes.all(name, project=None)]
        return urls

    def pool_resources(self, name: str) -> dict[str, Any]:
        """LXD's ``ResourcesStoragePool``: the root filesystem's space and inodes.
        Raises: NotFound."""
        self._check_pool(name)
        s = os.statvfs(self._root)
        return {"space": {"used": (s.f_blocks - s.f_bfree) * s.f_frsize,
                          "total": s.f_blocks * s.f_frsize},
                "inodes": {"used": s.f_files - s.f_ffree, "total": s.f_files}}

    # -- volumes ----------------------------------------------------------------
    def volumes(self, pool: str, *, project: str = "default") -> list[Volume]:
        """The custom volumes of ``pool`` in ``project``. Raises: NotFound (pool)."""
        project = self.owner(project)
        self._check_pool(pool)
        return self._store.volumes.all(pool, project=project)

    def volume(self, pool: str, name: str, *, type: str = "custom",
               project: str = "default") -> Volume:
        """Raises: NotFound (pool, or volume), BadRequest (a type cove has not)."""
        project = self.owner(project)
        self._check_pool(pool)
        _check_type(type)
        return self._store.volumes.get(pool, name, project=project)

    def volume_used_by(self, pool: str, name: str, *, project: str = "default") -> list[str]:
        """Instances whose (expanded) devices mount the volume. Raises: NotFound."""
        project = self.owner(project)
        self.volume(pool, name, project=project)
        return [instance_url(i.name)
                for i, _ in self._users(pool, name, project)]

    def instance_volumes(self, pool: str, *, project: str = "default") -> list[Instance]:
        """The instances whose root filesystems live on ``pool`` (LXD's
        ``container`` volumes): all of them, on cove's one pool. Raises: NotFound."""
        self._check_pool(pool)
        return [i for i in self._store.list_instances(project)]

    def _users(self, pool: str, name: str, project: str) -> list[tuple[Instance, list[str]]]:
        """(instance, its device names) for each instance using the volume."""
        out = []
        for inst in self._store.list_instances():
            if self.owner(_project_of(inst)) != project:
                continue
            devices = self._profiles.expanded_devices(inst)
            names = [dev for dev, d in devices.items()
                     if d.get("type") == "disk" and d.get("pool") == pool
                     and d.get("source", "").removeprefix("custom/") == name]
            if names:
                out.append((inst, names))
        return out

    def _dir_for(self, name: str, project: str) -> str:
        return name if project == "default" else f"{project}_{name}"

    def _check_dir_free(self, vol: Volume) -> None:
        """``<project>_<name>`` can be spelt two ways when a project's name
        holds ``_``; a directory another volume owns is never reused.
        Raises: Conflict."""
        for other in self._store.volumes.all(project=None):
            if other.dir == vol.dir and (other.project, other.name) != (vol.project, vol.name):
                raise Conflict(f"Storage volume {vol.name!r}: its directory {vol.dir} belongs "
                               f"to volume {other.name!r} of project {other.project!r}")

    def create_volume(self, pool: str, name: str, *, type: str = "custom",
                      description: str = "", config: dict[str, Any] | None = None,
                      content_type: str = "filesystem", project: str = "default") -> Volume:
        """Make an empty custom volume. Not idempotent.

        Raises:
            NotFound: no such pool.
            BadRequest: a bad name, type, content type or config key.
            Conflict: the name is taken.
        """
        project = self.owner(project)
        self._check_pool(pool)
        _check_type(type)
        validate_volume_name(name)
        if content_type not in ("", "filesystem"):
            raise BadRequest(f"Invalid content_type {content_type!r}: cove's volumes are "
                             "filesystem volumes (no block volumes)")
        conf = validate_volume_config(config or {})
        vol = Volume(name=name, project=project, pool=pool, description=description,
                     config=conf, created_at=self._now(), dir=self._dir_for(name, project))
        with self._lock:
            self._check_dir_free(vol)
            self._store.volumes.add(vol)  # Conflict before anything is made
            try:
                d = self._custom / vol.dir
                if d.exists():  # left by a crash; no row owns it (checked above)
                    shutil.rmtree(d)
                d.mkdir(mode=0o711)
                os.chmod(d, 0o711)
            except BaseException:
                self._store.volumes.delete(pool, name, project=project)
                raise
        self._events.lifecycle("storage-volume-created", _volume_url(vol), type="custom")
        return vol

    def update_volume(self, pool: str, name: str, *, type: str = "custom",
                      description: str | None = None, config: dict[str, Any] | None = None,
                      patch: bool = False, project: str = "default") -> Volume:
        """Replace (PUT) or merge (PATCH) description and config.

        Raises:
            NotFound: no such pool or volume.  BadRequest: a bad config key or value.
        """
        project = self.owner(project)
        with self._lock:
            vol = self.volume(pool, name, type=type, project=project)
            if config is not None:
                new = {**vol.config, **config} if patch else dict(config)
                vol.config = {k: v for k, v in validate_volume_config(new).items()
                              if not (patch and v == "")}
            if description is not None:
                vol.description = description
            self._store.volumes.update(vol)
        self._events.lifecycle("storage-volume-updated", _volume_url(vol))
        return vol

    def rename_volume(self, pool: str, name: str, new_name: str, *, type: str = "custom",
                      project: str = "default") -> Volume:
        """Rename a volume and the instance devices that name it (as LXD).

        Raises:
            NotFound: no such pool or volume.
            BadRequest: a bad new name; a running instance or a profile uses it.
            Conflict: the new name is taken.
        """
        project = self.owner(project)
        validate_volume_name(new_name)
        with self._lock:
            vol = self.volume(pool, name, type=type, project=project)
            users = self._users(pool, name, project)
            for inst, devs in users:
                if inst.status is not Status.STOPPED:
                    raise BadRequest("Volume is still in use by running instances")
                if any(d not in inst.devices for d in devs):
                    raise BadRequest(f"Volume is used through a profile by {display_name(inst.name)}: "
                                     "detach it there first")
            self._check_dir_free(Volume(name=new_name, project=project,
                                        dir=self._dir_for(new_name, project)))
            self._store.volumes.rename(pool, name, new_name, project=project)
            for inst, devs in users:
                for d in devs:
                    inst.devices[d] = {**inst.devices[d], "source": new_name}
                self._store.update_instance(inst)
            vol.name = new_name
            self._finish_rename(vol)
        self._events.lifecycle("storage-volume-renamed", _volume_url(vol), old_name=name)
        return vol

    def _finish_rename(self, vol: Volume) -> None:
        want = self._dir_for(vol.name, vol.project)
        if vol.dir != want:
            if (self._custom / vol.dir).exists():
                os.rename(self._custom / vol.dir, self._custom / want)
            vol.dir = want
            self._store.volumes.update(vol)

    def delete_volume(self, pool: str, name: str, *, type: str = "custom",
                      project: str = "default") -> None:
        """Delete a volume and its data. Not idempotent.

        Raises:
            NotFound: no such pool or volume.
            BadRequest: an instance uses it (running or not), as LXD.
        """
        project = self.owner(project)
        with self._lock:
            vol = self.volume(pool, name, type=type, project=project)
            if self._users(pool, name, project):
                raise BadRequest("The storage volume is still in use")
            self._store.volumes.delete(pool, name, project=project)
            shutil.rmtree(self._custom / vol.dir, ignore_errors=True)
        self._events.lifecycle("storage-volume-deleted", _volume_url(vol))

    def sweep(self) -> None:
        """Finish what a killed daemon left half-done (see the module note). Idempotent."""
        with self._lock:
            owned = set()
            for vol in self._store.volumes.all(project=None):
                try:
                    self._finish_rename(vol)
                    d = self._custom / vol.dir
                    d.mkdir(mode=0o711, exist_ok=True)
                except OSError:
                    log.exception("storage volume %s", vol.name)
                owned.add(vol.dir)
            for entry in os.scandir(self._custom):
                if entry.name not in owned:
                    log.warning("removing storage/custom/%s: no volume owns it", entry.name)
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)

    # -- disk devices -----------------------------------------------------------
    def check_disks(self, devices: dict[str, dict[str, str]], *,
                    project: str = "default") -> None:
        """Check disk devices before they are recorded: keys, and that each
        volume exists (a host source is looked at when the instance starts,
        where ``required=false`` may skip it).

        Raises:
            BadRequest: a bad disk device, or two disks on one path.
            NotFound: a volume that does not exist.
        """
        project = self.owner(project)
        seen: dict[str, str] = {}
        for disk in disks_of(devices):
            if disk.path.rstrip("/") in seen:
                raise BadRequest(f"Device {disk.name!r}: path {disk.path} is already used by "
                                 f"device {seen[disk.path.rstrip('/')]!r}")
            seen[disk.path.rstrip("/")] = disk.name
            if disk.is_volume:
                try:
                    self._store.volumes.get(disk.pool, disk.source, project=project)
                except NotFound:
                    raise NotFound(f"Device {disk.name!r}: storage volume {disk.source!r} "
                                   f"not found in pool {disk.pool!r}") from None

    def mounts(self, devices: dict[str, dict[str, str]], rootfs: Path, *,
               project: str = "default") -> tuple[dict[str, Any], ...]:
        """The OCI bind mounts of an instance's disk devices, their targets made
        and resolved inside ``rootfs`` (see the module note). Call before the
        container exists. Targets it makes stay in the upper layer (as LXD's).

        Raises:
            BadRequest: a missing required source, or a target that cannot be
                made or that resolves to the container's root.
            NotFound: a volume that was deleted meanwhile.
        """
        project = self.owner(project)
        out: list[dict[str, Any]] = []
        with RootFS(rootfs) as root:
            for disk in disks_of(devices):
                source = self._source_of(disk, project)
                if source is None:
                    continue
                target = _make_target(root, disk, source.is_dir())
                opts = ["rbind" if disk.recursive else "bind", "rprivate"]
                if disk.readonly:
                    opts.append("ro")
                out.append({"destination": target, "type": "bind", "source": str(source),
                            "options": opts})
        return tuple(out)

    def apply_disks(self, pid: int, rootfs: Path, old: dict[str, dict[str, str]],
                    new: dict[str, dict[str, str]], *, project: str = "default") -> None:
        """Make a running instance's disk mounts follow its devices going from
        ``old`` to ``new`` (both expanded): a removed or changed disk is
        unmounted, an added or changed one mounted (hot-plug, as LXD), in the
        namespace of its init ``pid``. Targets are made and resolved inside
        ``rootfs`` as at start; the mount itself refuses a target the
        container turned into a symlink meanwhile. A failure unmounts what
        this call mounted (a removed disk stays unmounted).

        Raises:
            BadRequest: a source or target that cannot be mounted (named).
            NotFound: a volume that does not exist.
        """
        project = self.owner(project)
        before = {d.name: d for d in disks_of(old)}
        after = {d.name: d for d in disks_of(new)}
        gone = [d for n, d in before.items() if after.get(n) != d]
        came = [d for n, d in after.items() if before.get(n) != d]
        if not gone and not came:
            return
        with RootFS(rootfs) as root, ExitStack() as undo:
            for disk in gone:  # first: a changed disk may keep its path
                try:
                    mountns.unmount_in(pid, root.resolve(disk.path))
                except (NotFound, OSError):
                    pass  # not there (or the instance ended): nothing to take down
            for disk in came:
                source = self._source_of(disk, project)
                if source is None:
                    continue
                target = _make_target(root, disk, source.is_dir())
                try:
                    mountns.bind_into(pid, str(source), target, readonly=disk.readonly,
                                      recursive=disk.recursive)
                except OSError as e:
                    raise BadRequest(f"Device {disk.name!r}: cannot mount {disk.path} in the "
                                     f"running instance: {e.strerror}") from None
                undo.callback(mountns.unmount_in, pid, target)
            undo.pop_all()

    def _source_of(self, disk: Disk, project: str) -> Path | None:
        if disk.is_volume:
            try:
                vol = self._store.volumes.get(disk.pool, disk.source, project=project)
            except NotFound:
                raise NotFound(f"Device {disk.name!r}: storage volume {disk.source!r} not "
                               f"found in pool {disk.pool!r}") from None
            return self._custom / vol.dir
        source = Path(disk.source)
        if not source.exists():
            if not disk.required:
                return None
            raise BadRequest(f"Device {disk.name!r}: missing source path {disk.source} "
                             "(set required=false to skip it)")
        return source


def _make_target(root: RootFS, disk: Disk, is_dir: bool) -> str:
    """Make the mount point (a directory, or an empty file for a file source)
    inside ``root`` and return it resolved, symlinks followed inside the root."""
    try:
        try:
            target = root.resolve(disk.path)
        except NotFound:
            if is_dir:
                root.mkdir(disk.path, parents=True)
            else:
                root.write_file(disk.path, b"", append=True, make_parents=True)
            target = root.resolve(disk.path)
    except CoveError as e:
        raise BadRequest(f"Device {disk.name!r}: cannot make mount point {disk.path} in the "
                         f"instance: {e.message}") from None
    if target == "/":
        raise BadRequest(f"Device {disk.name!r}: path {disk.path} resolves to the instance's "
                         "root directory")
    kind = root.stat(target).type
    if (kind == "directory") != is_dir:
        raise BadRequest(f"Device {disk.name!r}: path {disk.path} is a {kind} in the instance "
                         f"and the source a {'directory' if is_dir else 'file'}")
    return target


def _check_type(type: str) -> None:
    if type not in _TYPES:
        raise BadRequest(f"Invalid storage volume type {type!r}: cove's pool has custom "
                         "volumes only")


def _project_of(inst: Instance) -> str:
    # The projects work adds a project to instances; until then all are default.
    return str(getattr(inst, "project", "default") or "default")
