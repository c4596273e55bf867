"""Fresh mount namespaces cloned from a small base one, for container creates.

Design note: a container's mount namespace is a copy of the one runc
creates it from. If that were coved's (the host's) and every running
instance's rootfs overlay were mounted there, each new container would copy
a table that grows with the number running, and runc would then detach all
of it again (docs/performance.md, "Rootfs mounts"). So the overlay of a
running instance is never mounted in coved's namespace: ``BaseNamespace.run``
runs a function on a new thread that first enters a *fresh* mount namespace,
a copy of the base one; the function mounts the rootfs there and starts
the monitor (and so runc) from that thread, whose children inherit the
thread's namespace. The overlay then exists only in that namespace and in
the container's own copy of it, and goes away with them: nothing to
unmount when the container ends, nothing left by a killed coved.
cove-monitor (one process for many containers) never enters it: the
thread hands it an fd of the namespace and only the monitor's short-lived
``runc create`` child joins it, so from then on only the container's copy
holds it (conmon, one per container, keeps it).

How a thread of a threaded process gets a namespace of its own: mount
namespaces and the root/cwd (``fs_struct``) are per task, and ``setns`` into
a mount namespace is refused only while the fs_struct is shared, so the
thread first unshares it (``CLONE_FS``), as Go programs do on a locked OS
thread. The thread exits when the function returns, so nothing else ever runs
in the namespace; coved's other threads never leave the host's.

The base namespace is made once per coved: a copy of the host's at that
moment, made a slave of it (mounts the host makes later, say a disk device's
source, still show up in new containers), with cove's own mounts under the
instances directory detached (a stopped instance's rootfs that was mounted
for a file access then). It is pinned by an fd coved holds, so it goes with
coved; a restarted coved makes another.

The base also holds one tmpfs for all containers (``scratch``): their /dev,
/dev/shm and /run are directories there, bound in, instead of a tmpfs (a
superblock, which costs every memory cgroup a shrinker slot) each. It is
mounted only in the base, so only the fresh namespaces and the containers
see it; coved reaches it by an fd it keeps (``scratch_fd``). Like the base
it goes with coved: containers a coved before a restart made keep the old
one (their binds hold it) until the last of them ends.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from cove.host.syscalls import MNT_DETACH, MS_NOSUID, MS_REC, MS_SLAVE, mount, umount2

__all__ = ["BaseNamespace"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_CLONE_FS = 0x00000200
_CLONE_NEWNS = 0x00020000

_libc = ctypes.CDLL(None, use_errno=True)
_unshare = _libc.unshare
_unshare.argtypes = [ctypes.c_int]
_unshare.restype = ctypes.c_int
_setns = _libc.setns
_setns.argtypes = [ctypes.c_int, ctypes.c_int]
_setns.restype = ctypes.c_int


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), what)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _own_mount_points() -> list[str]:
    """Mount points of the calling *thread's* namespace (``/proc/self`` is the
    main thread's)."""
    with open("/proc/thread-self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return [_unescape(line.split(" ", 5)[4]) for line in f if line.strip()]


def _on_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` on a new thread, to its end; return or raise what it did."""
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            result.append(fn())
        except BaseException as e:  # noqa: BLE001 - raised again in the caller's thread
            error.append(e)

    t = threading.Thread(target=body, name="cove-freshns", daemon=True)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


class BaseNamespace:
    """The small mount namespace cove's containers are created from.

    ``detach_under``: mounts inside its subdirectories are taken out of the
    base (cove's instances directory: their rootfs overlays). ``scratch``:
    where the base mounts the containers' shared tmpfs (a directory it makes
    if need be). Thread-safe; the base is made on first use.
    """

    def __init__(self, detach_under: str, scratch: str | None = None) -> None:
        self._under = os.path.realpath(detach_under).rstrip("/") + "/"
        self._scratch = scratch
        self._fd = -1
        self._scratch_fd = -1
        self._lock = threading.Lock()

    def _make(self) -> int:
        _check(_unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")  # implies CLONE_FS
        mount(None, "/", None, MS_REC | MS_SLAVE, None)
        # cove's overlays and staging mounts, inside an instance's directory;
        # not the directories themselves, should the admin have mounted one
        inside = [p for p in _own_mount_points()
                  if p.startswith(self._under) and "/" in p[len(self._under):].strip("/")]
        for point in sorted(inside, key=lambda p: -p.count("/")):
            try:
                umount2(point, MNT_DETACH)
            except OSError:
                pass  # under another one detached already
        if self._scratch:
            self._scratch_fd = self._mount_scratch(self._scratch)
        return os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)

    @staticmethod
    def _mount_scratch(path: str) -> int:
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            # nosuid, not nodev: it holds each container's /dev; the size is
            # tmpfs's default (half the RAM) for all: each file is charged
            # to the memory cgroup of the container that wrote it
            mount("tmpfs", path, "tmpfs", MS_NOSUID, "mode=0700")
            return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            log.warning("no shared tmpfs for containers at %s (%s): a tmpfs each", path, e)
            return -1

    def _base(self) -> int:
        with self._lock:
            if self._fd < 0:
                self._fd = _on_thread(self._make)
            return self._fd

    def scratch_fd(self, make: bool = True) -> int:
        """An fd of the containers' shared tmpfs (the base is made first if
        ``make``); -1 if there is none (or no base: ``run`` says why). Valid
        until ``close``."""
        if make:
            try:
                self._base()
            except OSError:
                return -1
        with self._lock:
            return self._scratch_fd

    def run(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` on a new thread in a fresh mount namespace cloned from
        the base; what it mounts is seen only there and by the processes it
        starts, and goes when the last of them ends. Returns what ``fn``
        returns.

        Raises:
            OSError: the namespace could not be made (no CAP_SYS_ADMIN).
            Whatever ``fn`` raises.
        """
        base = self._base()

        def entered() -> T:
            _check(_unshare(_CLONE_FS), "unshare(CLONE_FS)")
            _check(_setns(base, _CLONE_NEWNS), "setns(base)")  # also sets root and cwd
            _check(_unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
            return fn()

        return _on_thread(entered)

    def close(self) -> None:
        """Let go of the base (idempotent); a later ``run`` makes a new one."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            if self._scratch_fd >= 0:
                os.close(self._scratch_fd)
                self._scratch_fd = -1
