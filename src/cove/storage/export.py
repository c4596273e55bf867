"""An image as LXD's tarball, streamed: the file it was imported from, or
its layers flattened into a unified tarball.

Design notes:

* What is sent. An image imported from a tarball keeps that file (or both
  files of a split import) beside its layers (``source``, or
  ``source.meta`` + ``source.rootfs``), as LXD keeps it: its fingerprint is
  the SHA-256 of those bytes and ``lxc image export`` checks exactly that,
  so the export is that file, byte for byte (multipart when it came split,
  LXD's parts ``metadata`` and ``rootfs``). Any other image (published, or
  imported before sources were kept, or from a directory) is flattened.
* Flattening. The image's layers are mounted read-only with no upper layer
  (``lowerdir=TOP:...:BOTTOM:EMPTY``, the empty bottom layer makes even one
  layer a valid mount), so the kernel itself applies whiteouts and opaque
  directories; GNU tar reads that merged tree under ``rootfs/`` beside
  ``metadata.yaml`` and ``templates/``. tar never follows a symlink
  (no ``-h``), stores device nodes as nodes, skips sockets, and writes
  holes of sparse files as holes (``--sparse``, so a huge sparse file costs
  its data, not its length).
* Deterministic bytes. A published image's fingerprint is the SHA-256 of its
  flattened tarball, computed once when it is published (LXD's definition:
  the hash of the image file), and export produces the same bytes again
  later: names sorted, numeric owners, POSIX format without atime/ctime and
  with pax header names that carry no process id, the layers immutable.
* Cleanup. The stage (``.tmp-export-*`` in the image store) holds the
  mount; :meth:`FlatStream.close` unmounts and removes it, and startup's
  ``ImageStore.cleanup_temp`` unmounts before removing what a killed coved
  left.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from cove.host import proc
from cove.model.errors import InternalError
from cove.storage import overlay

__all__ = ["SOURCE", "SOURCE_META", "SOURCE_ROOTFS", "ExportPart", "FlatStream", "Reader",
           "compression_ext", "file_part", "flatten"]

log = logging.getLogger(__name__)

SOURCE = "source"
SOURCE_META = "source.meta"
SOURCE_ROOTFS = "source.rootfs"

TAR_ARGS = [
    "tar", "--create", "--file=-", "--format=posix",
    "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
    "--sort=name", "--numeric-owner", "--sparse",
    "--xattrs", "--xattrs-include=user.*", "--xattrs-include=security.capability",
]
_CHUNK = 1 << 20


class Reader(Protocol):
    def read(self, size: int = -1) -> bytes: ...
    def close(self) -> None: ...


@dataclass
class ExportPart:
    """One file of an export. ``name``: the multipart field (``metadata``,
    ``rootfs``) of a split export, ``""`` for a unified one. ``size`` is None
    when not known ahead (a flattened legacy image)."""

    name: str
    filename: str
    size: int | None
    open: Callable[[], Reader]


def compression_ext(head: bytes) -> str:
    """LXD's file extension for a tarball starting with ``head``."""
    if head.startswith(b"\x1f\x8b"):
        return ".tar.gz"
    if head.startswith(b"\xfd7zXZ\x00"):
        return ".tar.xz"
    if head.startswith(b"BZh"):
        return ".tar.bz2"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return ".tar.zst"
    if head.startswith(b"hsqs"):
        return ".squashfs"
    return ".tar"


def file_part(path: Path, name: str, prefix: str, fingerprint: str) -> ExportPart:
    """A kept source file as a part named as LXD names it
    (``[meta-]FP.tar.xz``)."""
    with open(path, "rb") as f:
        ext = compression_ext(f.read(8))
        size = os.fstat(f.fileno()).st_size

    def opener() -> BinaryIO:
        return open(path, "rb")

    return ExportPart(name, f"{prefix}{fingerprint}{ext}", size, opener)


class FlatStream:
    """A flattened image tarball as GNU tar writes it. ``read`` until b"",
    then ``close`` (always: it ends tar, unmounts and removes the stage).
    ``read`` raises InternalError at the end if tar failed."""

    def __init__(self, stage: Path, p: subprocess.Popen[bytes]) -> None:
        self._stage = stage
        self._p = p
        self._closed = False

    def read(self, size: int = -1) -> bytes:
        assert self._p.stdout is not None
        data = self._p.stdout.read(size if size > 0 else _CHUNK)
        if not data:
            code = self._p.wait()
            if code != 0:
                err = (self._stage / "tar.err").read_bytes()[-2000:]
                raise InternalError(f"cannot flatten the image: tar exited {code}: "
                                    f"{err.decode(errors='replace').strip()}")
        return data

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._p.poll() is None:
            self._p.kill()
        if self._p.stdout is not None:
            self._p.stdout.close()
        self._p.wait()
        _remove_stage(self._stage)


def _remove_stage(stage: Path) -> None:
    try:
        overlay.umount(stage / "rootfs")
    finally:
        # nothing of an image is in the stage once unmounted: metadata and
        # templates were copied in; rmtree does not follow symlinks
        shutil.rmtree(stage, ignore_errors=True)


def flatten(stage: Path, lowers: list[Path], metadata: bytes, mtime: float,
            templates: Path | None, oci: bytes | None = None) -> FlatStream:
    """Start writing the unified tarball of an image made of ``lowers``
    (topmost first) into a :class:`FlatStream`. ``stage`` is a fresh empty
    directory on the store's filesystem, owned by the stream from now on
    (removed by its ``close``, or here on failure). ``metadata`` is the
    ``metadata.yaml`` to send (its mtime ``mtime``), ``templates`` the
    image's ``templates/`` if it has one, ``oci`` an OCI image's
    ``oci.json`` (``storage.oci_keep``; the same mtime).

    Raises:
        BadRequest: too many layers for one mount.
        InternalError: the mount or tar cannot start.
    """
    try:
        meta = stage / "metadata.yaml"
        meta.write_bytes(metadata)
        os.chmod(meta, 0o644)
        os.utime(meta, (mtime, mtime))
        names = ["metadata.yaml"]
        if oci is not None:
            (stage / "oci.json").write_bytes(oci)
            os.chmod(stage / "oci.json", 0o644)
            os.utime(stage / "oci.json", (mtime, mtime))
            names.append("oci.json")
        if templates is not None and templates.is_dir():
            proc.run(["cp", "-a", "--no-target-directory", "--", str(templates),
                      str(stage / "templates")])
            names.append("templates")
        (stage / "empty").mkdir(mode=0o755)
        (stage / "rootfs").mkdir(mode=0o755)
        overlay.mount_read_only([*lowers, stage / "empty"], stage / "rootfs")
        names.append("rootfs")
        with open(stage / "tar.err", "wb") as err:
            p = proc.spawn([*TAR_ARGS, f"--directory={stage}", "--", *names],
                           stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    except BaseException:
        _remove_stage(stage)
        raise
    return FlatStream(stage, p)
