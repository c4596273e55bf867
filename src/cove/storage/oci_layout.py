"""Reading an OCI image layout directory (``oci-layout``, ``index.json``,
``blobs/sha256/...``; the OCI image-layout spec) as hostile input, and what
an image's config means to cove.

Everything is read through a ``RootFS`` on the layout, so a symlinked blob
cannot make cove read a host file; every JSON blob is size-capped and its
digest and declared size checked before it is parsed. Media types: OCI's and
Docker's v2 schema 2 (manifest list, manifest, container config, gzip
rootfs diff). An index (or a nested one) is resolved to the manifest of the
host's architecture (os ``linux``); a ref picks among several images by the
``org.opencontainers.image.ref.name`` annotation (or a manifest digest).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import stat as st
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Self

from cove.model.config import parse_signal
from cove.model.errors import BadRequest, CoveError, NotFound
from cove.model.passwd import parse_group, parse_passwd, resolve_group, resolve_user
from cove.storage._extract import lstat_type
from cove.storage.images import normalize_architecture
from cove.storage.layers import MAX_LAYERS
from cove.storage.oci_keep import MEMBER
from cove.storage.oci_layer import is_whiteout
from cove.storage.safefs import RootFS

__all__ = [
    "INDEX_TYPES",
    "LAYER_TYPES",
    "MANIFEST_TYPES",
    "OCI_KEYS_FILE",
    "Descriptor",
    "Layout",
    "OciImage",
    "instance_keys",
    "run_settings",
]

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")
CONFIG_TYPES = ("application/vnd.oci.image.config.v1+json",
                "application/vnd.docker.container.image.v1+json")
LAYER_TYPES = ("application/vnd.oci.image.layer.v1.tar",
               "application/vnd.oci.image.layer.v1.tar+gzip",
               "application/vnd.oci.image.layer.v1.tar+zstd",
               "application/vnd.docker.image.rootfs.diff.tar.gzip",
               "application/vnd.docker.image.rootfs.diff.tar")
OCI_KEYS_FILE = MEMBER  # beside an OCI image's layers.json (``storage.oci_keep``)
REF_ANNOTATION = "org.opencontainers.image.ref.name"
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_JSON_LIMIT = 4 << 20  # a manifest, index or config; registries cap manifests at 4 MiB
_OPAQUE = "trusted.overlay.opaque"
_NESTING = 2  # an index naming an index naming manifests, no deeper


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: ``hex`` is the SHA-256 of the blob."""

    media_type: str
    hex: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: dict[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return f"sha256:{self.hex}"


@dataclass
class OciImage:
    """The manifest picked from a layout, its config and layers (bottom first)."""

    manifest: Descriptor
    manifest_bytes: bytes
    config: dict[str, Any]
    config_bytes: bytes
    layers: list[Descriptor]
    diff_ids: list[str]  # hex, one per layer

    @property
    def fingerprint(self) -> str:
        """cove's (and Incus') fingerprint of an OCI image: its manifest digest's hex."""
        return self.manifest.hex

    @property
    def architecture(self) -> str:
        return normalize_architecture(str(self.config.get("architecture") or ""))


def _descriptor(raw: object, where: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise BadRequest(f"{where}: a descriptor must be an object")
    mt, dg, size = raw.get("mediaType"), raw.get("digest"), raw.get("size")
    if not isinstance(mt, str) or not mt:
        raise BadRequest(f"{where}: mediaType missing")
    if not isinstance(dg, str) or not (m := _DIGEST.fullmatch(dg)):
        raise BadRequest(f"{where}: digest {dg!r} is not sha256:<64 hex digits>")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequest(f"{where}: size must be a number of bytes")
    ann = raw.get("annotations") or {}
    plat = raw.get("platform") or {}
    if not isinstance(ann, dict) or not isinstance(plat, dict):
        raise BadRequest(f"{where}: annotations and platform must be objects")
    return Descriptor(mt, m.group(1), size, {str(k): str(v) for k, v in ann.items()}, plat)


def _json(data: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest(f"{where}: must be a JSON object")
    return doc


class Layout:
    """An OCI image layout directory, opened read-only. A context manager.

    Raises (from the constructor):
        NotFound: no such directory.  BadRequest: not an OCI image layout.
    """

    def __init__(self, path: Path) -> None:
        self.fs = RootFS(path)
        try:
            if lstat_type(self.fs, "/oci-layout") != "file":
                raise BadRequest(f"{path}: not an OCI image layout (no oci-layout file)")
            version = _json(self.fs.read_bytes("/oci-layout", 4096), "oci-layout")
            if not str(version.get("imageLayoutVersion", "")).startswith("1."):
                raise BadRequest(f"oci-layout: unsupported imageLayoutVersion "
                                 f"{version.get('imageLayoutVersion')!r}")
        except BaseException:
            self.fs.close()
            raise

    def close(self) -> None:
        self.fs.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def blob_bytes(self, d: Descriptor) -> bytes:
        """A small blob, checked against its descriptor.

        Raises: BadRequest (too big, size or digest mismatch), NotFound."""
        if d.size > _JSON_LIMIT:
            raise BadRequest(f"blob {d.digest}: {d.size} bytes, more than {_JSON_LIMIT} allowed")
        try:
            data = self.fs.read_bytes(f"/blobs/sha256/{d.hex}", _JSON_LIMIT + 1)
        except NotFound:
            raise NotFound(f"blob {d.digest} is not in the layout") from None
        if len(data) != d.size:
            raise BadRequest(f"blob {d.digest}: {len(data)} bytes, the descriptor says {d.size}")
        if hashlib.sha256(data).hexdigest() != d.hex:
            raise BadRequest(f"blob {d.digest}: its content does not match its digest")
        return data

    def open_blob(self, d: Descriptor) -> BinaryIO:
        """A blob opened for reading (the caller checks size and digest as it reads).

        Raises: NotFound."""
        try:
            fd = self.fs.open_read(f"/blobs/sha256/{d.hex}")
        except NotFound:
            raise NotFound(f"blob {d.digest} is not in the layout") from None
        return open(fd, "rb")  # the caller closes it

    def pick(self, ref: str | None, arch: str) -> OciImage:
        """The image ``ref`` names (or the only one), for architecture ``arch``.

        Raises:
            BadRequest: malformed JSON or descriptors, unknown media types,
                several images and no ref, no manifest for ``arch``.
            NotFound: ``ref`` names nothing, a blob is missing.
        """
        index = _json(self.fs.read_bytes("/index.json", _JSON_LIMIT), "index.json")
        entries = [_descriptor(e, "index.json") for e in index.get("manifests") or []]
        if ref:
            entries = [e for e in entries if ref in (e.annotations.get(REF_ANNOTATION),
                                                     e.digest, e.hex)]
            if not entries:
                raise NotFound(f"no image named {ref!r} in the layout")
        found = {d.hex: d for e in entries for d in self._manifests(e, arch, _NESTING)}
        if not found:
            raise BadRequest(f"no image in the layout for linux/{arch}")
        if len(found) > 1:
            names = sorted({e.annotations.get(REF_ANNOTATION, e.digest) for e in entries})
            raise BadRequest(f"the layout holds {len(found)} images ({', '.join(names)}): "
                             "name one with --ref")
        return self._image(next(iter(found.values())), arch)

    def _manifests(self, d: Descriptor, arch: str, depth: int) -> list[Descriptor]:
        plat = d.platform
        if plat and (str(plat.get("os", "linux")) != "linux" or
                     normalize_architecture(str(plat.get("architecture", ""))) != arch):
            return []
        if d.media_type in MANIFEST_TYPES:
            return [d]
        if d.media_type not in INDEX_TYPES:
            if d.media_type.startswith("application/vnd.in-toto") or \
                    d.annotations.get("vnd.docker.reference.type"):
                return []  # attestations beside the images: not images
            raise BadRequest(f"{d.digest}: unsupported media type {d.media_type!r}")
        if depth == 0:
            raise BadRequest(f"{d.digest}: image indexes nested too deep")
        doc = _json(self.blob_bytes(d), d.digest)
        return [m for e in doc.get("manifests") or []
                for m in self._manifests(_descriptor(e, d.digest), arch, depth - 1)]

    def _image(self, d: Descriptor, arch: str) -> OciImage:
        raw = self.blob_bytes(d)
        doc = _json(raw, f"manifest {d.digest}")
        if doc.get("schemaVersion") != 2:
            raise BadRequest(f"manifest {d.digest}: schemaVersion must be 2")
        config = _descriptor(doc.get("config"), f"manifest {d.digest} config")
        if config.media_type not in CONFIG_TYPES:
            raise BadRequest(f"manifest {d.digest}: config media type {config.media_type!r} "
                             "is not an image config")
        layers = [_descriptor(x, f"manifest {d.digest} layer") for x in doc.get("layers") or []]
        for x in layers:
            if x.media_type not in LAYER_TYPES:
                raise BadRequest(f"layer {x.digest}: unsupported media type {x.media_type!r}")
        if not 1 <= len(layers) <= MAX_LAYERS:
            raise BadRequest(f"manifest {d.digest}: {len(layers)} layers; cove takes 1 to "
                             f"{MAX_LAYERS} (overlayfs' mount options)")
        cbytes = self.blob_bytes(config)
        cdoc = _json(cbytes, f"config {config.digest}")
        rootfs = cdoc.get("rootfs")
        diffs = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diffs, list) or len(diffs) != len(layers) or \
                not all(isinstance(x, str) and _DIGEST.fullmatch(x) for x in diffs):
            raise BadRequest(f"config {config.digest}: rootfs.diff_ids must be one sha256 "
                             "digest per layer")
        image = OciImage(d, raw, cdoc, cbytes, layers, [x[7:] for x in diffs])
        if image.architecture and image.architecture != arch:
            raise BadRequest(f"the image is for {image.architecture}, this host is {arch}")
        return image


# -- the config as cove runs it -----------------------------------------------------


def _ns_duration(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return f"{value / 1e9:g}s"
    return None


def _health_keys(hc: object) -> dict[str, str]:
    """Docker's ``Healthcheck`` as cove's ``cove.health*`` keys."""
    if not isinstance(hc, dict):
        return {}
    test = hc.get("Test")
    if not isinstance(test, list) or not test or not all(isinstance(t, str) for t in test):
        return {}
    if test[0] == "CMD" and len(test) > 1:
        argv = test[1:]
    elif test[0] == "CMD-SHELL" and len(test) == 2:
        argv = ["/bin/sh", "-c", test[1]]
    else:  # NONE, or nothing cove can run
        return {}
    keys = {"cove.health": shlex.join(argv)}
    for src, key in (("Interval", "interval"), ("Timeout", "timeout"),
                     ("StartPeriod", "start_period"), ("StartInterval", "start_interval")):
        if (dur := _ns_duration(hc.get(src))) is not None:
            keys[f"cove.health.{key}"] = dur
    retries = hc.get("Retries")
    if isinstance(retries, int) and not isinstance(retries, bool) and retries > 0:
        keys["cove.health.retries"] = str(retries)
    return keys


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _in_layer(layer: Path, path: str) -> str:
    try:
        with RootFS(layer) as fs:
            return fs.read_bytes(path, 1 << 20).decode("utf-8", "replace")
    except CoveError:
        return ""


def _read_top(lowers: list[Path], path: str) -> str:
    """``path`` as the merged image shows it (``lowers`` topmost first):
    the first layer that has it, unless a layer above whited it out or made
    one of its directories opaque. The file is read inside its layer's root
    (never the host's); '' when absent."""
    parts = [p for p in path.split("/") if p]
    for layer in lowers:
        cur, opaque = layer, False
        for i, part in enumerate(parts):
            cur = cur / part
            try:
                s = os.lstat(cur)
            except OSError:
                break  # not in this layer: look below, unless hidden
            if is_whiteout(s):
                return ""
            if i == len(parts) - 1 or st.S_ISLNK(s.st_mode):
                return _in_layer(layer, path) if not st.S_ISDIR(s.st_mode) else ""
            if not st.S_ISDIR(s.st_mode):
                return ""
            with contextlib.suppress(OSError):
                opaque = opaque or os.getxattr(cur, _OPAQUE, follow_symlinks=False) == b"y"
        if opaque:
            return ""
    return ""


def run_settings(image: OciImage, lowers: list[Path]) -> tuple[list[str], dict[str, str],
                                                                 dict[str, str], dict[str, str]]:
    """What the image's config means to cove: its command (Entrypoint +
    Cmd), environment, the instance config keys an instance of it starts
    with (``cove.cwd``, ``cove.uid``/``cove.gid`` from ``User`` resolved in
    the image's own /etc/passwd and /etc/group, ``cove.halt`` from
    ``StopSignal``, ``cove.health*`` from ``Healthcheck``) and image
    properties (os, architecture, description, ``exposed_ports``, ``oci.entrypoint``:
    the Entrypoint alone, shell-quoted).

    Raises:
        BadRequest: a ``User`` or ``StopSignal`` that the image cannot have.
    """
    conf = image.config.get("config") or {}
    if not isinstance(conf, dict):
        raise BadRequest("image config: 'config' must be an object")
    cmd = _strings(conf.get("Entrypoint")) + _strings(conf.get("Cmd"))
    env: dict[str, str] = {}
    for item in _strings(conf.get("Env")):
        k, sep, v = item.partition("=")
        if sep and k:
            env[k] = v
    keys: dict[str, str] = {}
    wd = conf.get("WorkingDir")
    if isinstance(wd, str) and wd:
        if not wd.startswith("/"):
            raise BadRequest(f"image config: WorkingDir {wd!r} is not an absolute path")
        keys["cove.cwd"] = wd
    user = conf.get("User")
    if isinstance(user, str) and user.strip():
        name, _, group = user.strip().partition(":")
        entry = resolve_user(name, parse_passwd(_read_top(lowers, "/etc/passwd")))
        keys["cove.uid"] = str(entry.uid)
        gid = resolve_group(group, parse_group(_read_top(lowers, "/etc/group"))) if group \
            else entry.gid
        keys["cove.gid"] = str(gid)
    sig = conf.get("StopSignal")
    if isinstance(sig, str) and sig.strip():
        keys["cove.halt"] = str(parse_signal(sig))
    keys.update(_health_keys(conf.get("Healthcheck")))
    props = {"os": str(image.config.get("os") or "linux"),
             "architecture": image.architecture or "unknown"}
    labels = conf.get("Labels") or {}
    ann = image.manifest.annotations
    desc = ann.get("org.opencontainers.image.description") or (
        labels.get("org.opencontainers.image.description") if isinstance(labels, dict) else "")
    props["description"] = str(desc or ann.get(REF_ANNOTATION) or "OCI image")
    ports = conf.get("ExposedPorts")
    if isinstance(ports, dict) and ports:
        props["exposed_ports"] = " ".join(sorted(str(p) for p in ports))
    if _strings(conf.get("Entrypoint")):  # what a Compose ``command`` goes after, as Docker
        props["oci.entrypoint"] = shlex.join(_strings(conf.get("Entrypoint")))
    return cmd, env, keys, props


def instance_keys(image_dir: Path) -> dict[str, str]:
    """The instance config keys an OCI image's config means (``oci.json``
    in its directory, written at import); {} for any other image. Never raises."""
    try:
        doc = json.loads((image_dir / OCI_KEYS_FILE).read_text())
        return {str(k): str(v) for k, v in doc.get("config", {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}
