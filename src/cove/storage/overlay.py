"""Overlay mounts for instance root filesystems, and finding them again.

Every instance gets ``overlay(lower=image layers, upper=its own dir)``, even
with a single image layer, so the image stays read-only and shared while the
instance writes to its own ``upper``. Mounts are made with the ``mount``
syscall (no ``mount(8)``), and read back from ``/proc/self/mountinfo``, which
is the only authority on what is mounted: after a crash cove rebuilds its
view from there (:func:`mounts_under`) rather than trusting its own records.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from cove.host.syscalls import (
    MNT_DETACH,
    MS_RDONLY,
    UMOUNT_NOFOLLOW,
    is_mount_root,
    mount,
    umount2,
)
from cove.model.errors import BadRequest, Conflict, InternalError

__all__ = ["is_mounted", "lower_option", "mount_overlay", "mount_read_only", "mounts_under",
           "umount"]

_MOUNTINFO = "/proc/self/mountinfo"
# mount(2) copies at most one page of option data.
_MAX_DATA = 4095
# Stacked mounts on one target are unmounted one per call; a bound stops a
# runaway loop if something keeps mounting.
_MAX_UNMOUNTS = 64
_OCTAL = re.compile(r"\\([0-7]{3})")


def _option_path(path: Path) -> str:
    text = os.path.abspath(path)
    # ':' separates lower layers and ',' separates options; overlayfs' own
    # escaping of them is not uniform across kernels, so such paths are refused.
    if any(c in text for c in ":,\n"):
        raise BadRequest(f"overlay path {text!r} must not contain ':', ',' or newlines")
    return text


def mount_overlay(lower: list[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount an overlay at ``target``: ``lower`` (topmost first) under ``upper``.

    ``upper``, ``work`` and ``target`` are created if missing; ``upper`` and
    ``work`` must be on the same filesystem. The lower layers must exist.

    Raises:
        BadRequest: no lower layer, or a path overlayfs cannot express.
        Conflict: something is already mounted at ``target``.
        InternalError: the kernel refused the mount (message has the errno).
    """
    if not lower:
        raise BadRequest("an overlay needs at least one lower layer")
    for layer in lower:
        if not Path(layer).is_dir():
            raise InternalError(f"overlay lower layer {layer} is missing")
    data = "lowerdir={},upperdir={},workdir={}".format(
        ":".join(_option_path(p) for p in lower), _option_path(upper), _option_path(work))
    if len(data.encode()) > _MAX_DATA:
        raise BadRequest(f"overlay options too long ({len(lower)} layers)")
    for path in (upper, work, target):
        try:
            Path(path).mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            raise InternalError(f"cannot create {path}: {exc.strerror}") from None
    if is_mounted(target):
        raise Conflict(f"{target} is already mounted")
    try:
        mount("overlay", target, "overlay", 0, data)
    except OSError as exc:
        raise InternalError(f"cannot mount overlay on {target}: "
                            f"{exc.strerror} (errno {exc.errno})") from None


def lower_option(lower: list[Path]) -> str:
    """The ``lowerdir=`` option for ``lower`` (topmost first).

    Raises:
        BadRequest: a path overlayfs cannot express.
    """
    return "lowerdir=" + ":".join(_option_path(p) for p in lower)


def mount_read_only(lower: list[Path], target: Path) -> None:
    """Mount the layers ``lower`` (topmost first, at least two) read-only at
    ``target`` with no upper layer: the merged view, whiteouts applied by
    the kernel. ``target`` must exist.

    Raises:
        BadRequest: fewer than two layers, or options past one page.
        InternalError: the kernel refused the mount.
    """
    if len(lower) < 2:
        raise BadRequest("a read-only overlay needs at least two lower layers")
    data = lower_option(lower)
    if len(data.encode()) > _MAX_DATA:
        raise BadRequest(f"overlay options too long ({len(lower)} layers)")
    try:
        mount("overlay", target, "overlay", MS_RDONLY, data)
    except OSError as exc:
        raise InternalError(f"cannot mount overlay on {target}: "
                            f"{exc.strerror} (errno {exc.errno})") from None


def umount(target: Path | str) -> None:
    """Lazily unmount everything stacked on ``target``.

    Idempotent: a target that is not mounted, or does not exist, is fine.
    ``MNT_DETACH`` lets it succeed while a process still has files open in
    the tree; the filesystem goes away when the last one is closed.

    Raises:
        InternalError: the kernel refused (e.g. EPERM).
    """
    for _ in range(_MAX_UNMOUNTS):
        try:
            umount2(str(target), MNT_DETACH | UMOUNT_NOFOLLOW)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                return
            raise InternalError(f"cannot unmount {target}: {exc.strerror}") from None
    raise InternalError(f"{target}: still mounted after {_MAX_UNMOUNTS} unmounts")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def _mount_points() -> list[str]:
    try:
        with open(_MOUNTINFO, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise InternalError(f"cannot read {_MOUNTINFO}: {exc.strerror}") from None
    points = []
    for line in lines:
        fields = line.split(" ")
        if len(fields) > 4:
            points.append(_unescape(fields[4]))
    return points


def _canonical(path: Path | str) -> str:
    # mountinfo shows resolved absolute paths; our own paths are trusted, so
    # resolving their symlinks here is fine.
    return os.path.realpath(path)


def is_mounted(target: Path | str) -> bool:
    """Whether something is mounted exactly at ``target``: statx's mount-root
    attribute where the kernel has it (one lookup, however many instances
    run: every start asks), else mountinfo. A missing ``target`` is not.

    Raises:
        InternalError: mountinfo cannot be read.
    """
    want = _canonical(target)
    try:
        root = is_mount_root(want)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        root = None
    if root is not None:
        return root
    return want in _mount_points()


def mounts_under(prefix: Path | str) -> list[str]:
    """Mount points at or below ``prefix``, deepest first (the order to unmount them).

    Raises:
        InternalError: mountinfo cannot be read.
    """
    base = _canonical(prefix)
    inside = base.rstrip("/") + "/"
    found = {p for p in _mount_points() if p == base or p.startswith(inside)}
    return sorted(found, key=lambda p: (-p.count("/"), p))
