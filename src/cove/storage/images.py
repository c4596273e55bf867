"""The image store: unpacked image root filesystems, imported safely.

Layout: ``<root>/<fingerprint>/rootfs/`` (the unpacked root filesystem, used
as an overlay lower layer), ``<root>/<fingerprint>/metadata.yaml`` (LXD's
image metadata, kept as imported) and, when the image has them,
``<root>/<fingerprint>/templates/``, and the file(s) it was imported from
(``source``, or ``source.meta`` + ``source.rootfs``; exported as they are,
their hash being the fingerprint, at the cost of keeping them). A published
image has ``layers.json`` instead of ``rootfs/`` (``storage.layers``).
``<root>`` itself is mode 0700: image
trees hold setuid binaries owned by root, and a host user who could reach
them could run them.

Design note: safe extraction
----------------------------
An image tarball is hostile input. It is read once, as a stream
(``tarfile`` mode ``r|*``, so gzip/xz/bzip2 are detected by content), while
its SHA-256 is computed on the fly, and every member is written through a
:class:`~cove.storage.safefs.RootFS` on the image's directory:

* Member names are normalised (leading ``/`` and ``./`` dropped); a name
  whose ``..`` would climb above the image root rejects the whole import.
* Every write resolves the member's parent with ``RESOLVE_IN_ROOT``, so a
  symlink in the image (``etc -> /etc``, ``up -> ../../..``) is followed as
  the container would follow it: inside the image, never on the host.
  Symlinks themselves are created exactly as archived.
* A hardlink's target is resolved inside the image too; it can only share an
  inode that is already in the image.
* Device nodes are skipped (never ``mknod``); fifos are created; owners,
  modes (setuid included), mtimes and ``user.*``/``security.capability``
  xattrs are kept. ``trusted.*`` xattrs are dropped: ``trusted.overlay.*``
  would be obeyed by overlayfs when the image becomes a lower layer.
* An existing entry is replaced by a later member of the same name (as tar
  does), which breaks hardlinks instead of writing through them.
* Everything lands in ``<root>/.tmp-<random>/`` first; only a complete image
  is renamed (``RENAME_NOREPLACE``) to ``<root>/<fingerprint>``. Any failure
  removes the temporary directory; :meth:`ImageStore.cleanup_temp` removes
  the ones a crash left behind.

Formats: a unified LXD tarball (``metadata.yaml`` + ``rootfs/`` [+
``templates/``] at the top), a plain rootfs tarball (no ``metadata.yaml`` at
the top: the whole archive is the rootfs), LXD's split format (a metadata
tarball + a rootfs tarball; squashfs rootfs files are not supported), and a
directory. Members under ``rootfs/`` are resolved against ``rootfs/`` as their
root while the archive is read, before it is known whether a
``metadata.yaml`` follows; in a plain tarball that happens to have a
top-level ``rootfs/`` directory this only changes where symlinks under it
point (still inside the image).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import secrets
import stat as st
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from cove.host.syscalls import RENAME_NOREPLACE, renameat2
from cove.model.errors import BadRequest, Conflict, CoveError, InternalError, NotFound
from cove.storage import oci_keep, overlay
from cove.storage._extract import (
    Budget,
    Extractor,
    HashingReader,
    Progress,
    ProgressMeter,
    lstat_type,
)
from cove.storage.export import SOURCE, SOURCE_META, SOURCE_ROOTFS, ExportPart, file_part
from cove.storage.layers import LayerStore
from cove.storage.safefs import RootFS

__all__ = [
    "Budget",
    "ImageStore",
    "ImportedImage",
    "Progress",
    "host_architecture",
    "normalize_architecture",
]

log = logging.getLogger(__name__)


_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_TMP_PREFIX = ".tmp-"
_METADATA_LIMIT = 1 << 20
_SQUASHFS_MAGIC = b"hsqs"
# LXD's architecture names, with the Debian/OCI spellings people also write.
_ARCH_ALIASES = {
    "amd64": "x86_64",
    "x86_64": "x86_64",
    "arm64": "aarch64",
    "aarch64": "aarch64",
    "armhf": "armv7l",
    "armv7l": "armv7l",
    "armv8l": "armv7l",
    "i386": "i686",
    "i686": "i686",
    "ppc64el": "ppc64le",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def normalize_architecture(name: str) -> str:
    """LXD's name for an architecture (``amd64`` -> ``x86_64``); unknown names unchanged."""
    return _ARCH_ALIASES.get(name.strip().lower(), name.strip())


def host_architecture() -> str:
    """The host's architecture as LXD names it."""
    return normalize_architecture(os.uname().machine)


@dataclass
class ImportedImage:
    """What an import produced. ``size`` is the number of bytes imported
    (the file(s), or the regular-file bytes of a directory)."""

    fingerprint: str
    size: int
    architecture: str
    properties: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def _parse_metadata(data: bytes) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise BadRequest(f"metadata.yaml is not valid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise BadRequest("metadata.yaml must be a mapping")
    return doc


def _scalar(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _metadata_fields(doc: dict[str, Any]) -> tuple[str, float, dict[str, str]]:
    arch = doc.get("architecture")
    architecture = normalize_architecture(arch) if isinstance(arch, str) and arch.strip() \
        else host_architecture()
    created = doc.get("creation_date")
    created_at = float(created) if isinstance(created, (int, float)) and \
        not isinstance(created, bool) and created > 0 else time.time()
    properties: dict[str, str] = {}
    raw = doc.get("properties")
    if isinstance(raw, dict):
        for key, value in raw.items():
            text = _scalar(value)
            if isinstance(key, str) and text is not None:
                properties[key] = text
            else:
                log.debug("ignoring image property %r: not a string", key)
    return architecture, created_at, properties


def _sniff(f: BinaryIO, label: str) -> bytes:
    """The first bytes of a seekable source (which is rewound), refusing squashfs."""
    head = f.read(8)
    f.seek(0)
    if head.startswith(_SQUASHFS_MAGIC):
        raise BadRequest(f"{label}: squashfs images are not supported, use a tarball")
    return head


class ImageStore:
    """Unpacked images under ``root``, keyed by fingerprint.

    Args:
        root: the store directory; created (mode 0700) if missing.

    Every method that takes a fingerprint wants the full 64-hex-digit one
    (prefixes and aliases are resolved by the caller) and raises BadRequest
    for anything else, so a fingerprint can never be a path.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise InternalError(f"cannot create image store {root}: {exc.strerror}") from None
        self.layers = LayerStore(self.root)

    # -- queries ----------------------------------------------------------

    @staticmethod
    def _check(fingerprint: str) -> str:
        if not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
            raise BadRequest(f"invalid image fingerprint {fingerprint!r}")
        return fingerprint

    def path(self, fingerprint: str) -> Path:
        """The image's directory (whether or not it exists)."""
        return self.root / self._check(fingerprint)

    def exists(self, fingerprint: str) -> bool:
        """Whether the image's layers are here (a ``rootfs/`` or a chain)."""
        d = self.path(fingerprint)
        return (d / "rootfs").is_dir() or (d / "layers.json").is_file()

    def rootfs(self, fingerprint: str) -> Path:
        """The image's topmost layer (its only one unless it was published),
        which also proves that its layers are all there.

        Raises:
            NotFound: the image, or one of its layers, is not in the store.
        """
        return self.lowers(fingerprint)[0]

    def lowers(self, fingerprint: str) -> list[Path]:
        """The image's layer directories, topmost first (overlay's ``lowerdir`` order).

        Raises:
            NotFound: the image, or one of its layers, is not in the store.
        """
        self._check(fingerprint)
        return self.layers.lowers(fingerprint)

    def fingerprints(self) -> list[str]:
        """Fingerprints of every image in the store, sorted."""
        return self.layers.images()

    def shared(self, fingerprint: str) -> bool:
        """Whether the image's own ``rootfs/`` is a layer of another image
        (one published from an instance of it): its directory must stay."""
        return self._check(fingerprint) in self.layers.referenced(besides=fingerprint)

    def sweep_layers(self) -> list[str]:
        """Remove the published layers that no image lists any more. Idempotent."""
        return self.layers.sweep_layers(self._remove)

    # -- the files an export sends ----------------------------------------

    def keep_source(self, fingerprint: str, path: Path, meta_path: Path | None) -> bool:
        """Keep the file(s) the image was imported from (its fingerprint is
        their hash), moved beside its layers, for an exact export. Files
        already kept stay (the same bytes). True if moved; never raises
        (an image without them is flattened on export instead)."""
        d = self.path(fingerprint)
        moves = [(path, SOURCE)] if meta_path is None else \
            [(meta_path, SOURCE_META), (path, SOURCE_ROOTFS)]
        if (d / moves[0][1]).exists():
            return False
        try:
            for src, name in reversed(moves):  # the part that marks it kept, last
                os.chmod(src, 0o600)
                os.rename(src, d / name)
        except OSError as exc:
            log.warning("not keeping the source of image %s: %s", fingerprint[:12], exc)
            return False
        return True

    def source_parts(self, fingerprint: str) -> list[ExportPart] | None:
        """The kept source as export parts (one: unified; two: split), or None."""
        d = self.path(fingerprint)
        try:
            if (d / SOURCE).is_file():
                return [file_part(d / SOURCE, "", "", fingerprint)]
            if (d / SOURCE_META).is_file() and (d / SOURCE_ROOTFS).is_file():
                return [file_part(d / SOURCE_META, "metadata", "meta-", fingerprint),
                        file_part(d / SOURCE_ROOTFS, "rootfs", "", fingerprint)]
        except OSError as exc:
            log.warning("image %s: cannot read its source: %s", fingerprint[:12], exc)
        return None

    def metadata(self, fingerprint: str) -> bytes | None:
        """The image's ``metadata.yaml`` as kept, or None."""
        try:
            return (self.path(fingerprint) / "metadata.yaml").read_bytes()
        except FileNotFoundError:
            return None

    def templates(self, fingerprint: str) -> Path | None:
        """The image's ``templates/`` directory, or None."""
        t = self.path(fingerprint) / "templates"
        return t if t.is_dir() and not t.is_symlink() else None

    def save_run_config(self, fingerprint: str, cmd: list[str], env: dict[str, str]) -> None:
        """Keep the image's command and environment beside its layers
        (``run.json``), for instances of an image whose row is deleted.
        Atomic; idempotent.

        Raises:
            NotFound: not in the store.
        """
        d = self.path(fingerprint)
        if not d.is_dir():
            raise NotFound(f"image {fingerprint} is not in the store")
        tmp = d / "run.json.tmp"
        tmp.write_text(json.dumps({"cmd": list(cmd), "env": dict(env)}))
        os.replace(tmp, d / "run.json")

    def run_config(self, fingerprint: str) -> tuple[list[str], dict[str, str]] | None:
        """What :meth:`save_run_config` kept, or None (never raises)."""
        try:
            doc = json.loads((self.path(fingerprint) / "run.json").read_text())
            cmd = [str(c) for c in doc.get("cmd") or []]
            env = {str(k): str(v) for k, v in (doc.get("env") or {}).items()}
        except (OSError, ValueError, AttributeError, CoveError):
            return None
        return cmd, env

    # -- removal ----------------------------------------------------------

    def delete(self, fingerprint: str) -> None:
        """Remove an image. It first vanishes atomically (renamed to a
        ``.tmp-`` name), then is removed; a crash in between leaves only a
        temporary directory for :meth:`cleanup_temp`.

        Raises:
            NotFound: not in the store.
        """
        self._check(fingerprint)
        doomed = f"{_TMP_PREFIX}del-{secrets.token_hex(8)}"
        try:
            os.rename(self.root / fingerprint, self.root / doomed)
        except FileNotFoundError:
            raise NotFound(f"image {fingerprint} is not in the store") from None
        except OSError as exc:
            raise InternalError(f"cannot delete image {fingerprint}: {exc.strerror}") from None
        self._remove(doomed)

    def cleanup_temp(self) -> int:
        """Remove temporary directories left by interrupted imports or deletes.

        Call once at startup, before any import runs. Returns how many were removed.
        """
        count = 0
        for name in os.listdir(self.root):
            if name.startswith(_TMP_PREFIX):
                log.info("removing leftover %s from the image store", name)
                for point in overlay.mounts_under(self.root / name):  # an export's
                    overlay.umount(point)
                self._remove(name)
                count += 1
        return count

    def _remove(self, name: str) -> None:
        # fd-based, never follows a symlink planted in an image.
        with RootFS(self.root) as store:
            try:
                store.remove("/" + name, recursive=True)
            except NotFound:
                pass

    def discard(self, tmp: Path) -> None:
        """Remove a ``.tmp-`` directory of the store (a failed import's);
        never raises (``cleanup_temp`` retries at the next start)."""
        self._discard(self._check_tmp(tmp))

    def _discard(self, tmp: Path) -> None:
        # Cleanup after a failed import must not hide why it failed.
        try:
            self._remove(tmp.name)
        except CoveError as exc:
            log.warning("cannot remove %s (cleanup_temp will retry): %s", tmp, exc)

    # -- imports ----------------------------------------------------------

    def import_file(self, path: Path, *, filename: str = "",
                    progress: Progress | None = None,
                    budget: Budget | None = None,
                    reuse: bool = False) -> ImportedImage:
        """Import a unified LXD image tarball or a plain rootfs tarball.

        Compression (none, gzip, xz, bzip2) is detected from the content.
        The fingerprint is the SHA-256 of the file, as LXD computes it.
        ``path`` is only read; the caller removes it.

        Args:
            filename: the name the user gave the file, for error messages.
            progress: called with 0-100 as the file is read.
            budget: the most it may unpack to, and whether to stop (see
                ``Budget``); unlimited when None.
            reuse: an image of the same fingerprint already stored is kept
                and this unpacking dropped (the same bytes make the same
                tree), instead of a Conflict: the layers of a deleted image
                that instances still use are adopted back.

        Raises:
            BadRequest: not a (supported) tarball; a member that escapes
                the image or cannot be created; bad ``metadata.yaml``.
            Conflict: an image with that fingerprint is already stored.
            InternalError: the file cannot be read, or the disk is full.
        """
        label = filename or Path(path).name
        tmp = self._mkdtemp()
        try:
            meter: ProgressMeter
            hasher = hashlib.sha256()
            with self._open_source(path, label) as f:
                meter = ProgressMeter(os.fstat(f.fileno()).st_size, progress)
                reader = HashingReader(f, hasher, meter)
                (tmp / "raw").mkdir(mode=0o755)
                with RootFS(tmp / "raw") as raw:
                    extractor = Extractor(raw, route_rootfs=True, budget=budget)
                    try:
                        extractor.run(reader, _sniff(f, label), label)
                    finally:
                        extractor.close()
                    reader.drain()
                    doc = self._settle(tmp, raw)
            architecture, created_at, properties = _metadata_fields(doc)
            result = ImportedImage(hasher.hexdigest(), meter.done, architecture, properties,
                                   created_at)
            self._commit(tmp, result.fingerprint, reuse=reuse)
        except BaseException:
            self._discard(tmp)
            raise
        meter.finish()
        return result

    def import_split(self, meta_path: Path, rootfs_path: Path, *,
                     progress: Progress | None = None,
                     budget: Budget | None = None,
                     reuse: bool = False) -> ImportedImage:
        """Import LXD's split format: a metadata tarball and a rootfs tarball.

        The fingerprint is the SHA-256 of the metadata file's bytes followed
        by the rootfs file's bytes (as LXD computes it). Only tarball rootfs
        files are supported, not squashfs.

        Raises:
            BadRequest: either file is not a tarball, the metadata tarball
                has no ``metadata.yaml``, or a member is unsafe.
            Conflict: an image with that fingerprint is already stored
                (unless ``reuse``, as in :meth:`import_file`).
        """
        tmp = self._mkdtemp()
        try:
            hasher = hashlib.sha256()
            with self._open_source(meta_path, "metadata") as mf, \
                    self._open_source(rootfs_path, "rootfs") as rf:
                meter = ProgressMeter(os.fstat(mf.fileno()).st_size + os.fstat(rf.fileno()).st_size,
                                  progress)
                (tmp / "meta").mkdir(mode=0o755)
                with RootFS(tmp / "meta") as meta:
                    reader = HashingReader(mf, hasher, meter)
                    _run_extractor(meta, mf, reader, "metadata tarball", budget)
                    reader.drain()
                    if lstat_type(meta, "/metadata.yaml") != "file":
                        raise BadRequest("metadata tarball has no metadata.yaml")
                    doc = self._keep_metadata(tmp, meta)
                self._remove(f"{tmp.name}/meta")
                (tmp / "rootfs").mkdir(mode=0o755)
                with RootFS(tmp / "rootfs") as rootfs:
                    reader = HashingReader(rf, hasher, meter)
                    _run_extractor(rootfs, rf, reader, "rootfs tarball", budget)
                    reader.drain()
            architecture, created_at, properties = _metadata_fields(doc)
            result = ImportedImage(hasher.hexdigest(), meter.done, architecture, properties,
                                   created_at)
            self._commit(tmp, result.fingerprint, reuse=reuse)
        except BaseException:
            self._discard(tmp)
            raise
        meter.finish()
        return result

    def import_dir(self, path: Path, *, progress: Progress | None = None) -> ImportedImage:
        """Import a root filesystem directory (or a directory holding
        ``metadata.yaml`` and ``rootfs/``), copying it into the store.

        The source is read through a RootFS: symlinks are copied, never
        followed, device nodes and sockets are skipped, hardlinks within it
        are kept. The fingerprint is the SHA-256 of a canonical listing
        (format ``cove-dir-v1``): for every entry, in pre-order with names
        sorted, the NUL-separated fields type, relative path, octal mode,
        uid, gid and then the SHA-256 of the content (file), the link text
        (symlink), or the first path of the inode (further hardlinks),
        preceded by the SHA-256 of ``metadata.yaml`` when there is one.
        Mtimes are not part of it, so the same tree always gets the same
        fingerprint. ``size`` is the total of regular-file bytes.

        Raises:
            NotFound: ``path`` does not exist. BadRequest: not a directory,
                or bad ``metadata.yaml``. Conflict: already stored.
        """
        tmp = self._mkdtemp()
        try:
            with RootFS(path) as src:
                doc: dict[str, Any] = {}
                listing = hashlib.sha256(b"cove-dir-v1\0")
                source = src
                if lstat_type(src, "/metadata.yaml") == "file" and \
                        lstat_type(src, "/rootfs") == "directory":
                    meta = src.read_bytes("/metadata.yaml", _METADATA_LIMIT)
                    doc = _parse_metadata(meta)
                    listing.update(f"m\0{hashlib.sha256(meta).hexdigest()}\0".encode())
                    _write_new(tmp / "metadata.yaml", meta)
                    source = src.subdir("/rootfs")
                try:
                    (tmp / "rootfs").mkdir(mode=0o755)
                    with RootFS(tmp / "rootfs") as dst:
                        size = _copy_tree(source, dst, listing, progress)
                finally:
                    if source is not src:
                        source.close()
                fingerprint = listing.hexdigest()
            architecture, created_at, properties = _metadata_fields(doc)
            result = ImportedImage(fingerprint, size, architecture, properties, created_at)
            self._commit(tmp, fingerprint)
        except BaseException:
            self._discard(tmp)
            raise
        if progress is not None:
            progress(100)
        return result

    # -- import helpers -----------------------------------------------------

    def _mkdtemp(self) -> Path:
        try:
            return Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=self.root))
        except OSError as exc:
            raise InternalError(f"cannot create a directory in the image store: "
                                f"{exc.strerror}") from None

    @staticmethod
    def _open_source(path: Path, label: str) -> BinaryIO:
        try:
            f = open(path, "rb")  # noqa: SIM115 - returned to a with-statement
        except FileNotFoundError:
            raise NotFound(f"{label}: file not found") from None
        except OSError as exc:
            raise InternalError(f"{label}: cannot open: {exc.strerror}") from None
        try:
            if not st.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise BadRequest(f"{label}: not a regular file")
            _sniff(f, label)
        except BaseException:
            f.close()
            raise
        return f

    def _keep_metadata(self, tmp: Path, src: RootFS) -> dict[str, Any]:
        """Parse ``/metadata.yaml`` of ``src``, copy it and ``templates/`` into ``tmp``."""
        data = src.read_bytes("/metadata.yaml", _METADATA_LIMIT)
        doc = _parse_metadata(data)
        # A fresh regular file, never a rename of whatever the archive made.
        _write_new(tmp / "metadata.yaml", data)
        if lstat_type(src, "/templates") == "directory":
            _rename_at(src, "templates", tmp, "templates")
        oci_keep.keep(src, tmp)  # an OCI image's run config, exported by cove
        return doc

    def _settle(self, tmp: Path, raw: RootFS) -> dict[str, Any]:
        """Decide unified vs plain once the whole archive is on disk, and lay
        out ``tmp`` as ``rootfs/`` [+ ``metadata.yaml``, ``templates/``]."""
        meta_type = lstat_type(raw, "/metadata.yaml")
        if meta_type is None:
            _rename_at(None, str(tmp / "raw"), tmp, "rootfs")
            return {}
        if meta_type != "file":
            raise BadRequest("metadata.yaml is not a regular file")
        if lstat_type(raw, "/rootfs") != "directory":
            raise BadRequest("image has metadata.yaml but no rootfs/ directory")
        doc = self._keep_metadata(tmp, raw)
        _rename_at(raw, "rootfs", tmp, "rootfs")
        self._remove(f"{tmp.name}/raw")
        return doc

    def commit(self, tmp: Path, fingerprint: str) -> None:
        """Move a finished image directory (made under the store, e.g. by
        ``layers.mkdtemp``) into place as ``fingerprint``, atomically.

        Raises:
            ImageExists: a directory of that fingerprint is there already.
        """
        self._commit(self._check_tmp(tmp), self._check(fingerprint))

    def _check_tmp(self, tmp: Path) -> Path:
        if Path(tmp).parent != self.root or not Path(tmp).name.startswith(_TMP_PREFIX):
            raise InternalError(f"{tmp} is not a temporary directory of the image store")
        return Path(tmp)

    def _commit(self, tmp: Path, fingerprint: str, *, reuse: bool = False) -> None:
        os.chmod(tmp, 0o755)
        try:
            renameat2(-100, str(tmp), -100, str(self.root / fingerprint), RENAME_NOREPLACE)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                if reuse and self.exists(fingerprint):
                    self._remove(tmp.name)  # the stored tree may be a running lower layer
                    return
                raise ImageExists(fingerprint) from None
            raise InternalError(f"cannot store image {fingerprint}: {exc.strerror}") from None


class ImageExists(Conflict):
    """The layers of ``fingerprint`` are stored already (another project may
    hold the image: the importer decides)."""

    def __init__(self, fingerprint: str) -> None:
        super().__init__(f"image {fingerprint} already exists")
        self.fingerprint = fingerprint


def _run_extractor(fs: RootFS, f: BinaryIO, reader: HashingReader, label: str,
                   budget: Budget | None) -> None:
    extractor = Extractor(fs, route_rootfs=False, budget=budget)
    try:
        extractor.run(reader, _sniff(f, label), label)
    finally:
        extractor.close()


def _rename_at(src: RootFS | None, name: str, dst_dir: Path, new_name: str) -> None:
    """Rename ``name`` (inside ``src``, or a host path when ``src`` is None) to ``dst_dir/new_name``."""
    dfd = os.open(dst_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.rename(name, new_name, src_dir_fd=src.fd if src is not None else None,
                  dst_dir_fd=dfd)
    except OSError as exc:
        raise InternalError(f"cannot move {name} into place: {exc.strerror}") from None
    finally:
        os.close(dfd)


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644)
    with open(fd, "wb") as f:
        f.write(data)


class _TeeReader:
    """Reads a file fd while hashing it (for the per-file digest of import_dir)."""

    def __init__(self, fd: int, hasher: Any, meter: ProgressMeter | None) -> None:
        self.f = open(fd, "rb", closefd=True)  # noqa: SIM115 - closed by close()
        self.hasher = hasher
        self.meter = meter
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.hasher.update(data)
        self.size += len(data)
        if self.meter is not None:
            self.meter.add(len(data))
        return data

    def close(self) -> None:
        self.f.close()


def _copy_tree(src: RootFS, dst: RootFS, listing: Any, progress: Progress | None) -> int:
    """Copy ``src`` into the empty ``dst``, feeding the canonical listing to
    ``listing`` (a hash object); return the regular-file bytes copied."""
    meter: ProgressMeter | None = None
    if progress is not None:
        total = sum(s.st_size for _, s in src._walk_raw("/") if st.S_ISREG(s.st_mode))
        meter = ProgressMeter(total, progress)
    top = src.stat("/")
    dst.set_attrs("/", uid=top.uid, gid=top.gid, mode=top.mode)
    listing.update(f"d\0\0{top.mode:o}\0{top.uid}\0{top.gid}\0\0".encode())
    inodes: dict[tuple[int, int], str] = {}
    dir_times: list[tuple[str, float]] = [("/", top.mtime)]
    size = 0
    for rel, s in src._walk_raw("/"):
        path = "/" + rel
        mode = st.S_IMODE(s.st_mode)
        if st.S_ISDIR(s.st_mode):
            kind, extra = "d", ""
            dst.mkdir(path, uid=s.st_uid, gid=s.st_gid, mode=mode)
            dir_times.append((path, s.st_mtime))
        elif st.S_ISREG(s.st_mode):
            first = inodes.get((s.st_dev, s.st_ino)) if s.st_nlink > 1 else None
            if first is not None:
                kind, extra = "h", first
                dst.link(path, first)
            else:
                kind = "f"
                digest = hashlib.sha256()
                reader = _TeeReader(src.open_read(path), digest, meter)
                try:
                    dst.write_file(path, reader, uid=s.st_uid, gid=s.st_gid,  # type: ignore[arg-type]
                                   mode=mode)
                finally:
                    reader.close()
                size += reader.size
                extra = digest.hexdigest()
                if s.st_nlink > 1:
                    inodes[(s.st_dev, s.st_ino)] = path
                dst.set_attrs(path, mtime=s.st_mtime)
        elif st.S_ISLNK(s.st_mode):
            kind, extra = "l", src.readlink(path)
            dst.symlink(path, extra, uid=s.st_uid, gid=s.st_gid)
            dst.set_attrs(path, mtime=s.st_mtime)
        elif st.S_ISFIFO(s.st_mode):
            kind, extra = "p", ""
            dst.mkfifo(path, uid=s.st_uid, gid=s.st_gid, mode=mode)
            dst.set_attrs(path, mtime=s.st_mtime)
        else:
            log.debug("skipping %s (device or socket) in image directory", path)
            continue
        listing.update(f"{kind}\0{rel}\0{mode:o}\0{s.st_uid}\0{s.st_gid}\0{extra}\0"
                       .encode("utf-8", "surrogateescape"))
    for path, mtime in reversed(dir_times):
        dst.set_attrs(path, mtime=mtime)
    return size

