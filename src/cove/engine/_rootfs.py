"""An instance's root filesystem: its image's layers under its own upper
layer, mounted with overlayfs while anyone uses it.

Design note: a running instance's overlay is mounted only in its own mount
namespaces, never in coved's (``create_in``, on ``host.freshns``): a fresh
namespace cloned from a small base one, where conmon and runc run and the
container pivots into it. So a new container's namespace copies a table that
does not grow with the number running, and the mount goes with the
container (nothing to unmount, after a crash neither). Everything that
reaches a running instance's files goes through ``/proc/PID/root`` of its
init (``held``), which openat2 ``RESOLVE_IN_ROOT`` resolves from.

A running instance's /dev, /dev/shm and /run are directories of one tmpfs
the base namespace holds for all containers (``scratch``), made empty (and
/dev filled as runc would) at each start and removed when the container
ends, as a tmpfs of its own would be; a superblock each fewer.

A stopped instance's overlay is mounted in coved's namespace while someone
uses it (a file access, a stopped exec), refcounted: the first user mounts,
the last unmounts. One overlay per upper layer at a time: a start while a
stopped user holds the mount puts a copy of that very mount (``open_tree``)
in the new namespace instead of mounting a second overlay, and a user that
comes while the instance runs gets ``/proc/PID/root``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cove.engine._runs import Paths, RunTable
from cove.engine.ports import ImageSource
from cove.host import mountns, proc
from cove.host.freshns import BaseNamespace
from cove.model.errors import Conflict, InternalError, NotFound
from cove.model.projects import split_key
from cove.runtime import cgroupfs, devdir
from cove.storage import overlay
from cove.store import Store

__all__ = ["Rootfs"]

log = logging.getLogger(__name__)

# on the shared tmpfs next to the instances' directories (an instance name
# never starts with a dot)
_SKELETON = ".cgroupfs"


class Rootfs:
    def __init__(self, paths: Paths, runs: RunTable, store: Store,
                 images: ImageSource) -> None:
        self._paths = paths
        self._runs = runs
        self._store = store
        self._images = images
        self._scratch = str(paths.root / "run" / "scratch")
        self._base = BaseNamespace(str(paths.root / "instances"), scratch=self._scratch)

    def _lowers(self, name: str, image: str | None = None) -> list[Path]:
        if image is None:
            image = self._store.get_instance(name).image
        if image:
            try:
                return self._images.lowers(image)
            except NotFound:
                raise InternalError(f"Image {image[:12]} of {name} is missing") from None
        lower = self._paths.instance_dir(name) / "empty"  # rebuilt empty (LXD's type none)
        lower.mkdir(mode=0o755, exist_ok=True)
        return [lower]

    def create_in(self, name: str, create: Callable[[Path], int], *,
                  image: str | None = None) -> int:
        """Call ``create(rootfs)`` in a fresh mount namespace where the
        instance's overlay is mounted at ``rootfs`` (its usual path); it
        returns the init pid of the container it made, from then on the
        way to the files (``held``) until ``released``. The caller holds the
        instance's operation lock; ``image``: the fingerprint its row names
        ('' for none), if the caller has just read it.

        Raises:
            NotFound: no such instance.  InternalError: its image is gone, or
                the mount failed.  Whatever ``create`` raises (nothing stays
                mounted then).
        """
        d = self._paths.instance_dir(name)
        target = d / "rootfs"
        with self._runs.mutex(name):
            tree = -1
            if self._runs.mount_refs.get(name, 0):  # a stopped user holds it: share it
                tree = mountns.clone_tree(str(target))
            try:
                lowers = [] if tree >= 0 else self._lowers(name, image)

                def inside() -> int:
                    if tree >= 0:
                        mountns.attach_tree(tree, str(target))
                    else:
                        overlay.mount_overlay(lowers, d / "upper", d / "work", target)
                    return create(target)

                try:
                    pid = self._base.run(inside)
                except OSError as e:
                    raise InternalError(f"cannot make the mount namespace of {name}: "
                                        f"{e.strerror}") from None
            finally:
                if tree >= 0:
                    os.close(tree)
            self._runs.root_pids[name] = (pid, proc.start_time(pid))
            return pid

    def scratch(self, name: str) -> tuple[str, str, str] | None:
        """Fresh /dev (filled as runc fills its tmpfs), /dev/shm and /run
        directories for a start of ``name``, as paths of the namespace
        ``create_in`` runs in (``SpecInput.scratch``); removed by
        ``released``. None if the shared tmpfs cannot be had (a tmpfs each
        then)."""
        fd = self._base.scratch_fd()
        if fd < 0:
            return None
        with self._runs.mutex(name):
            self._wipe(fd, name)
            try:
                os.mkdir(name, 0o700, dir_fd=fd)
                top = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=fd)
                try:
                    for sub, mode in (("dev", 0o755), ("shm", 0o1777), ("run", 0o755)):
                        os.mkdir(sub, dir_fd=top)
                        os.chmod(sub, mode, dir_fd=top)
                    dev = os.open("dev", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=top)
                    try:
                        devdir.fill(dev)
                    finally:
                        os.close(dev)
                finally:
                    os.close(top)
            except OSError as e:
                log.warning("no /dev, /dev/shm and /run for %s on the shared tmpfs (%s)", name, e)
                self._wipe(fd, name)
                return None
        base = f"{self._scratch}/{name}"
        return f"{base}/dev", f"{base}/shm", f"{base}/run"

    def cgroup_skeleton(self, names: tuple[str, ...]) -> str | None:
        """The read-only /sys/fs/cgroup skeleton for the v1 hierarchies
        ``names`` on the shared tmpfs (made on first use; a tmpfs, as cgroup
        v1 users such as systemd require of /sys/fs/cgroup), as a path of
        the namespace ``create_in`` runs in; None if it cannot be had."""
        fd = self._base.scratch_fd()
        if fd < 0:
            return None
        try:
            cgroupfs.make_skeleton(fd, _SKELETON, names)
        except OSError as e:
            log.warning("no /sys/fs/cgroup skeleton on the shared tmpfs (%s)", e)
            return None
        return f"{self._scratch}/{_SKELETON}"

    @staticmethod
    def _wipe(fd: int, name: str) -> None:
        # fd-relative and symlink-safe: the container wrote what is in there
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(name, dir_fd=fd)

    def scratch_names(self) -> list[str]:
        """Instances with directories on the shared tmpfs (for leak checks)."""
        fd = self._base.scratch_fd(make=False)
        return sorted(n for n in os.listdir(fd) if not n.startswith(".")) if fd >= 0 else []

    def released(self, name: str) -> None:
        """The container of ``name`` is gone (idempotent). A mount in coved's
        own namespace that no user holds goes too (one left by a cove that
        mounted running instances there), and its directories on the shared
        tmpfs."""
        with self._runs.mutex(name):
            self._runs.root_pids.pop(name, None)
            if not self._runs.mount_refs.get(name, 0):
                overlay.umount(self._paths.instance_dir(name) / "rootfs")
            fd = self._base.scratch_fd(make=False)
            if fd >= 0:
                try:
                    self._wipe(fd, name)
                except OSError as e:
                    log.warning("removing the /dev and /run of %s: %s", name, e)

    def mount(self, name: str) -> Path:
        """Mount a stopped instance's rootfs in coved's namespace (first user)
        or count one more user; returns the mount point.

        Raises:
            NotFound: no such instance.  InternalError: its image is gone.
            Conflict: it runs (use ``held``).
        """
        with self._runs.mutex(name):
            if name in self._runs.root_pids:
                raise Conflict(f"Instance {name} is running")
            d = self._paths.instance_dir(name)
            target = d / "rootfs"
            refs = self._runs.mount_refs.get(name, 0)
            if refs == 0 and not overlay.is_mounted(target):
                overlay.mount_overlay(self._lowers(name), d / "upper", d / "work", target)
            self._runs.mount_refs[name] = refs + 1
            return target

    def unmount(self, name: str) -> None:
        """One user fewer; the last one unmounts. Idempotent past zero."""
        with self._runs.mutex(name):
            refs = self._runs.mount_refs.get(name, 0) - 1
            if refs > 0:
                self._runs.mount_refs[name] = refs
                return
            self._runs.mount_refs.pop(name, None)
            overlay.umount(self._paths.instance_dir(name) / "rootfs")

    @contextmanager
    def held(self, name: str) -> Iterator[Path]:
        """The instance's root filesystem for the duration: a running one's
        that of its init (``/proc/PID/root``, opened and then checked to be
        the init's still: a pid is reused once its process is gone), a
        stopped one's mounted here.

        Raises: as ``mount``; Conflict when the container ended meanwhile.
        """
        with self._runs.mutex(name):
            init = self._runs.root_pids.get(name)
            if init is None:
                path = self.mount(name)
        if init is not None:
            fd = _open_root(name, *init)
            try:
                yield Path(f"/proc/self/fd/{fd}")
            finally:
                os.close(fd)
            return
        try:
            yield path
        finally:
            self.unmount(name)

    def close(self) -> None:
        """Let go of the base namespace (running containers keep theirs)."""
        with contextlib.suppress(OSError):
            self._base.close()


def _open_root(name: str, pid: int, start: int | None) -> int:
    """An fd of the root of ``name``'s init ``pid`` started at ``start``.
    Raises: Conflict (it is gone: the instance stopped meanwhile)."""
    try:
        fd = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        fd = -1
    # checked after the open: the same start time now means the same
    # process then, so the fd is of its root and not a reused pid's
    if fd >= 0 and start is not None and proc.start_time(pid) == start:
        return fd
    if fd >= 0:
        os.close(fd)
    raise Conflict(f"Instance {split_key(name)[1]} stopped meanwhile; try again")
