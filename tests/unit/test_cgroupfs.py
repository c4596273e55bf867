"""/sys/fs/cgroup of a container on a v1 host from one skeleton directory
(``runtime.cgroupfs``): which host layouts take it, and what it makes."""

from __future__ import annotations

import os
from pathlib import Path

from cove.runtime.cgroupfs import CgroupLayout, make_skeleton, v1_hierarchies

_HEAD = "22 1 0:20 / /sys rw - sysfs sysfs rw\n"


def _line(n: int, point: str, fstype: str, opts: str, root: str = "/") -> str:
    return f"{n} 22 0:{n} {root} {point} rw,nosuid - {fstype} cgroup {opts}\n"


V1 = (_HEAD + _line(30, "/sys/fs/cgroup/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct")
      + _line(31, "/sys/fs/cgroup/memory", "cgroup", "rw,memory")
      + _line(32, "/sys/fs/cgroup/systemd", "cgroup", "rw,xattr,name=systemd")
      + _line(33, "/sys/fs/cgroup/unified", "cgroup2", "rw,nsdelegate"))


def test_v1_layouts() -> None:
    assert v1_hierarchies(V1) == ("cpu,cpuacct", "memory", "systemd")
    # pure v2: runc mounts cgroup2 itself, no tmpfs to spare
    assert v1_hierarchies(_HEAD + _line(30, "/sys/fs/cgroup", "cgroup2", "rw")) is None
    # a controller runc makes no cgroup in: the bind would have no source
    assert v1_hierarchies(V1 + _line(40, "/sys/fs/cgroup/misc", "cgroup", "rw,misc")) is None
    assert v1_hierarchies(V1 + _line(40, "/sys/fs/cgroup/x", "cgroup", "rw,name=x")) is None
    # mounted from a subdirectory (a cgroup namespace) or elsewhere
    assert v1_hierarchies(_line(30, "/sys/fs/cgroup/memory", "cgroup", "rw,memory",
                                root="/lxc/a")) is None
    assert v1_hierarchies(_line(30, "/cg/memory", "cgroup", "rw,memory")) is None


def test_skeleton_and_mounts(tmp_path: Path) -> None:
    names = v1_hierarchies(V1)
    assert names is not None
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        make_skeleton(fd, ".cgroupfs", names)
        make_skeleton(fd, ".cgroupfs", names)  # there already: kept
    finally:
        os.close(fd)
    skel = tmp_path / ".cgroupfs"
    assert os.listdir(tmp_path) == [".cgroupfs"]  # nothing left aside
    assert (skel.stat().st_mode & 0o777) == 0o555
    assert sorted(os.listdir(skel)) == ["cpu", "cpu,cpuacct", "cpuacct", "memory", "systemd"]
    assert os.readlink(skel / "cpu") == "cpu,cpuacct" and (skel / "memory").is_dir()

    mounts = CgroupLayout(mountinfo=V1).mounts("/s/.cgroupfs", "/cove-x/web")
    assert mounts is not None
    first, *rest = mounts
    assert (first["destination"], first["source"]) == ("/sys/fs/cgroup", "/s/.cgroupfs")
    assert [(m["destination"], m["source"]) for m in rest] == [
        ("/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/cove-x/web"),
        ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/cove-x/web"),
        ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/systemd/cove-x/web")]
    assert all(m["options"] == ["bind", "ro", "nosuid", "nodev", "noexec"] for m in mounts)
    assert CgroupLayout(mountinfo=_HEAD).mounts("/s/.cgroupfs", "/a") is None
    assert CgroupLayout(mountinfo=_HEAD).names() is None
