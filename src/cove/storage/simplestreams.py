"""Simplestreams image servers (LXD's ``images:`` remotes): the catalogue and
the files of one image.

Design note: this follows LXD's ``shared/simplestreams`` (``products.go``
``ToLXD``, ``simplestreams.go`` ``applyAliases``, ``sort.go``):
``streams/v1/index.json`` lists the ``image-downloads`` products documents;
each product (``os``, ``release``, ``arch``, ``variant``, comma-separated
``aliases``) has versions named by serial (``20240101_0524``), whose items
are files. An image is ``lxd.tar.xz`` (metadata) with a rootfs item, or one
``lxd_combined.tar.gz``; its fingerprint is the item's
``combined_*_sha256`` (the hash of metadata + rootfs bytes), so cove and LXD
name the same image alike. Images sort newest serial first and every alias
goes to the first image that claims it; the alias is given as ``NAME`` for
the host's architecture and ``NAME/ARCH`` for every one.

Rootfs formats: cove takes ``root.tar.xz`` (read by its hostile-tarball
extractor). A version that offers only ``squashfs`` is refused with a 400
naming the format: unpacking squashfs means running ``unsquashfs`` on
hostile input with none of the extractor's path checks, and every image
server LXD uses publishes a ``root.tar.xz`` beside it for containers' older
clients (LXD itself prefers squashfs when both are there, so the same alias
may name a different fingerprint in LXD than in cove; ``update_source``
records which).

Pure: no I/O here; ``cove.engine._image_pull`` fetches the documents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cove.model.errors import BadRequest, NotFound
from cove.storage.images import normalize_architecture

__all__ = [
    "INDEX_PATH",
    "StreamFile",
    "StreamImage",
    "find_image",
    "index_paths",
    "parse_products",
]

INDEX_PATH = "streams/v1/index.json"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_COMBINED = ("lxd_combined.tar.gz",)
_META = ("lxd.tar.xz",)
_ROOT_TYPES = ("root.tar.xz", "squashfs")  # what a metadata item pairs with
_MAX_ITEM = 1 << 40


@dataclass
class StreamFile:
    """One file to download: its path under the server, sha256, size, kind
    (``meta``, ``root`` or ``combined``) and item type (``ftype``)."""

    path: str
    sha256: str
    size: int
    kind: str
    ftype: str


@dataclass
class StreamImage:
    """One image of the catalogue, as LXD's ``ToLXD`` makes it."""

    fingerprint: str
    architecture: str
    created_at: float
    properties: dict[str, str]
    aliases: list[str]
    files: list[StreamFile] = field(default_factory=list)
    filename: str = ""

    @property
    def rootfs_type(self) -> str:
        return self.properties.get("type", "")

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def index_paths(doc: Any) -> list[str]:
    """The products documents an ``index.json`` lists (``image-downloads`` only).

    Raises: BadRequest (not an index)."""
    index = doc.get("index") if isinstance(doc, dict) else None
    if not isinstance(index, dict):
        raise BadRequest("The image server's streams/v1/index.json is not a simplestreams index")
    out = []
    for entry in index.values():
        if not isinstance(entry, dict) or entry.get("datatype") != "image-downloads":
            continue
        if not entry.get("products") or not isinstance(entry.get("path"), str):
            continue
        out.append(entry["path"])
    return out


def _serial_time(name: str) -> float | None:
    for layout, text in (("%Y%m%d_%H%M", name), ("%Y%m%d", name[:8])):
        try:
            return datetime.strptime(text, layout).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


def _file(item: dict[str, Any], kind: str) -> StreamFile:
    """Raises: BadRequest (no path, a bad sha256 or size)."""
    path, sha, size = item.get("path"), item.get("sha256"), item.get("size")
    if not isinstance(path, str) or not path:
        raise BadRequest("item without a path")
    if not isinstance(sha, str) or not _HEX64.fullmatch(sha.lower()):
        raise BadRequest(f"item {path!r} without a sha256")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= _MAX_ITEM:
        raise BadRequest(f"item {path!r} with a bad size")
    return StreamFile(path, sha.lower(), size, kind, str(item.get("ftype", "")))


def _image(product: dict[str, Any], serial: str, created: float, version: dict[str, Any],
           meta: dict[str, Any], root: dict[str, Any] | None) -> StreamImage | None:
    """One image of a version, or None (LXD skips what it cannot name)."""
    if root is None:
        fp = meta.get("sha256", "")
    elif root.get("ftype") == "root.tar.xz":
        fp = meta.get("combined_rootxz_sha256") or meta.get("combined_sha256", "")
    else:
        fp = meta.get("combined_squashfs_sha256", "")
    if not isinstance(fp, str) or not _HEX64.fullmatch(fp.lower()):
        return None
    try:
        files = [_file(meta, "combined" if root is None else "meta")]
        if root is not None:
            files.append(_file(root, "root"))
    except BadRequest:
        return None
    description = f"{product.get('os', '')} {product.get('release_title', '')}"
    if version.get("label"):
        description += f" ({version['label']})"
    if product.get("variant"):
        description += f" ({product['variant']})"
    props = {"os": product.get("os", ""), "release": product.get("release", ""),
             "version": product.get("version", ""), "architecture": product.get("arch", ""),
             "label": version.get("label", ""), "serial": serial, "description": description,
             "variant": product.get("variant", ""),
             "type": "tar.gz" if root is None else str(root.get("ftype", ""))}
    props = {k: str(v) for k, v in props.items() if isinstance(v, str) and v}
    aliases = [a.strip() for a in str(product.get("aliases", "") or "").split(",") if a.strip()]
    return StreamImage(fp.lower(), normalize_architecture(str(product.get("arch", ""))),
                       created, props, aliases, files, files[0].path.rsplit("/", 1)[-1])


def parse_products(doc: Any) -> list[StreamImage]:
    """Every container image of a products document (``images.json``).

    Entries cove cannot use (virtual-machine disks, a version named by no
    date, an item without a sha256) are skipped as LXD skips them.

    Raises: BadRequest (not a products document)."""
    products = doc.get("products") if isinstance(doc, dict) else None
    if not isinstance(products, dict):
        raise BadRequest("The image server's products document has no 'products'")
    out: list[StreamImage] = []
    for product in products.values():
        if not isinstance(product, dict) or not isinstance(product.get("versions"), dict):
            continue
        for serial, version in product["versions"].items():
            if not isinstance(serial, str) or len(serial) < 8 or not isinstance(version, dict):
                continue
            created = _serial_time(serial)
            items = version.get("items")
            if created is None or not isinstance(items, dict):
                continue
            items = [i for i in items.values() if isinstance(i, dict)]
            for item in items:
                ftype = item.get("ftype")
                if ftype in _COMBINED:
                    img = _image(product, serial, created, version, item, None)
                    if img is not None:
                        out.append(img)
                elif ftype in _META:
                    for sub in items:
                        if sub.get("ftype") in _ROOT_TYPES:
                            img = _image(product, serial, created, version, item, sub)
                            if img is not None:
                                out.append(img)
    return out


def _order(img: StreamImage) -> tuple[Any, ...]:
    """LXD's ``sortedImages`` (os, release, variant, serial newest first,
    architecture), then the rootfs cove prefers (root.tar.xz, combined, squashfs)."""
    p = img.properties
    serial = p.get("serial", "")
    rank = {"root.tar.xz": 0, "tar.gz": 1, "squashfs": 2}.get(img.rootfs_type, 3)
    return (p.get("os", ""), p.get("release", ""), p.get("variant", ""),
            tuple(-ord(c) for c in serial), p.get("architecture", ""), rank)


def aliases(images: list[StreamImage], host_arch: str) -> dict[str, str]:
    """Alias name -> fingerprint, as LXD's ``applyAliases``: ``NAME`` for the
    host's architecture, ``NAME/ARCH`` (the stream's arch name) for each;
    the first image in LXD's order takes a name."""
    out: dict[str, str] = {}
    for img in sorted(images, key=_order):
        for name in img.aliases:
            if img.architecture == host_arch:
                out.setdefault(name, img.fingerprint)
            out.setdefault(f"{name}/{img.properties.get('architecture', '')}", img.fingerprint)
    return out


def find_image(images: list[StreamImage], ref: str, host_arch: str) -> StreamImage:
    """The image ``ref`` names: an alias, else a fingerprint or its unique prefix.

    Raises:
        NotFound: nothing matches.  BadRequest: an ambiguous prefix; an
            image whose rootfs cove cannot unpack (squashfs only).
    """
    fp = aliases(images, host_arch).get(ref)
    if fp is None:
        low = ref.lower()
        found = {i.fingerprint for i in images if low and i.fingerprint.startswith(low)}
        if len(found) > 1:
            raise BadRequest(f"More than one image on the server matches {ref!r}")
        if not found:
            raise NotFound(f"Image not found on the image server: {ref!r}")
        fp = found.pop()
    img = min((i for i in images if i.fingerprint == fp), key=_order)
    if img.rootfs_type == "squashfs":
        raise BadRequest(f"The image {ref!r} on the server has a squashfs rootfs only: cove "
                         "unpacks root.tar.xz or lxd_combined.tar.gz images")
    return img
