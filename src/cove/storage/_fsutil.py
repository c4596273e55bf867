"""The pieces of ``safefs`` that are not ``RootFS`` itself: the stat record,
path splitting, error translation (container paths, never host paths) and
fd helpers."""

from __future__ import annotations

import errno
import os
import stat as st
from collections.abc import Iterator
from dataclasses import dataclass

from cove.host.syscalls import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS
from cove.model.errors import (
    BadRequest,
    Conflict,
    CoveError,
    Forbidden,
    InternalError,
    NotFound,
)

__all__ = ["FileStat", "close_fd", "display", "empty_tree", "error", "file_type",
           "proc_fd", "split_path", "to_filestat", "write_all"]

_RESOLVE = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
_CHUNK = 1 << 20
# The kernel's own limit for symlink hops in one lookup (MAXSYMLINKS).
_MAX_HOPS = 40
_NEW_FILE_MODE = 0o644


@dataclass(frozen=True)
class FileStat:
    """What ``stat`` tells about a path inside the root.

    ``type`` is ``file``, ``directory``, ``symlink`` or ``other`` (device,
    fifo, socket); ``mode`` holds the permission bits only (including
    setuid/setgid/sticky), ``mtime`` is seconds since the epoch.
    """

    type: str
    uid: int
    gid: int
    mode: int
    size: int
    mtime: float = 0.0


def file_type(mode: int) -> str:
    if st.S_ISREG(mode):
        return "file"
    if st.S_ISDIR(mode):
        return "directory"
    if st.S_ISLNK(mode):
        return "symlink"
    return "other"


def to_filestat(s: os.stat_result) -> FileStat:
    return FileStat(type=file_type(s.st_mode), uid=s.st_uid, gid=s.st_gid,
                    mode=st.S_IMODE(s.st_mode), size=s.st_size, mtime=s.st_mtime)


def split_path(path: str) -> list[str]:
    """Normalise an absolute container path into its components.

    ``""`` and ``.`` components vanish, ``..`` removes the previous component
    and is a no-op at the root, so the result never starts with ``..``.
    ``[]`` is the root itself.

    Raises:
        BadRequest: the path is not a ``str`` starting with ``/`` or holds NUL.
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise BadRequest("path must be absolute")
    if "\0" in path:
        raise BadRequest("path must not contain NUL bytes")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return parts


def display(parts: list[str]) -> str:
    return "/" + "/".join(parts)


def error(exc: OSError, parts: list[str]) -> CoveError:
    """Turn an errno into the cove error a user of the files API should see."""
    where = display(parts)
    code = exc.errno
    if code == errno.ENOENT:
        return NotFound(f"{where}: no such file or directory")
    if code == errno.ENOTDIR:
        return BadRequest(f"{where}: not a directory")
    if code == errno.EISDIR:
        return BadRequest(f"{where}: is a directory")
    if code == errno.EEXIST:
        return Conflict(f"{where}: already exists")
    if code == errno.ENOTEMPTY:
        return BadRequest(f"{where}: directory not empty")
    if code == errno.ELOOP:
        return BadRequest(f"{where}: too many levels of symbolic links, or a magic link")
    if code == errno.EXDEV:
        return BadRequest(f"{where}: crosses a filesystem boundary")
    if code in (errno.ENAMETOOLONG, errno.EINVAL):
        return BadRequest(f"{where}: {os.strerror(code)}")
    if code in (errno.EPERM, errno.EACCES, errno.EROFS):
        return Forbidden(f"{where}: {os.strerror(code)}")
    if code == errno.ENOSYS:
        return InternalError("openat2 is not available (Linux 5.6 or newer is required)")
    return InternalError(f"{where}: {os.strerror(code) if code else exc}")


def close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def write_all(fd: int, data: bytes | bytearray | memoryview, parts: list[str]) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        raise error(exc, parts) from None


def proc_fd(fd: int) -> str:
    # Our own fd through the host's procfs: the kernel re-opens the very inode
    # we checked, so there is no window in which the name can be swapped.
    return f"/proc/self/fd/{fd}"


def empty_tree(top: int, dev: int, parts: list[str]) -> None:
    """Delete everything inside the directory ``top`` (consumed: it is closed)."""
    # (fd, names left, name of this directory in its parent)
    stack: list[tuple[int, Iterator[str], str]] = [(top, iter(os.listdir(top)), "")]
    try:
        while stack:
            fd, names, own = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                close_fd(fd)
                if stack:
                    os.rmdir(own, dir_fd=stack[-1][0])
                continue
            try:
                s = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not st.S_ISDIR(s.st_mode):
                try:
                    os.unlink(name, dir_fd=fd)
                except FileNotFoundError:
                    pass
                continue
            if s.st_dev != dev:
                raise BadRequest(f"{display(parts)}: contains a mount point, not removing it")
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                            dir_fd=fd)
            stack.append((child, iter(os.listdir(child)), name))
    finally:
        for fd, _, _ in stack:
            close_fd(fd)
