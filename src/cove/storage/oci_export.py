"""An image's layer chain as OCI blobs, for a push to a registry: each
stored layer directory becomes a gzip'd tar blob, overlay's whiteouts
turned back into OCI's (a 0/0 character device ``NAME`` becomes an empty
``.wh.NAME``; a directory with ``trusted.overlay.opaque=y`` gets a
``.wh..wh..opq`` entry), with a config and a manifest around them.

The tar is deterministic for a given tree (sorted names, owners and modes
and times as stored, gzip without a name or time), so pushing the same
image twice gives the same digests and the registry's "I have this blob"
answer saves the upload.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import tarfile
from pathlib import Path
from typing import Any, BinaryIO

from cove.storage.registry import MEDIA_OCI_MANIFEST, Descriptor, Layout

__all__ = ["LAYER_GZIP", "MEDIA_OCI_CONFIG", "layer_blob", "write_image"]

LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_OPAQUE = "trusted.overlay.opaque"


class _Tee:
    """A file object that hashes what passes (the compressed or the raw bytes)."""

    def __init__(self, out: BinaryIO | None) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)

    def flush(self) -> None:
        if self.out is not None:
            self.out.flush()


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _members(tree: Path) -> list[tuple[str, str]]:
    """(path on disk, name in the tar), parents first, names sorted."""
    out: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        rel = os.path.relpath(dirpath, tree)
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            out.append((full, name if rel == "." else f"{rel}/{name}"))
    return out


def _add_tree(tar: tarfile.TarFile, tree: Path) -> None:
    for full, arc in _members(tree):
        st = os.lstat(full)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # overlay's whiteout
            head, _, name = arc.rpartition("/")
            info = tarfile.TarInfo(f"{head}/.wh.{name}" if head else f".wh.{name}")
            info.mtime = int(st.st_mtime)
            tar.addfile(info)
            continue
        info = tar.gettarinfo(full, arcname=arc)
        if info.isreg():
            with open(full, "rb") as f:
                tar.addfile(info, f)
        else:
            tar.addfile(info)
        if info.isdir() and _opaque(full):
            marker = tarfile.TarInfo(f"{arc}/.wh..wh..opq")
            marker.mtime = int(st.st_mtime)
            tar.addfile(marker)


def layer_blob(tree: Path, layout: Layout) -> tuple[Descriptor, str]:
    """Write the layer directory ``tree`` into ``layout`` as a gzip'd tar
    blob: (its descriptor, its diff_id ``sha256:...``). Idempotent.

    Raises:
        OSError: the tree or the layout cannot be read or written.
    """
    layout.ensure()
    tmp = layout.root / "ingest" / f"export-{os.getpid()}-{id(tree)}"
    with open(tmp, "wb") as out:
        packed = _Tee(out)
        with gzip.GzipFile(filename="", mode="wb", fileobj=packed,
                           mtime=0, compresslevel=6) as gz:
            raw = _Tee(gz)  # type: ignore[arg-type]
            with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                _add_tree(tar, tree)
    desc = Descriptor(LAYER_GZIP, f"sha256:{packed.hash.hexdigest()}", packed.size)
    target = layout.blob(desc.digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)
    return desc, f"sha256:{raw.hash.hexdigest()}"


def write_image(layout: Layout, layers: list[tuple[Descriptor, str]],
                config: dict[str, Any]) -> Descriptor:
    """The config (its ``rootfs`` set to ``layers``' diff_ids) and the
    manifest, written into ``layout``; the manifest's descriptor."""
    config = {**config, "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]}}
    config.pop("history", None)  # it would have to match the layers one to one
    cbytes = json.dumps(config, sort_keys=True).encode()
    cdesc = Descriptor(MEDIA_OCI_CONFIG, f"sha256:{hashlib.sha256(cbytes).hexdigest()}",
                       len(cbytes))
    layout.put_bytes(cdesc.digest, cbytes)
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST,
                "config": cdesc.to_wire(), "layers": [d.to_wire() for d, _ in layers]}
    mbytes = json.dumps(manifest).encode()
    mdesc = Descriptor(MEDIA_OCI_MANIFEST, f"sha256:{hashlib.sha256(mbytes).hexdigest()}",
                       len(mbytes))
    layout.put_bytes(mdesc.digest, mbytes)
    return mdesc
