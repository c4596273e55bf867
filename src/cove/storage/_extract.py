"""Reading an image tarball as hostile input: one pass over a stream,
hashed on the fly, every member written through a ``RootFS`` so that no
name, symlink or hardlink in it reaches outside the image (the rules are
in ``cove.storage.images``' design note).
"""

from __future__ import annotations

import bz2
import gzip
import logging
import lzma
import os
import stat as st
import tarfile
import zlib
from collections.abc import Callable
from typing import IO, Any, BinaryIO, Self, cast

from cove.model.errors import BadRequest, CoveError, InternalError, NotFound
from cove.storage.safefs import RootFS

log = logging.getLogger("cove.storage.images")

__all__ = ["Budget", "Extractor", "HashingReader", "Progress", "ProgressMeter", "decompressed",
           "lstat_type"]

Progress = Callable[[int], None]
"""Called with a percentage (0-100) whenever it changes during an import."""

_CHUNK = 1 << 20
_XATTR_ALLOWED = ("user.", "security.capability")
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# What a corrupt or truncated archive raises from tarfile and the
# decompressors. OSError is among them (gzip.BadGzipFile, bz2's "Invalid data
# stream"): cove's own file operations never let an OSError out (RootFS maps
# them to cove errors and the source reader to InternalError), so an OSError
# here can only come from decoding the archive.
_TAR_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, ValueError, OSError)


# What one tar member costs besides its data (an inode, a directory entry):
# charged so that a million empty files count too.
_MEMBER_COST = 512


class Budget:
    """What one unpack may write, and whether to stop: an archive is hostile,
    so a decompression bomb (or a sparse member claiming a terabyte) is
    refused when its declared sizes pass ``limit``, and a cancelled
    operation stops between any two reads of the stream.

    Raises (from ``charge`` and ``check``):
        BadRequest: past the limit, naming the member and the limit.
        InternalError: cancelled ("Operation cancelled").
    """

    def __init__(self, limit: int | None, cancelled: Callable[[], bool] | None = None,
                 setting: str = "") -> None:
        self.limit = limit
        self.used = 0
        self._cancelled = cancelled
        self._setting = setting

    def charge(self, size: int, name: str) -> None:
        self.used += max(size, 0) + _MEMBER_COST
        if self.limit is not None and self.used > self.limit:
            where = f" (server setting {self._setting})" if self._setting else ""
            raise BadRequest(f"archive member {name!r}: the archive unpacks to more than "
                             f"{self.limit} bytes, the most allowed{where}")
        self.check()

    def check(self) -> None:
        if self._cancelled is not None and self._cancelled():
            raise InternalError("Operation cancelled")


class _Checked:
    """A stream whose every read first asks the budget whether to go on."""

    def __init__(self, raw: IO[bytes], budget: Budget) -> None:
        self._raw = raw
        self._budget = budget

    def read(self, size: int = -1) -> bytes:
        self._budget.check()
        return self._raw.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


class ProgressMeter:
    """Turns byte counts into calls of ``progress(percent)`` when the percent changes."""

    def __init__(self, total: int, callback: Progress | None) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.callback = callback
        self.last = -1

    def add(self, n: int) -> None:
        self.done += n
        self._report(min(99, self.done * 100 // self.total))

    def finish(self) -> None:
        self._report(100)

    def _report(self, percent: int) -> None:
        if self.callback is not None and percent != self.last:
            self.last = percent
            self.callback(percent)


class HashingReader:
    """A forward-only stream that hashes and counts every byte of the source.

    ``seek`` only moves forward (by reading, so skipped bytes are hashed
    too); that is all ``tarfile``'s ``r:`` mode and the decompressors need
    when members are processed in order, and it keeps the import a single
    pass over the file.
    """

    def __init__(self, raw: BinaryIO, hasher: Any, progress: ProgressMeter | None) -> None:
        self.raw = raw
        self.hasher = hasher
        self.progress = progress
        self.pos = 0
        self.mode = "rb"

    def read(self, size: int | None = -1) -> bytes:
        try:
            data = self.raw.read(-1 if size is None else size)
        except OSError as exc:
            raise InternalError(f"cannot read image data: {exc.strerror or exc}") from None
        self.hasher.update(data)
        self.pos += len(data)
        if self.progress is not None:
            self.progress.add(len(data))
        return data

    def tell(self) -> int:
        return self.pos

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        # The source file belongs to the caller, which closes it.
        pass

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = offset + (self.pos if whence == os.SEEK_CUR else 0)
        if whence not in (os.SEEK_SET, os.SEEK_CUR) or target < self.pos:
            raise tarfile.ReadError("image archive needs a backward seek, which a "
                                    "single-pass import cannot do")
        while self.pos < target:
            if not self.read(min(_CHUNK, target - self.pos)):
                break
        return self.pos

    def drain(self) -> None:
        """Read to the end: the fingerprint covers every byte, tar padding included."""
        while self.read(_CHUNK):
            pass


def decompressed(reader: HashingReader, head: bytes) -> IO[bytes]:
    """The tar stream inside ``reader``, whose first bytes are ``head``."""
    # Decompression is done here rather than by tarfile's "r|*" stream mode:
    # that mode re-slices its whole buffer on every 512-byte header read,
    # which made big imports twice as slow as tar(1).
    raw = cast(IO[bytes], reader)  # duck-typed: read/seek/tell are all they use
    if head.startswith(b"\x1f\x8b"):
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    if head.startswith(b"BZh"):
        return cast(IO[bytes], bz2.BZ2File(raw))
    if head.startswith(b"\xfd7zXZ\x00"):
        return cast(IO[bytes], lzma.LZMAFile(raw))
    if head.startswith(_ZSTD_MAGIC):
        # Python 3.11 has no zstd: the zstandard wheel streams it in-process,
        # as fast as a pipe through zstd(1) and without a feeder thread
        # (docs/images.md has the measurement). Imported here: rare, and off
        # the CLI's path.
        import zstandard

        return cast(IO[bytes], _Zstd(zstandard.ZstdDecompressor().stream_reader(
            raw, read_across_frames=True, closefd=False), zstandard.ZstdError))
    return raw


class _Zstd:
    """A zstandard reader whose decoding errors are ValueErrors (a bad archive)."""

    def __init__(self, raw: Any, error: type[Exception]) -> None:
        self._raw = raw
        self._error = error

    def read(self, size: int = -1) -> bytes:
        try:
            return bytes(self._raw.read(size))
        except self._error as exc:
            raise ValueError(f"zstd: {exc}") from None

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        try:
            return int(self._raw.seek(offset, whence))
        except self._error as exc:
            raise ValueError(f"zstd: {exc}") from None

    def tell(self) -> int:
        return int(self._raw.tell())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._raw.close()


def lstat_type(fs: RootFS, path: str) -> str | None:
    """The type of ``path`` in ``fs`` without following it, None when missing."""
    try:
        return fs.stat(path, follow=False).type
    except NotFound:
        return None


def _member_parts(name: str) -> list[str]:
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise BadRequest("points outside the image")
            parts.pop()
            continue
        parts.append(part)
    return parts


def _path(parts: list[str]) -> str:
    return "/" + "/".join(parts)


class Extractor:
    """Writes the members of one tar stream into a RootFS, member by member.

    With ``route_rootfs``, members under ``rootfs/`` are written through a
    second RootFS rooted at ``rootfs/`` (so their symlinks resolve against
    the image's root filesystem, as they will in the container).
    """

    kind = "image"  # what errors call the archive

    def __init__(self, raw: RootFS, *, route_rootfs: bool, budget: Budget | None = None) -> None:
        self.raw = raw
        self.route_rootfs = route_rootfs
        self.budget = budget or Budget(None)
        self._rootfs: RootFS | None = None
        self._dir_times: list[tuple[RootFS, str, float]] = []

    def close(self) -> None:
        if self._rootfs is not None:
            self._rootfs.close()
            self._rootfs = None

    def _view(self, parts: list[str], is_dir: bool) -> tuple[RootFS, list[str]]:
        if not self.route_rootfs or not parts or parts[0] != "rootfs":
            return self.raw, parts
        if len(parts) == 1:
            if not is_dir:
                raise BadRequest("rootfs must be a directory")
            return self.raw, parts
        if self._rootfs is None:
            self.raw.mkdir("/rootfs", mode=0o755, exist_ok=True)
            try:
                self._rootfs = self.raw.subdir("/rootfs")
            except BadRequest:
                raise BadRequest("rootfs is not a directory") from None
        return self._rootfs, parts[1:]

    def run(self, reader: HashingReader, head: bytes, label: str) -> None:
        try:
            with decompressed(reader, head) as stream:
                self.run_tar(stream, label)
        except _TAR_ERRORS as exc:
            raise BadRequest(f"{label}: not a valid {self.kind} archive: {exc}") from None

    def run_tar(self, stream: IO[bytes], label: str) -> None:
        """Write every member of the (decompressed) tar ``stream``.

        Raises: BadRequest (a bad archive or member), InternalError."""
        try:
            with tarfile.open(fileobj=cast(IO[bytes], _Checked(stream, self.budget)),
                              mode="r:") as tar:
                while (member := tar.next()) is not None:
                    # TarFile keeps every TarInfo otherwise; images have
                    # hundreds of thousands of members.
                    tar.members.clear()  # type: ignore[attr-defined]  # not in typeshed
                    self._member(tar, member)
        except _TAR_ERRORS as exc:
            raise BadRequest(f"{label}: not a valid {self.kind} archive: {exc}") from None
        # Directory mtimes last and deepest first: creating entries inside a
        # directory changes its mtime.
        for view, path, mtime in reversed(self._dir_times):
            try:
                view.set_attrs(path, mtime=mtime)
            except CoveError as exc:
                log.debug("cannot set mtime of %s: %s", path, exc)

    def _member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        self.budget.charge(m.size if m.isreg() else 0, m.name)
        try:
            view, vparts = self._view(_member_parts(m.name), m.isdir())
            path = _path(vparts)
            if m.isdir():
                self._directory(view, vparts, m)
            elif not vparts:
                raise BadRequest("only a directory can be the image root")
            elif m.isreg():
                self._replace(view, path)
                src = tar.extractfile(m)
                assert src is not None  # isreg() members always have data
                self._in_parent(view, vparts, lambda: view.write_file(
                    path, src, uid=m.uid, gid=m.gid, mode=st.S_IMODE(m.mode)))  # type: ignore[arg-type]
                self._finish(view, path, m)
            elif m.issym():
                self._replace(view, path)
                self._in_parent(view, vparts, lambda: view.symlink(
                    path, m.linkname, uid=m.uid, gid=m.gid))
                view.set_attrs(path, mtime=m.mtime)
            elif m.islnk():
                tview, tparts = self._view(_member_parts(m.linkname), False)
                self._replace(view, path)
                self._in_parent(view, vparts, lambda: view.link(
                    path, _path(tparts), source=tview))
            elif m.isfifo():
                self._replace(view, path)
                self._in_parent(view, vparts, lambda: view.mkfifo(
                    path, uid=m.uid, gid=m.gid, mode=st.S_IMODE(m.mode)))
                view.set_attrs(path, mtime=m.mtime)
            elif m.ischr() or m.isblk():
                log.debug("skipping device node %s in image", m.name)
            else:
                log.debug("skipping %s in image (tar type %r)", m.name, m.type)
        except InternalError as exc:
            raise InternalError(f"{self.kind} member {m.name!r}: {exc.message}") from None
        except CoveError as exc:
            # A missing link target or a file where a directory should be is
            # a broken archive, not a missing resource: 400, naming the member.
            raise BadRequest(f"{self.kind} member {m.name!r}: {exc.message}") from None

    def _directory(self, view: RootFS, vparts: list[str], m: tarfile.TarInfo) -> None:
        path = _path(vparts)
        if vparts:
            existing = lstat_type(view, path)
            if existing is not None and existing != "directory":
                view.remove(path)
            view.mkdir(path, parents=True, mode=0o755)
        view.set_attrs(path, uid=m.uid, gid=m.gid, mode=st.S_IMODE(m.mode))
        self._xattrs(view, path, m)
        self._dir_times.append((view, path, m.mtime))

    def _finish(self, view: RootFS, path: str, m: tarfile.TarInfo) -> None:
        self._xattrs(view, path, m)
        view.set_attrs(path, mtime=m.mtime)

    @staticmethod
    def _replace(view: RootFS, path: str) -> None:
        # Tar semantics: a later member replaces an earlier one. Unlinking
        # first means we never write through an existing symlink or hardlink.
        try:
            view.remove(path)
        except NotFound:
            pass

    @staticmethod
    def _in_parent(view: RootFS, vparts: list[str], create: Callable[[], None]) -> None:
        # Archives usually list parents first; create them only when missing.
        try:
            create()
        except NotFound:
            if len(vparts) < 2 or lstat_type(view, _path(vparts[:-1])) == "directory":
                raise
            view.mkdir(_path(vparts[:-1]), parents=True, mode=0o755)
            create()

    @staticmethod
    def _xattrs(view: RootFS, path: str, m: tarfile.TarInfo) -> None:
        for key, value in m.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr."):]
            if not name.startswith(_XATTR_ALLOWED):
                log.debug("dropping xattr %s of %s", name, m.name)
                continue
            try:
                view.set_xattr(path, name, value.encode("utf-8", "surrogateescape"))
            except CoveError as exc:
                log.debug("cannot set xattr %s on %s: %s", name, m.name, exc)


