"""A container's /sys/fs/cgroup on a cgroup v1 host, without a tmpfs of its own.

Design note: for a v1 host runc mounts a tmpfs at /sys/fs/cgroup and binds
the container's cgroup of each hierarchy into it. The tmpfs is a superblock
per container, and every superblock costs every memory cgroup on the host a
shrinker slot (docs/performance.md, "Host memory per container"). The same
view comes from one read-only skeleton directory, made once per layout
(a directory per hierarchy, a symlink per controller of a combined one, as
runc makes them), and the same binds, which the spec then lists itself
(``mounts``). runc has made the container's cgroups by the time it mounts
(it joins the cgroups before the init sets up its root).

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
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from cove.runtime.spec import bind_mount

__all__ = ["CgroupSkeleton", "v1_hierarchies"]

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


class CgroupSkeleton:
    """The skeleton directory under ``state_dir`` and the mounts that use it.
    Thread-safe; reads the host's layout once."""

    def __init__(self, state_dir: Path, mountinfo: str | None = None) -> None:
        self._state_dir = state_dir
        self._mountinfo = mountinfo
        self._lock = threading.Lock()
        self._made: tuple[str, tuple[str, ...]] | None = None
        self._tried = False

    def _layout(self) -> tuple[str, tuple[str, ...]] | None:
        with self._lock:
            if not self._tried:
                self._tried = True
                text = self._mountinfo
                if text is None:
                    with open("/proc/self/mountinfo", encoding="utf-8",
                              errors="surrogateescape") as f:
                        text = f.read()
                names = v1_hierarchies(text)
                if names is not None:
                    with contextlib.suppress(OSError):
                        self._made = (self._build(names), names)
            return self._made

    def _build(self, names: tuple[str, ...]) -> str:
        digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
        skel = self._state_dir / f"cgroupfs-{digest}"
        if skel.is_dir() and not skel.is_symlink():
            return str(skel)
        tmp = self._state_dir / f".cgroupfs-{digest}-{os.getpid()}-{threading.get_ident()}"
        tmp.mkdir(mode=0o755)
        dirs = set(names)
        for name in names:
            (tmp / name).mkdir(mode=0o555)
        for name in names:  # cpu -> cpu,cpuacct, as runc links a combined one
            for part in name.split(","):
                if "," in name and part not in dirs:
                    (tmp / part).symlink_to(name)
        tmp.chmod(0o555)
        try:
            tmp.rename(skel)
        except OSError:  # another coved of this root made it meanwhile
            for child in tmp.iterdir():
                if child.is_symlink():
                    child.unlink()
                else:
                    child.rmdir()
            tmp.rmdir()
        return str(skel)

    def mounts(self, cgroups_path: str) -> tuple[dict[str, Any], ...] | None:
        """The spec's mounts for /sys/fs/cgroup of a container whose cgroup
        is ``cgroups_path`` (absolute, as in the spec); None: runc's own."""
        layout = self._layout()
        if layout is None or not cgroups_path.startswith("/"):
            return None
        skel, names = layout
        rel = cgroups_path.strip("/")
        return (bind_mount(CGROUP_ROOT, skel, *_OPTIONS),
                *(bind_mount(f"{CGROUP_ROOT}/{n}", f"{CGROUP_ROOT}/{n}/{rel}", *_OPTIONS)
                  for n in names))
