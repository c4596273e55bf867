"""Raw Linux syscalls that Python's ``os`` module does not expose.

Design note: these are thin ctypes wrappers with one contract each: on
failure they raise :class:`OSError` carrying the kernel's ``errno`` (as
``os`` functions do), never a cove error. Translating an errno into a
:mod:`cove.model.errors` class is the caller's job, because only the caller
knows whether, say, ``ENOENT`` means "the user asked for a missing file"
(404) or "the host is broken" (500).

Strings are accepted as ``str`` or ``bytes``/``PathLike`` and encoded with
:func:`os.fsencode`, so file names that are not valid UTF-8 survive the
round trip (they arrive from tarballs and containers as surrogate escapes).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from typing import NoReturn

__all__ = [
    "MNT_DETACH",
    "MNT_EXPIRE",
    "MNT_FORCE",
    "MS_BIND",
    "MS_NODEV",
    "MS_NOEXEC",
    "MS_NOSUID",
    "MS_PRIVATE",
    "MS_RDONLY",
    "MS_REC",
    "MS_REMOUNT",
    "MS_SLAVE",
    "RENAME_EXCHANGE",
    "RENAME_NOREPLACE",
    "RESOLVE_BENEATH",
    "RESOLVE_CACHED",
    "RESOLVE_IN_ROOT",
    "RESOLVE_NO_MAGICLINKS",
    "RESOLVE_NO_SYMLINKS",
    "RESOLVE_NO_XDEV",
    "UMOUNT_NOFOLLOW",
    "is_mount_root",
    "mount",
    "openat2",
    "renameat2",
    "umount2",
]

# struct open_how.resolve flags (linux/openat2.h).
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
RESOLVE_CACHED = 0x20

# umount2 flags (sys/mount.h).
MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

# mount flags (sys/mount.h).
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19

# renameat2 flags (linux/fs.h).
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2

# openat2 has the same number on every architecture that uses the generic
# syscall table (x86_64, aarch64, riscv64, ...); the odd ones out are listed.
_SYS_OPENAT2 = {"alpha": 547}.get(platform.machine(), 437)

# openat2 with RESOLVE_IN_ROOT/BENEATH answers EAGAIN when a rename or mount
# raced with a ".." step; the kernel's own advice is to retry. A container
# that renames in a loop could make this spin, so the retries are bounded.
_EAGAIN_RETRIES = 64

_libc = ctypes.CDLL(None, use_errno=True)

_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

_mount = _libc.mount
_mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                   ctypes.c_char_p]
_mount.restype = ctypes.c_int

_umount2 = _libc.umount2
_umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_umount2.restype = ctypes.c_int

_renameat2 = _libc.renameat2
_renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                       ctypes.c_uint]
_renameat2.restype = ctypes.c_int


# statx (glibc 2.28): STATX_ATTR_MOUNT_ROOT (Linux 5.8) says whether a path is
# the root of a mount without reading the mount table, which grows with every
# running instance (one overlay each).
_statx = getattr(_libc, "statx", None)
if _statx is not None:
    _statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint,
                       ctypes.c_char_p]
    _statx.restype = ctypes.c_int
_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_STATX_ATTR_MOUNT_ROOT = 0x2000
_STATX_SIZE = 256  # struct statx; stx_attributes at 8, stx_attributes_mask at 56


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def _raise_errno(path: str | bytes | os.PathLike[str]) -> NoReturn:
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err), os.fsdecode(path))


def _enc(value: str | bytes | os.PathLike[str] | os.PathLike[bytes] | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def openat2(dirfd: int, path: str | bytes | os.PathLike[str], flags: int, mode: int = 0,
            resolve: int = 0) -> int:
    """Open ``path`` relative to ``dirfd`` with ``openat2(2)``.

    ``O_CLOEXEC`` is always added: cove never wants these fds inherited by
    runc or any other child.

    Args:
        dirfd: directory fd the path is resolved from (and, with
            ``RESOLVE_IN_ROOT``, the root it can never leave).
        path: the path; ``""`` is not allowed by the kernel, use ``"."``.
        flags: ``os.O_*`` flags.
        mode: permission bits for ``O_CREAT``/``O_TMPFILE`` (must be 0 otherwise).
        resolve: ``RESOLVE_*`` flags.

    Returns:
        The new file descriptor; the caller owns it.

    Raises:
        OSError: with the kernel's errno (``ENOSYS`` before Linux 5.6;
            ``EAGAIN`` only after bounded retries of a racing rename).
    """
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    raw = os.fsencode(path)
    for _ in range(_EAGAIN_RETRIES):
        fd = _syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd), ctypes.c_char_p(raw),
                      ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            break
    raise OSError(err, os.strerror(err), os.fsdecode(raw))


def mount(source: str | bytes | os.PathLike[str] | None,
          target: str | bytes | os.PathLike[str], fstype: str | bytes | None, flags: int = 0,
          data: str | bytes | None = None) -> None:
    """Call ``mount(2)``.

    Raises:
        OSError: with the kernel's errno and ``target`` as the filename.
    """
    if _mount(_enc(source), _enc(target), _enc(fstype), flags, _enc(data)) != 0:
        _raise_errno(target)


def umount2(target: str | bytes | os.PathLike[str], flags: int = 0) -> None:
    """Call ``umount2(2)`` (pass ``MNT_DETACH`` for a lazy unmount).

    Raises:
        OSError: with the kernel's errno (``EINVAL`` when ``target`` is not a
            mount point, ``ENOENT`` when it does not exist).
    """
    while _umount2(_enc(target), flags) != 0:
        if ctypes.get_errno() != errno.EINTR:
            _raise_errno(target)


def is_mount_root(path: str | bytes | os.PathLike[str]) -> bool | None:
    """Whether ``path`` (a final symlink not followed) is the root of a mount
    in this process's mount namespace, from ``statx``; None when the kernel or
    libc cannot tell (the caller reads the mount table instead).

    Raises:
        OSError: the path cannot be looked up (ENOENT, EACCES, ...).
    """
    if _statx is None:
        return None
    buf = ctypes.create_string_buffer(_STATX_SIZE)
    if _statx(_AT_FDCWD, _enc(path), _AT_SYMLINK_NOFOLLOW, 0, buf) != 0:
        _raise_errno(path)
    attributes, = struct.unpack_from("=Q", buf, 8)
    supported, = struct.unpack_from("=Q", buf, 56)
    if not supported & _STATX_ATTR_MOUNT_ROOT:
        return None
    return bool(attributes & _STATX_ATTR_MOUNT_ROOT)


def renameat2(olddirfd: int, oldpath: str | bytes | os.PathLike[str], newdirfd: int,
              newpath: str | bytes | os.PathLike[str], flags: int = 0) -> None:
    """Call ``renameat2(2)``; ``RENAME_NOREPLACE`` makes "already there" atomic.

    Raises:
        OSError: with the kernel's errno (``EEXIST`` for ``RENAME_NOREPLACE``
            when the destination exists).
    """
    if _renameat2(olddirfd, _enc(oldpath), newdirfd, _enc(newpath), flags) != 0:
        _raise_errno(newpath)
