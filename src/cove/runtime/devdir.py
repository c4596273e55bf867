"""A container's /dev as runc would fill its tmpfs, in a directory cove binds.

Design note: given a bind at /dev, runc makes no device node and no link
there (it takes the directory for the host's /dev), so whoever gives the
directory fills it: the nodes of runc's default devices (the ones its
device cgroup rules allow, 0666, root's), the links runc makes (``fd``,
``stdin``, ``stdout``, ``stderr``, ``ptmx`` into the container's devpts,
``core`` when the host has ``/proc/kcore``). runc still mounts devpts,
mqueue and the console in it. Everything is made relative to a directory
fd, so nothing follows a link.
"""

from __future__ import annotations

import os
import stat

__all__ = ["NODES", "fill"]

# runc's default devices with a node (libcontainer/specconv AllowedDevices)
NODES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("tty", 5, 0),
         ("random", 1, 8), ("urandom", 1, 9))
_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
          ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
          ("ptmx", "pts/ptmx"))
_KCORE = os.path.exists("/proc/kcore")


def fill(dev_fd: int) -> None:
    """Make runc's /dev entries in the empty directory ``dev_fd``.
    Raises: OSError (the caller falls back to runc's tmpfs)."""
    for name, major, minor in NODES:
        os.mknod(name, 0o666 | stat.S_IFCHR, os.makedev(major, minor), dir_fd=dev_fd)
        os.chmod(name, 0o666, dir_fd=dev_fd)  # whatever the umask
    for name, target in _LINKS:
        os.symlink(target, name, dir_fd=dev_fd)
    if _KCORE:
        os.symlink("/proc/kcore", "core", dir_fd=dev_fd)
