"""Building OCI image layouts in Python for the tests (no network, no skopeo):
layers as tar bytes, compressed gzip, zstd or not at all, manifests,
configs, indexes with several architectures."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import zstandard

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
         "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
         "none": "application/vnd.oci.image.layer.v1.tar",
         "docker": "application/vnd.docker.image.rootfs.diff.tar.gzip"}
GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def host_goarch() -> str:
    return GOARCH.get(os.uname().machine, os.uname().machine)


def other_goarch() -> str:
    return "arm64" if host_goarch() == "amd64" else "amd64"


def tar_of(members: list[tuple[str, str, Any]]) -> bytes:
    """A tar from ``(kind, name, arg)``: ``f`` file (arg bytes), ``d`` dir,
    ``l`` symlink (arg target), ``h`` hardlink (arg target), ``c`` char
    device (arg (major, minor)), ``x`` a raw TarInfo (arg ignored)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, arg in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            data = None
            if kind == "f":
                info.size, info.mode = len(arg), 0o644
                data = io.BytesIO(arg)
            elif kind == "d":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "l":
                info.type, info.linkname = tarfile.SYMTYPE, arg
            elif kind == "h":
                info.type, info.linkname = tarfile.LNKTYPE, arg
            elif kind == "c":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = arg
            tar.addfile(info, data)
    return buf.getvalue()


def compress(data: bytes, how: str) -> bytes:
    if how in ("gzip", "docker"):
        return gzip.compress(data, mtime=0)
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def desc(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data), **extra}


class LayoutBuilder:
    """An OCI image layout directory being written at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self.entries: list[dict[str, Any]] = []

    def blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (self.path / "blobs" / "sha256" / digest).write_bytes(data)
        return digest

    def image(self, layers: list[tuple[bytes, str]], config: dict[str, Any] | None = None,
              *, arch: str | None = None) -> tuple[dict[str, Any], bytes]:
        """Write the blobs of an image (layers: ``(tar bytes, compression)``);
        returns the manifest's descriptor (with platform) and its bytes."""
        arch = arch or host_goarch()
        ldescs, diffs = [], []
        for data, how in layers:
            blob = compress(data, how)
            self.blob(blob)
            ldescs.append(desc(LAYER[how], blob))
            diffs.append("sha256:" + hashlib.sha256(data).hexdigest())
        cfg = {"architecture": arch, "os": "linux", "created": "2024-05-01T10:00:00Z",
               "config": config or {}, "rootfs": {"type": "layers", "diff_ids": diffs}}
        cbytes = json.dumps(cfg).encode()
        self.blob(cbytes)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": desc(OCI_CONFIG, cbytes), "layers": ldescs}
        mbytes = json.dumps(manifest).encode()
        self.blob(mbytes)
        return desc(OCI_MANIFEST, mbytes, platform={"os": "linux", "architecture": arch}), mbytes

    def add(self, descriptor: dict[str, Any], ref: str | None = None) -> None:
        d = dict(descriptor)
        if ref:
            d["annotations"] = {"org.opencontainers.image.ref.name": ref}
        self.entries.append(d)

    def add_index(self, manifests: list[dict[str, Any]], ref: str | None = None) -> str:
        ibytes = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                             "manifests": manifests}).encode()
        self.blob(ibytes)
        self.add(desc(OCI_INDEX, ibytes), ref)
        return hashlib.sha256(ibytes).hexdigest()

    def write(self) -> Path:
        (self.path / "index.json").write_text(json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries}))
        return self.path


def busybox_layer(plain_tar_gz: Path) -> bytes:
    """The uncompressed busybox rootfs tar (tests/integration/conftest's)."""
    return gzip.decompress(Path(plain_tar_gz).read_bytes())
