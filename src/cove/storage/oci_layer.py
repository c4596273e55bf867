"""One OCI image layer, unpacked as hostile input into a layer directory.

A layer is a tar stream (uncompressed, gzip or zstd; detected by content)
in a blob whose SHA-256 and size the manifest names, and whose uncompressed
stream's SHA-256 is the layer's ``diff_id`` in the image config. It is
written by the same :class:`~cove.storage._extract.Extractor` as an image
tarball (every name, symlink and hardlink resolved inside the layer through
a ``RootFS``; owners, modes, allowed xattrs kept), with the layer rules on
top (:class:`LayerExtractor`):

* A name that is absolute or has a ``..`` component refuses the layer (an
  image tarball's are normalised; a layer has no excuse for either).
* ``DIR/.wh.NAME`` becomes an overlay whiteout: a 0/0 character device
  ``DIR/NAME`` that hides ``NAME`` of the layers below. As the OCI spec
  says, it never hides an entry of its own layer: one there already stays,
  and a later member of that name replaces the whiteout.
* ``DIR/.wh..wh..opq`` makes ``DIR`` opaque (``trusted.overlay.opaque=y``):
  what the layers below have in it is hidden, its own entries stay.
* Refused, naming the member: a whiteout that is not a regular-file entry, a
  whiteout name in the middle of a path or as a hardlink target, ``.wh.``
  with no name, ``.``, ``..`` or another ``.wh.`` prefix after it (aufs'
  ``.wh..wh.plnk`` and friends), an opaque marker at the layer's root, a
  whiteout whose parent is (or passes through) anything but a directory of
  this layer (a symlinked parent would put the whiteout somewhere else),
  and device nodes (a layer is not a way to get a device into a container).

Caps: the blob must be exactly the size the manifest declares (checked on
the open file before a byte is read, and by counting); its digest and the
``diff_id`` are checked once the stream ends (the temporary tree is dropped
on a mismatch). What a layer may write is the import's ``Budget``: member
sizes are charged from their headers BEFORE any data is written, so a
decompression bomb claiming 20 GiB stops at its first header, and the
uncompressed stream itself (read to its end for the ``diff_id``) is capped
at the same number of bytes, so trailing padding cannot spin forever.
"""

from __future__ import annotations

import hashlib
import os
import stat as st
import tarfile
from pathlib import Path
from typing import IO, BinaryIO

from cove.model.errors import BadRequest, CoveError, InternalError
from cove.storage._extract import (
    _TAR_ERRORS,
    Budget,
    Extractor,
    HashingReader,
    ProgressMeter,
    decompressed,
    lstat_type,
)
from cove.storage.safefs import RootFS

__all__ = ["LayerExtractor", "extract_layer"]

_WH = ".wh."
_OPAQUE_MARK = ".wh..wh..opq"
_OPAQUE_XATTR = "trusted.overlay.opaque"
_CHUNK = 1 << 20


def _parts(name: str, what: str) -> list[str]:
    if name.startswith("/"):
        raise BadRequest(f"layer member {name!r}: {what} is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadRequest(f"layer member {name!r}: {what} has a '..' component")
    return parts


def _path(parts: list[str]) -> str:
    return "/" + "/".join(parts)


class LayerExtractor(Extractor):
    """An :class:`Extractor` with the layer rules of the module note."""

    kind = "layer"

    def __init__(self, fs: RootFS, budget: Budget) -> None:
        super().__init__(fs, route_rootfs=False, budget=budget)

    def _member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = _parts(m.name, "its name")
        if any(p.startswith(_WH) for p in parts[:-1]):
            raise BadRequest(f"layer member {m.name!r}: a whiteout name inside a path")
        if m.ischr() or m.isblk():
            raise BadRequest(f"layer member {m.name!r}: device nodes are not allowed in a layer")
        if m.islnk() and any(p.startswith(_WH) for p in _parts(m.linkname, "its link target")):
            raise BadRequest(f"layer member {m.name!r}: a hardlink to a whiteout")
        if parts and parts[-1].startswith(_WH):
            self.budget.charge(0, m.name)
            try:
                self._whiteout(parts, m)
            except InternalError as exc:
                raise InternalError(f"layer member {m.name!r}: {exc.message}") from None
            except CoveError as exc:
                if isinstance(exc, BadRequest) and exc.message.startswith("layer member"):
                    raise
                raise BadRequest(f"layer member {m.name!r}: {exc.message}") from None
            return
        super()._member(tar, m)

    def _whiteout(self, parts: list[str], m: tarfile.TarInfo) -> None:
        if not m.isreg():
            raise BadRequest(f"layer member {m.name!r}: a whiteout must be a regular file entry")
        parent, base = parts[:-1], parts[-1]
        if base == _OPAQUE_MARK:
            if not parent:
                raise BadRequest(f"layer member {m.name!r}: an opaque marker at the layer's root")
            self._real_dir(parent, m.name)
            self.raw.set_xattr(_path(parent), _OPAQUE_XATTR, b"y")
            return
        target = base[len(_WH):]
        if target in ("", ".", "..") or target.startswith(_WH):
            raise BadRequest(f"layer member {m.name!r}: not a valid whiteout name")
        self._real_dir(parent, m.name)
        path = _path([*parent, target])
        if lstat_type(self.raw, path) is not None:
            return  # an entry of this very layer: a whiteout hides only those below
        self.raw.whiteout(path)

    def _real_dir(self, parts: list[str], name: str) -> None:
        """Make sure every prefix of ``parts`` is a real directory of the
        layer (made, 0755, where missing), never a symlink or a file."""
        for i in range(1, len(parts) + 1):
            path = _path(parts[:i])
            kind = lstat_type(self.raw, path)
            if kind is None:
                self.raw.mkdir(path, mode=0o755)
            elif kind != "directory":
                raise BadRequest(f"layer member {name!r}: the whiteout's parent {path} is a "
                                 f"{kind}, not a directory of the layer")


class _Uncompressed:
    """Hashes (for the ``diff_id``) and counts the uncompressed stream,
    refusing more than ``cap`` bytes."""

    def __init__(self, raw: IO[bytes], cap: int | None, label: str) -> None:
        self._raw = raw
        self.hasher = hashlib.sha256()
        self.pos = 0
        self._cap = cap
        self._label = label

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.hasher.update(data)
        self.pos += len(data)
        if self._cap is not None and self.pos > self._cap:
            raise BadRequest(f"{self._label}: uncompresses to more than {self._cap} bytes, "
                             "the most allowed")
        return data

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = offset + (self.pos if whence == os.SEEK_CUR else 0)
        if whence not in (os.SEEK_SET, os.SEEK_CUR) or target < self.pos:
            raise tarfile.ReadError("a layer is read in one pass, not seeked back")
        while self.pos < target and self.read(min(_CHUNK, target - self.pos)):
            pass
        return self.pos

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def extract_layer(blob: BinaryIO, dest: Path, *, digest: str, size: int,
                  diff_id: str, budget: Budget, meter: ProgressMeter | None = None,
                  label: str = "layer") -> None:
    """Unpack the layer ``blob`` (an open file) into the empty directory
    ``dest`` and check it against the manifest and the config.

    Args:
        digest: the blob's SHA-256, hex.  size: its size in bytes.
        diff_id: the uncompressed stream's SHA-256, hex.
        budget: what it may write (and whether to stop).
        meter: counts the blob's bytes as they are read.

    Not idempotent (``dest`` must be empty); on any error ``dest`` holds a
    partial tree the caller removes.

    Raises:
        BadRequest: a size or digest mismatch, not a tar stream, a member
            the module note refuses, or past the budget.
        InternalError: cancelled, or the disk failed.
    """
    have = os.fstat(blob.fileno()).st_size
    if have != size:
        raise BadRequest(f"{label}: the blob is {have} bytes, the manifest declares {size}")
    head = blob.read(8)
    blob.seek(0)
    hasher = hashlib.sha256()
    reader = HashingReader(blob, hasher, meter)
    with RootFS(dest) as fs:
        extractor = LayerExtractor(fs, budget)
        try:
            with decompressed(reader, head) as stream:
                plain = _Uncompressed(stream, budget.limit, label)
                extractor.run_tar(plain, label)  # type: ignore[arg-type]  # duck-typed
                plain.drain()
        except _TAR_ERRORS as exc:
            raise BadRequest(f"{label}: not a valid layer: {exc}") from None
        finally:
            extractor.close()
    reader.drain()
    if reader.pos != size:
        raise BadRequest(f"{label}: read {reader.pos} bytes, the manifest declares {size}")
    if hasher.hexdigest() != digest:
        raise BadRequest(f"{label}: digest mismatch: the blob is sha256:{hasher.hexdigest()}, "
                         f"the manifest says sha256:{digest}")
    if plain.hasher.hexdigest() != diff_id:
        raise BadRequest(f"{label}: diff_id mismatch: the layer is "
                         f"sha256:{plain.hasher.hexdigest()}, the config says sha256:{diff_id}")


def is_whiteout(s: os.stat_result) -> bool:
    """Whether ``s`` (an lstat) is an overlay whiteout."""
    return st.S_ISCHR(s.st_mode) and s.st_rdev == 0
