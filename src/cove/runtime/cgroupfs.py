"""A container's /sys/fs/cgroup on a cgroup v1 host, without a tmpfs of its own.

Design note: for a v1 host runc mounts a tmpfs at /sys/fs/cgroup and binds
the container's cgroup of each hierarchy into it. The tmpfs is a superblock
per container, and every superblock costs every memory cgroup on the host a
shrinker slot (docs/performance.md, "Host memory per container"). The same
view comes from one read-only skeleton directory (a directory per
hierarchy, a symlink per controller of a combined one, as runc makes them)
on the tmpfs cove shares between containers, and the same binds, which the
spec then lists itself (``mounts``). It has to be a tmpfs: systemd (and
other cgroup v1 users) tell v1 from v2 by the filesystem type of
/sys/fs/cgroup and refuse anything else. runc has made the container's
cgroups by the time it mounts (it joins the cgroups before the init sets up
its root).

Only for what runc would do the same way: every v1 hierarchy mounted
directly under /sys/fs/cgroup from its root, each of controllers runc makes
a cgroup in (a ``name=systemd`` one too); a cgroup2 mount there (a hybrid
host's ``unified``) is left out as runc leaves it out. Anything else (a pure
v2 host, where runc mounts cgroup2 and no tmpfs; an unknown controller; a
hierarchy mounted from a subdirectory, as inside a cgroup namespace) gives
None: runc's own mount then.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
from typing import Any

from cove.runtime.spec import bind_mount

__all__ = ["CgroupLayout", "make_skeleton", "v1_hierarchies"]

CGROUP_ROOT = "/sys/fs/cgroup"

# the v1 controllers runc 1.1 makes a cgroup in (libcontainer/cgroups/fs)
_RUNC_V1 = frozenset({
    "cpuset", "devices", "memory", "cpu", "cpuacct", "pids", "blkio", "hugetlb", "net_cls",
    "net_prio", "perf_event", "freezer", "rdma", "name=systemd",
})
_OPTIONS = ("ro", "nosuid", "nodev", "noexec")


def v1_hierarchies(mountinfo: str) -> tuple[str, ...] | None:
    """The names (``cpu``, ``cpu,cpuacct``, ``systemd``) of the v1
    hierarchies mounted at /sys/fs/cgroup/NAME in ``mountinfo`` (the text of
    a ``/proc/PID/mountinfo``), sorted; None if runc's own mount is to be
    used (see the module's note). Pure."""
    names = []
    for line in mountinfo.splitlines():
        head, _, tail = line.partition(" - ")
        fields, more = head.split(), tail.split()
        if len(fields) < 5 or len(more) < 3 or more[0] != "cgroup":
            continue
        point = fields[4]
        if os.path.dirname(point) != CGROUP_ROOT or fields[3] != "/":
            return None
        name = os.path.basename(point)
        controllers = [o for o in more[2].split(",") if o in _RUNC_V1 or
                       o.startswith("name=")]
        if not controllers or any(c not in _RUNC_V1 for c in controllers):
            return None
        names.append(name)
    return tuple(sorted(names)) or None


def make_skeleton(dir_fd: int, name: str, names: tuple[str, ...]) -> None:
    """Make the read-only skeleton ``name`` for ``names`` in the directory
    ``dir_fd`` unless it is there (made aside and renamed into place, so a
    concurrent maker or a reader never sees half of one).
    Raises: OSError."""
    with contextlib.suppress(FileNotFoundError):
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return
    tmp = f"{name}.{secrets.token_hex(4)}"
    os.mkdir(tmp, 0o755, dir_fd=dir_fd)
    top = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                  dir_fd=dir_fd)
    try:
        for n in names:
            os.mkdir(n, dir_fd=top)
            os.chmod(n, 0o555, dir_fd=top)
        for n in names:  # cpu -> cpu,cpuacct, as runc links a combined one
            for part in n.split(","):
                if "," in n and part not in names:
                    os.symlink(n, part, dir_fd=top)
        os.fchmod(top, 0o555)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp, dir_fd=dir_fd)
        with contextlib.suppress(FileNotFoundError):  # another maker's is there
            os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            return
        raise
    finally:
        os.close(top)


class CgroupLayout:
    """The host's v1 hierarchies (read once) and the mounts that give a
    container its /sys/fs/cgroup from a skeleton. Thread-safe."""

    def __init__(self, mountinfo: str | None = None) -> None:
        self._mountinfo = mountinfo
        self._lock = threading.Lock()
        self._names: tuple[str, ...] | None = None
        self._read = False

    def names(self) -> tuple[str, ...] | None:
        """The hierarchies a skeleton needs; None: use runc's own mount."""
        with self._lock:
            if not self._read:
                text = self._mountinfo
                if text is None:
                    with open("/proc/self/mountinfo", encoding="utf-8",
                              errors="surrogateescape") as f:
                        text = f.read()
                self._names = v1_hierarchies(text)
                self._read = True
            return self._names

    def mounts(self, skeleton: str, cgroups_path: str) -> tuple[dict[str, Any], ...] | None:
        """The spec's mounts for /sys/fs/cgroup of a container whose cgroup
        is ``cgroups_path`` (absolute, as in the spec), from ``skeleton`` (a
        directory ``make_skeleton`` made); None: runc's own."""
        names = self.names()
        if names is None or not cgroups_path.startswith("/"):
            return None
        rel = cgroups_path.strip("/")
        return (bind_mount(CGROUP_ROOT, skeleton, *_OPTIONS),
                *(bind_mount(f"{CGROUP_ROOT}/{n}", f"{CGROUP_ROOT}/{n}/{rel}", *_OPTIONS)
                  for n in names))
