"""Bind mounts into a running container's mount namespace (disk hot-plug).

Design note: the mount is made with the new mount API so that no path is
resolved where the container could race it. ``open_tree(OPEN_TREE_CLONE)``
takes a detached copy of the host source in coved's own namespace; a helper
process then joins the container's mount namespace (whose root is the
container's root), opens the target with ``openat2(RESOLVE_IN_ROOT |
RESOLVE_NO_SYMLINKS)`` and attaches the copy to that fd with ``move_mount``.
The caller hands in a target already made and resolved inside the rootfs;
if the container swapped any component for a symlink since, the open fails
(``ELOOP``) instead of following it. The child is a helper process (this
module run as a program, the tree's fd passed down), because a threaded
process can neither ``setns`` into a mount namespace nor fork safely. Each
call is one helper (~30 ms); errors come back as its exit status (the errno).
(A thread can, once it unshared its fs_struct: ``freshns`` does that for
containers' creates, and uses ``clone_tree``/``attach_tree`` from here; a
helper process stays the way into a *running* container, whose namespace
must never hold one of coved's threads.)
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys

from cove.host import proc
from cove.host.syscalls import (
    MNT_DETACH,
    RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS,
    RESOLVE_NO_SYMLINKS,
    UMOUNT_NOFOLLOW,
    openat2,
    umount2,
)

__all__ = ["attach_tree", "bind_into", "clone_tree", "unmount_in"]

_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
_OPEN_TREE_CLONE = 1
_AT_EMPTY_PATH = 0x1000
_AT_RECURSIVE = 0x8000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOVE_MOUNT_T_EMPTY_PATH = 0x40
_MOUNT_ATTR_RDONLY = 0x1
_MS_PRIVATE = 1 << 18
_CLONE_NEWNS = 0x00020000

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_setns = _libc.setns
_setns.argtypes = [ctypes.c_int, ctypes.c_int]
_setns.restype = ctypes.c_int


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), what)
    return int(ret)


def _clone_tree(source: str, *, readonly: bool, recursive: bool) -> int:
    flags = _OPEN_TREE_CLONE | os.O_CLOEXEC | (_AT_RECURSIVE if recursive else 0)
    fd = _check(_syscall(ctypes.c_long(_SYS_OPEN_TREE), ctypes.c_int(-100),
                         ctypes.c_char_p(os.fsencode(source)), ctypes.c_uint(flags)), source)
    try:
        attr = _MountAttr(_MOUNT_ATTR_RDONLY if readonly else 0, 0, _MS_PRIVATE, 0)
        _check(_syscall(ctypes.c_long(_SYS_MOUNT_SETATTR), ctypes.c_int(fd), ctypes.c_char_p(b""),
                        ctypes.c_uint(_AT_EMPTY_PATH | _AT_RECURSIVE), ctypes.byref(attr),
                        ctypes.c_size_t(ctypes.sizeof(attr))), source)
    except BaseException:
        os.close(fd)
        raise
    return fd


def clone_tree(source: str) -> int:
    """A detached copy of the mount at ``source`` (a path of cove's own, in
    the caller's namespace), private; the caller closes the fd. Raises: OSError."""
    return _clone_tree(source, readonly=False, recursive=False)


def attach_tree(tree: int, target: str) -> None:
    """Attach a ``clone_tree`` copy at ``target`` in the calling thread's
    namespace (``BaseNamespace.run``); no symlink may be on the path.
    Raises: OSError."""
    where = openat2(-100, target, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                    resolve=RESOLVE_NO_MAGICLINKS)  # cove's own path: trusted
    try:
        _check(_syscall(ctypes.c_long(_SYS_MOVE_MOUNT), ctypes.c_int(tree), ctypes.c_char_p(b""),
                        ctypes.c_int(where), ctypes.c_char_p(b""),
                        ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH | _MOVE_MOUNT_T_EMPTY_PATH)),
               target)
    finally:
        os.close(where)


def _in_namespace(pid: int, *args: str, pass_fds: tuple[int, ...] = ()) -> None:
    """Run this module's ``main`` with ``args`` in a helper process that joins
    ``pid``'s mount namespace.

    A helper *process* (not ``os.fork``): coved has threads, and a forked
    copy of a threaded process may block on a lock another thread held; the
    subprocess module execs at once.

    Raises:
        OSError: the helper's errno (ESRCH when ``pid`` is gone).
    """
    if not os.path.exists(f"/proc/{pid}/ns/mnt"):
        raise OSError(errno.ESRCH, "the container's init is gone", str(pid))
    r = proc.run([sys.executable, "-m", "cove.host.mountns", str(pid), *args], check=False,
                 pass_fds=pass_fds, timeout=30)
    if r.returncode != 0:
        err = r.returncode if 0 < r.returncode < 200 else errno.EIO
        raise OSError(err, os.strerror(err), r.stderr.decode(errors="replace").strip()[-200:])


def bind_into(pid: int, source: str, target: str, *, readonly: bool = False,
              recursive: bool = False) -> None:
    """Bind-mount host ``source`` at ``target`` (a path inside the container,
    made and resolved beforehand: no symlink may be on it) in ``pid``'s mount
    namespace. Not idempotent (a second call stacks a second mount).

    Raises:
        OSError: ``ELOOP`` when a component of ``target`` became a symlink,
            ``ENOENT`` when it is gone, or another errno of the kernel.
    """
    tree = _clone_tree(source, readonly=readonly, recursive=recursive)
    try:
        os.set_inheritable(tree, True)
        _in_namespace(pid, "bind", str(tree), target, pass_fds=(tree,))
    finally:
        os.close(tree)


def unmount_in(pid: int, target: str) -> None:
    """Lazily unmount ``target`` in ``pid``'s mount namespace. Idempotent
    (nothing mounted there, or the path gone: nothing)."""
    _in_namespace(pid, "unmount", target)


def _attach(tree: int, target: str) -> None:
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    where = openat2(root, target.lstrip("/") or ".", os.O_PATH | os.O_NOFOLLOW,
                    resolve=RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
    _check(_syscall(ctypes.c_long(_SYS_MOVE_MOUNT), ctypes.c_int(tree), ctypes.c_char_p(b""),
                    ctypes.c_int(where), ctypes.c_char_p(b""),
                    ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH | _MOVE_MOUNT_T_EMPTY_PATH)), target)


def _detach(target: str) -> None:
    try:
        umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise


def main(argv: list[str]) -> int:
    """The helper: ``PID bind TREE_FD TARGET`` or ``PID unmount TARGET``;
    exits with the errno of what failed (0: done)."""
    try:
        ns = os.open(f"/proc/{int(argv[0])}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        if _setns(ns, _CLONE_NEWNS) != 0:  # also makes its root our root and cwd
            return ctypes.get_errno() or errno.EPERM
        if argv[1] == "bind":
            _attach(int(argv[2]), argv[3])
        elif argv[1] == "unmount":
            _detach(argv[2])
        else:
            return errno.EINVAL
    except OSError as e:
        sys.stderr.write(f"{e}\n")
        return e.errno or errno.EIO
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
