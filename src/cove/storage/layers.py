"""The layer store: an image is its metadata and an ORDERED list of layers,
each layer a directory stored once and shared by every image that lists it.

Layout, under the image store's root (``ImageStore.root``):

* ``<fp>/rootfs/`` — the one layer of an image unpacked from a tarball or a
  directory (every image before layers existed, and every import now). Its
  layer id is the image's fingerprint; nothing is moved or copied, so an
  existing root keeps working as it is ("migrated" by being read this way).
* ``<fp>/layers.json`` — ``{"layers": [ID, ...]}``, bottom first, for an
  image made of several layers (a published instance: its parent's layers
  and the instance's upper layer on top). Such an image has no ``rootfs/``.
* ``layers/<ID>/`` — a layer that is not some image's own ``rootfs/``
  (a published upper layer). IDs are 64 hex digits, as fingerprints;
  published layers get a random 256-bit id, so the name says nothing about
  the content (issue 13's registry layers can use their diff_id here).

Design note: references, not counters. Which layers are in use is read from
the ``layers.json`` files themselves (:meth:`LayerStore.referenced`), never
from a separately kept counter: a crash between two writes cannot leave a
count that lies. An image directory is removed by the images service only
when no image row, no instance and no other image's chain refers to it
(``Images.collect``); a ``layers/`` entry is removed when no chain lists it
(:meth:`LayerStore.sweep_layers`). A new layer is copied into a ``.tmp-``
directory of the store and renamed into ``layers/`` in one step; a chain
file is written only inside a ``.tmp-`` image directory that is renamed
into place whole, so the store never holds a half layer or a chain that
names a missing one (startup's ``cleanup_temp`` and ``sweep`` remove what a
killed coved left).

Overlayfs limits: layers become ``lowerdir=`` entries of one mount, whose
option string the kernel copies from one page (4095 bytes) and whose depth
it caps at 500. Each entry costs its path (about 90 bytes under
``/var/lib/cove/images/layers/``), so :data:`MAX_LAYERS` is 32, well under
both at the default root; a publish that would go past it, or whose paths
(a long ``--root``) would not fit in the page, is refused with a 400 before
anything is copied (flatten by export and import to go on). The
``/proc/self/fd/N`` or new-mount-API (``lowerdir+``) ways around the page
are not needed at this depth.

For issue 13 (OCI images): a registry layer is unpacked once into
``layers/<diff_id>`` (its ``.wh.`` files and ``.wh..wh..opq`` turned into
overlay whiteouts and opaque directories as it is extracted), and an OCI
image is a directory with a ``layers.json`` naming them bottom first; the
sharing, the sweep and the mounts here need no change.

Whiteouts: a layer made from an overlay upper directory keeps overlay's own
whiteouts (0/0 character devices) and opaque directories
(``trusted.overlay.opaque``); as a lower layer of a later mount the kernel
obeys them. Other ``trusted.overlay.*`` xattrs (``origin``, ``impure``,
``redirect``, ``metacopy``) describe the mount the upper belonged to and are
dropped, as are device nodes other than whiteouts and sockets: an upper
layer is hostile input written by the container.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import secrets
import stat as st
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from cove.host.syscalls import RENAME_NOREPLACE, renameat2
from cove.model.errors import BadRequest, InternalError, NotFound

__all__ = ["CHAIN_FILE", "LAYERS_DIR", "MAX_LAYERS", "LayerStore", "sanitize_upper"]

log = logging.getLogger(__name__)

LAYERS_DIR = "layers"
CHAIN_FILE = "layers.json"
MAX_LAYERS = 32
_ID = re.compile(r"[0-9a-f]{64}")
_TMP_PREFIX = ".tmp-"
_OPAQUE = "trusted.overlay.opaque"


def _check(layer_id: object) -> str:
    if not isinstance(layer_id, str) or not _ID.fullmatch(layer_id):
        raise BadRequest(f"invalid layer id {layer_id!r}")
    return layer_id


class LayerStore:
    """The layers of the image store at ``root`` (see module note).

    Thread-safe for readers; writers (``add``) only create new names.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.dir = self.root / LAYERS_DIR
        # held from a new layer's rename to its chain's, and by a sweep
        self.lock = threading.Lock()

    # -- reads ----------------------------------------------------------------
    def path(self, layer_id: str) -> Path:
        """The directory of a layer.

        Raises:
            BadRequest: not a layer id.  NotFound: no such layer.
        """
        _check(layer_id)
        stored = self.dir / layer_id
        if stored.is_dir():
            return stored
        own = self.root / layer_id / "rootfs"
        if own.is_dir():
            return own
        raise NotFound(f"layer {layer_id[:12]} is not in the store")

    def chain(self, fingerprint: str) -> list[str]:
        """The image's layer ids, bottom first.

        Raises:
            NotFound: the image has neither ``layers.json`` nor ``rootfs/``.
            InternalError: ``layers.json`` is unreadable or malformed.
        """
        d = self.root / _check(fingerprint)
        try:
            raw = (d / CHAIN_FILE).read_bytes()
        except FileNotFoundError:
            if (d / "rootfs").is_dir():
                return [fingerprint]
            raise NotFound(f"image {fingerprint} is not in the store") from None
        except OSError as exc:
            raise InternalError(f"cannot read the layers of {fingerprint[:12]}: "
                                f"{exc.strerror}") from None
        try:
            ids = json.loads(raw)["layers"]
            if not isinstance(ids, list) or not ids:
                raise ValueError("no layers")
            return [_check(i) for i in ids]
        except (ValueError, KeyError, TypeError, BadRequest) as exc:
            raise InternalError(f"{d / CHAIN_FILE} is malformed: {exc}") from None

    def lowers(self, fingerprint: str) -> list[Path]:
        """The image's layer directories, TOPMOST first (overlay's order).

        Raises:
            NotFound: the image or one of its layers is missing.
        """
        return [self.path(i) for i in reversed(self.chain(fingerprint))]

    def images(self) -> list[str]:
        """Fingerprints of the image directories (with a chain or a rootfs)."""
        out = []
        for name in os.listdir(self.root):
            if _ID.fullmatch(name) and ((self.root / name / CHAIN_FILE).is_file()
                                        or (self.root / name / "rootfs").is_dir()):
                out.append(name)
        return sorted(out)

    def referenced(self, *, besides: str = "") -> set[str]:
        """Layer ids that the chain of any image directory (but ``besides``)
        lists. An unreadable chain is logged and counts as naming nothing
        it cannot be read for, so it never makes a layer look unused: its
        image directory itself is kept."""
        used: set[str] = set()
        for fp in self.images():
            if fp == besides:
                continue
            try:
                used.update(self.chain(fp))
            except (NotFound, InternalError) as exc:
                log.warning("image %s: %s", fp[:12], exc)
        return used

    # -- writes ---------------------------------------------------------------
    def mkdtemp(self, tag: str) -> Path:
        """A fresh ``.tmp-`` directory of the store (swept at startup)."""
        try:
            return Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{tag}-", dir=self.root))
        except OSError as exc:
            raise InternalError(f"cannot create a directory in the image store: "
                                f"{exc.strerror}") from None

    def add(self, tree: Path) -> str:
        """Move the finished layer ``tree`` (a directory on the store's
        filesystem, normally under :meth:`mkdtemp`) into the store under a
        new random id; returns the id. Not idempotent.

        Raises:
            InternalError: the rename failed.
        """
        layer_id = secrets.token_hex(32)
        try:
            self.dir.mkdir(mode=0o700, exist_ok=True)  # made by the first publish
            renameat2(-100, str(tree), -100, str(self.dir / layer_id), RENAME_NOREPLACE)
        except OSError as exc:
            raise InternalError(f"cannot store layer: {exc.strerror}") from None
        return layer_id

    def has(self, layer_id: str) -> bool:
        """Whether ``layers/<layer_id>`` is stored (an OCI layer by its diff_id)."""
        return (self.dir / _check(layer_id)).is_dir()

    def add_as(self, tree: Path, layer_id: str) -> bool:
        """Move the finished layer ``tree`` into the store under the content
        id ``layer_id`` (an OCI layer's diff_id: the same bytes make the same
        tree). Idempotent: when that id is stored already, ``tree`` is left
        where it is for the caller to remove, and False is returned. Call
        with :attr:`lock` held until the chain naming it is in place.

        Raises:
            BadRequest: not a layer id.  InternalError: the rename failed.
        """
        _check(layer_id)
        try:
            self.dir.mkdir(mode=0o700, exist_ok=True)
            renameat2(-100, str(tree), -100, str(self.dir / layer_id), RENAME_NOREPLACE)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno == errno.ENOTEMPTY:
                return False
            raise InternalError(f"cannot store layer: {exc.strerror}") from None
        return True

    @staticmethod
    def write_chain(image_dir: Path, ids: list[str]) -> None:
        """Write ``layers.json`` into an image directory being built."""
        for i in ids:
            _check(i)
        if not ids or len(ids) > MAX_LAYERS:
            raise BadRequest(f"an image has 1 to {MAX_LAYERS} layers, not {len(ids)}")
        (image_dir / CHAIN_FILE).write_text(json.dumps({"layers": ids}))

    def sweep_layers(self, remove: Callable[[str], None]) -> list[str]:
        """Remove (by ``remove(name relative to root)``) every ``layers/``
        entry no chain lists, and temporary names left in ``layers/``.
        Idempotent; returns the removed names."""
        gone = []
        with self.lock:
            used = self.referenced()
            for name in sorted(os.listdir(self.dir) if self.dir.is_dir() else []):
                if name in used:
                    continue
                log.info("removing unreferenced layer %s", name[:12])
                remove(f"{LAYERS_DIR}/{name}")
                gone.append(name)
        return gone


def _drop_overlay_xattrs(path: str) -> None:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if name.startswith("trusted.overlay.") and name != _OPAQUE:
            try:
                os.removexattr(path, name, follow_symlinks=False)
            except OSError as exc:
                log.debug("cannot drop %s of %s: %s", name, path, exc)


def sanitize_upper(top: Path) -> int:
    """Make a COPY of an overlay upper directory fit to be a lower layer (see
    the module note): drop device nodes other than whiteouts, sockets, and
    ``trusted.overlay.*`` xattrs other than ``opaque``. Never follows a
    symlink (``lstat``, ``follow_symlinks=False``); ``top`` must be a tree
    cove made. Returns how many entries were dropped."""
    dropped = 0
    _drop_overlay_xattrs(str(top))
    for dirpath, dirs, files in os.walk(top):
        for name in files + dirs:
            path = os.path.join(dirpath, name)
            s = os.lstat(path)
            whiteout = st.S_ISCHR(s.st_mode) and s.st_rdev == 0
            if (st.S_ISCHR(s.st_mode) and not whiteout) or st.S_ISBLK(s.st_mode) \
                    or st.S_ISSOCK(s.st_mode):
                os.unlink(path)
                dropped += 1
                continue
            if not st.S_ISLNK(s.st_mode) and not whiteout:
                _drop_overlay_xattrs(path)
    return dropped
