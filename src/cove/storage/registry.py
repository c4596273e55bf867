"""The OCI distribution client: pull an image from a registry into an OCI
image layout on disk, and push one from a layout to a registry.

Speaks the distribution API v2 (``/v2/``, manifests by tag or digest,
blobs, monolithic uploads) with the standard library's HTTP only; TLS,
credentials and redirects are :mod:`cove.storage._registry_http`'s.

Design notes:

* **The download directory is an OCI image layout** (``oci-layout``,
  ``index.json``, ``blobs/sha256/HEX``), kept under the cove root and shared
  by every pull: a blob is stored once by digest, so a second image sharing
  a base downloads only its new layers, and a pull that was interrupted
  starts again without fetching the blobs it finished. A blob being
  downloaded is ``ingest/HEX`` and is resumed with ``Range`` from where it
  stopped (its prefix re-hashed, so the digest still covers every byte). A
  blob reaches ``blobs/`` only by a rename after its digest and size were
  checked, so whatever is in ``blobs/`` is whole and verified.
* **Nothing is trusted that the digest does not cover**: a manifest asked
  for by digest must hash to it; one asked for by tag must hash to the
  ``Docker-Content-Digest`` the registry sent, if it sent one. A blob is
  read to its declared size and one byte more: a blob longer than its
  descriptor says is cut off there and refused (its partial file removed),
  one whose digest differs too. Manifests are capped at 4 MiB (as
  containerd), configs at 8 MiB.
* **Index / manifest list**: the entry for this host's platform (``linux``
  and the machine's OCI architecture, arm's variant) is picked; an image
  without one is refused naming the platforms it has. Docker schema 1 is
  refused (deprecated, unsigned content).

What is done with the layout (layers extracted as hostile input, the
config mapped to an instance) is ``import_oci_layout``'s.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cove.model.errors import BadRequest, InternalError, NotFound
from cove.storage._registry_http import (
    Credentials,
    Origin,
    RegistryAuthError,
    RegistryError,
    credentials_from_file,
)

__all__ = [
    "ACCEPT",
    "MEDIA_DOCKER_LIST",
    "MEDIA_DOCKER_MANIFEST",
    "MEDIA_OCI_INDEX",
    "MEDIA_OCI_MANIFEST",
    "Descriptor",
    "Layout",
    "Progress",
    "PulledImage",
    "Reference",
    "Registry",
    "RegistryAuthError",
    "RegistryError",
    "host_platform",
]

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
_INDEXES = (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST)
_MANIFESTS = (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)
ACCEPT = ", ".join(_MANIFESTS + _INDEXES)
MAX_MANIFEST = 4 << 20
MAX_CONFIG = 8 << 20
CHUNK = 1 << 20
REF_ANNOTATION = "org.opencontainers.image.ref.name"

Progress = Callable[[str, "int | None", str], None]
"""``op.progress``: (stage, percent, text)."""

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST_RE = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")
_ARCHES = {"x86_64": ("amd64", ""), "aarch64": ("arm64", ""), "armv7l": ("arm", "v7"),
           "armv6l": ("arm", "v6"), "i686": ("386", ""), "i386": ("386", ""),
           "ppc64le": ("ppc64le", ""), "s390x": ("s390x", ""), "riscv64": ("riscv64", "")}


def host_platform() -> tuple[str, str]:
    """This machine's OCI (architecture, variant): ``("amd64", "")``."""
    machine = platform.machine()
    return _ARCHES.get(machine, (machine, ""))


@dataclass(frozen=True)
class Reference:
    """``REPO[:TAG][@DIGEST]`` inside one registry (the remote names the registry)."""

    repository: str
    tag: str = "latest"
    digest: str = ""

    @classmethod
    def parse(cls, text: str) -> Reference:
        """``library/alpine:3.20``, ``alpine`` (tag ``latest``), ``alpine@sha256:...``.

        Raises:
            BadRequest: not distribution's grammar (lower-case path
                components, a tag of at most 128 word characters, a sha256
                or sha512 digest).
        """
        rest, _, digest = text.partition("@")
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        tag = ""
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1:]
        if not _REPO_RE.fullmatch(rest) or len(rest) > 255:
            raise BadRequest(f"Image reference {text!r}: the repository must be lower-case "
                             "letters, digits and separators (library/alpine)")
        if tag and not _TAG_RE.fullmatch(tag):
            raise BadRequest(f"Image reference {text!r}: bad tag {tag!r}")
        if digest and not _DIGEST_RE.fullmatch(digest):
            raise BadRequest(f"Image reference {text!r}: bad digest {digest!r}")
        return cls(rest, tag or ("" if digest else "latest"), digest)

    @property
    def ref(self) -> str:
        """What the manifest is asked for by: the digest when there is one."""
        return self.digest or self.tag

    def __str__(self) -> str:
        return self.repository + (f":{self.tag}" if self.tag else "") + (
            f"@{self.digest}" if self.digest else "")


@dataclass(frozen=True)
class Descriptor:
    """An OCI descriptor: what a manifest says of a blob."""

    media_type: str
    digest: str
    size: int

    @classmethod
    def parse(cls, data: object, what: str) -> Descriptor:
        if not isinstance(data, dict):
            raise RegistryError(f"The manifest's {what} is not an object")
        media, digest, size = data.get("mediaType"), data.get("digest"), data.get("size")
        if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
            raise RegistryError(f"The manifest's {what} has no valid digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise RegistryError(f"The manifest's {what} has no valid size")
        return cls(media if isinstance(media, str) else "", digest, size)

    def to_wire(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass
class PulledImage:
    """A manifest and the blobs it names, all in ``layout``."""

    layout: Path
    name: str                      # the layout's ref name: HOST/REPO:TAG
    manifest: Descriptor           # the platform manifest (never an index)
    config: Descriptor
    layers: list[Descriptor]
    config_data: dict[str, Any] = field(default_factory=dict)
    fetched_bytes: int = 0         # what this pull downloaded (0: all was there)


def _hasher(digest: str) -> Any:
    return hashlib.new(digest.split(":", 1)[0])


class Layout:
    """An OCI image layout used as a content-addressed blob store.

    Every method is safe to repeat. Index updates hold ``.lock`` (flock),
    so two pulls into the same layout do not lose each other's entries.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure(self) -> None:
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "ingest").mkdir(exist_ok=True)
        marker = self.root / "oci-layout"
        if not marker.exists():
            marker.write_text('{"imageLayoutVersion": "1.0.0"}')
        if not (self.root / "index.json").exists():
            self._write_index({"schemaVersion": 2, "manifests": []})

    def blob(self, digest: str) -> Path:
        algo, _, hexpart = digest.partition(":")
        return self.root / "blobs" / algo / hexpart

    def partial(self, digest: str) -> Path:
        return self.root / "ingest" / digest.replace(":", "-")

    def has(self, desc: Descriptor) -> bool:
        try:
            return self.blob(desc.digest).stat().st_size == desc.size
        except FileNotFoundError:
            return False

    def put_bytes(self, digest: str, data: bytes) -> None:
        path = self.blob(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.partial(digest)
        tmp.write_bytes(data)
        os.replace(tmp, path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def _write_index(self, index: dict[str, Any]) -> None:
        tmp = self.root / ".index.json.tmp"
        tmp.write_text(json.dumps(index, indent=1))
        os.replace(tmp, self.root / "index.json")

    def tag(self, name: str, manifest: Descriptor) -> None:
        """Point ``name`` (``org.opencontainers.image.ref.name``) at ``manifest``."""
        with self._locked():
            index = json.loads((self.root / "index.json").read_text())
            keep = [m for m in index.get("manifests", [])
                    if m.get("annotations", {}).get(REF_ANNOTATION) != name]
            keep.append({**manifest.to_wire(), "annotations": {REF_ANNOTATION: name}})
            index["manifests"] = keep
            self._write_index(index)

    def prune(self, keep: Callable[[str], bool], *, max_age: float,
              now: float | None = None) -> list[str]:
        """Forget the images ``keep`` (given a manifest digest) says are gone:
        their index entries, manifest and config blobs (unless a kept image
        shares them). Every other blob (layers: the engine deletes them
        after their import, so what is left is of a pull that never
        finished) and ``ingest/`` partials are removed once older than
        ``max_age`` seconds: until then a pull may still resume them. What
        was removed, by name. Never raises for one file; idempotent."""
        if not (self.root / "index.json").exists():
            return []
        now = time.time() if now is None else now
        gone: list[str] = []
        with self._locked():
            index = json.loads((self.root / "index.json").read_text())
            entries = index.get("manifests", [])
            kept = [m for m in entries if keep(str(m.get("digest", "")))]
            if len(kept) != len(entries):
                index["manifests"] = kept
                self._write_index(index)
            wanted: set[str] = set()
            for m in kept:
                wanted.add(str(m.get("digest", "")))
                with contextlib.suppress(OSError, ValueError, AttributeError, RegistryError):
                    doc = json.loads(self.blob(str(m["digest"])).read_bytes())
                    wanted.add(Descriptor.parse(doc.get("config"), "config").digest)
            named = {str(m.get("digest", "")) for m in entries} - wanted
            for d in named:  # a forgotten image's manifest and its config
                with contextlib.suppress(OSError, ValueError, AttributeError, RegistryError):
                    doc = json.loads(self.blob(d).read_bytes())
                    cfg = Descriptor.parse(doc.get("config"), "config").digest
                    if cfg not in wanted:
                        self.blob(cfg).unlink(missing_ok=True)
                        gone.append(cfg)
                with contextlib.suppress(OSError):
                    self.blob(d).unlink(missing_ok=True)
                    gone.append(d)
            stale: list[Path] = []
            with contextlib.suppress(OSError):
                stale += [p for p in (self.root / "blobs" / "sha256").iterdir()
                          if f"sha256:{p.name}" not in wanted]
            with contextlib.suppress(OSError):
                stale += list((self.root / "ingest").iterdir())
            for p in stale:
                with contextlib.suppress(OSError):
                    if now - p.stat().st_mtime > max_age:
                        p.unlink()
                        gone.append(p.name)
        return gone

    def lookup(self, name: str) -> Descriptor | None:
        """The manifest ``name`` points at, if any."""
        try:
            index = json.loads((self.root / "index.json").read_text())
        except FileNotFoundError:
            return None
        for m in index.get("manifests", []):
            if m.get("annotations", {}).get(REF_ANNOTATION) == name:
                return Descriptor.parse(m, "index entry")
        return None


def _parse_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        out = json.loads(data)
    except ValueError:
        raise RegistryError(f"The {what} is not JSON") from None
    if not isinstance(out, dict):
        raise RegistryError(f"The {what} is not a JSON object")
    return out


def _pick_platform(index: dict[str, Any], arch: str, variant: str) -> Descriptor:
    entries = index.get("manifests")
    if not isinstance(entries, list):
        raise RegistryError("The image index has no manifests list")
    seen: list[str] = []
    fallback: Descriptor | None = None
    for i, entry in enumerate(entries):
        plat = entry.get("platform") if isinstance(entry, dict) else None
        if not isinstance(plat, dict):
            continue
        os_, a, v = plat.get("os"), plat.get("architecture"), plat.get("variant", "")
        seen.append(f"{os_}/{a}" + (f"/{v}" if v else ""))
        if os_ != "linux" or a != arch:
            continue
        desc = Descriptor.parse(entry, f"index entry {i}")
        if not variant or v == variant:
            return desc
        fallback = fallback or desc
    if fallback:
        return fallback
    raise RegistryError(f"The image has no linux/{arch} manifest (it has: "
                        f"{', '.join(seen) or 'none'})")


class Registry:
    """One registry, as a remote names it.

    Raises (constructor):
        BadRequest: a bad URL (see :class:`Origin`), an unreadable auth file.
    """

    def __init__(self, url: str, *, auth_file: Path | None = None,
                 credentials: Credentials | None = None, ca_file: Path | None = None,
                 insecure: bool = False) -> None:
        if credentials is None and auth_file is not None:
            netloc = Origin(url, insecure=insecure).netloc
            credentials = credentials_from_file(auth_file, netloc)
        self.origin = Origin(url, credentials=credentials, ca_file=ca_file, insecure=insecure)

    def ping(self) -> None:
        """``GET /v2/``: reachable, speaks v2, and the credentials (if asked) work."""
        self.origin.request("GET", "/v2/", scope="").close()

    # -- manifests -------------------------------------------------------------------

    def _get_manifest(self, repo: str, ref: str, scope: str) -> tuple[str, str, bytes]:
        resp = self.origin.request("GET", f"/v2/{repo}/manifests/{ref}", scope=scope,
                                   headers={"Accept": ACCEPT})
        try:
            length = int(resp.headers.get("Content-Length") or 0)
            if length > MAX_MANIFEST:
                raise RegistryError(f"The manifest of {repo}:{ref} is over {MAX_MANIFEST} bytes")
            data = resp.read_all(MAX_MANIFEST)
        finally:
            resp.close()
        if ref.startswith(("sha256:", "sha512:")):
            want = ref
        else:
            header = resp.headers.get("Docker-Content-Digest", "")
            own = f"sha256:{hashlib.sha256(data).hexdigest()}"
            want = header if _DIGEST_RE.fullmatch(header) else own  # no header: trust by tag
        hasher = _hasher(want)
        hasher.update(data)
        got = f"{want.split(':')[0]}:{hasher.hexdigest()}"
        if got != want:
            raise RegistryError(f"The manifest of {repo}:{ref} does not match its digest "
                                f"({want}, got {got}): refused")
        media = resp.headers.get("Content-Type", "").split(";")[0].strip()
        return want, media, data

    def resolve(self, ref: Reference) -> tuple[Descriptor, dict[str, Any], bytes]:
        """The platform manifest ``ref`` names (an index resolved to this
        host's entry): its descriptor, parsed JSON and exact bytes.

        Raises:
            NotFound: no such repository or tag.
            RegistryError: a digest mismatch, an unknown or schema 1 media
                type, no manifest for this platform.
        """
        scope = f"repository:{ref.repository}:pull"
        digest, media, data = self._get_manifest(ref.repository, ref.ref, scope)
        doc = _parse_json(data, "manifest")
        media = doc.get("mediaType") or media
        if media in _INDEXES:
            arch, variant = host_platform()
            desc = _pick_platform(doc, arch, variant)
            digest, media, data = self._get_manifest(ref.repository, desc.digest, scope)
            doc = _parse_json(data, "manifest")
            media = doc.get("mediaType") or media
        if media not in _MANIFESTS:
            raise RegistryError(f"Manifest media type {media!r} is not supported (cove reads "
                                "OCI and Docker schema 2 manifests and indexes)")
        return Descriptor(media, digest, len(data)), doc, data

    # -- blobs ---------------------------------------------------------------------------

    def _fetch_blob(self, repo: str, desc: Descriptor, layout: Layout,
                    report: Callable[[int], None],
                    cancelled: Callable[[], bool] | None = None) -> int:
        """Download ``desc`` into ``layout`` (resumed from ``ingest/``);
        returns the bytes fetched now. Idempotent."""
        if layout.has(desc):
            report(desc.size)
            return 0
        part = layout.partial(desc.digest)
        hasher = _hasher(desc.digest)
        have = part.stat().st_size if part.exists() else 0
        if have > desc.size:
            part.unlink()
            have = 0
        if have:
            with open(part, "rb") as f:
                for chunk in iter(lambda: f.read(CHUNK), b""):
                    hasher.update(chunk)
        headers = {"Range": f"bytes={have}-"} if have else {}
        resp = self.origin.request("GET", f"/v2/{repo}/blobs/{desc.digest}",
                                   scope=f"repository:{repo}:pull", headers=headers,
                                   follow_off_origin=True, ok=(200, 206))
        fetched = 0
        try:
            if have and resp.status != 206:  # the server ignored Range: start over
                hasher, have = _hasher(desc.digest), 0
            elif have and not resp.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
                raise RegistryError(f"The registry answered another range of {desc.digest}")
            report(have)
            with open(part, "r+b" if have else "wb") as out:
                out.seek(have)
                out.truncate()
                left = desc.size - have
                while left > 0:
                    if cancelled is not None and cancelled():  # what came is kept
                        raise InternalError("Operation cancelled")
                    chunk = resp.read(min(CHUNK, left))
                    if not chunk:
                        raise RegistryError(f"The download of {desc.digest} stopped at "
                                            f"{desc.size - left} of {desc.size} bytes")
                    out.write(chunk)
                    hasher.update(chunk)
                    left -= len(chunk)
                    fetched += len(chunk)
                    report(desc.size - left)
                if resp.read(1):
                    part.unlink()
                    raise RegistryError(f"Blob {desc.digest} is larger than the {desc.size} "
                                        "bytes its manifest declares: refused")
        finally:
            resp.close()
        got = f"{desc.digest.split(':')[0]}:{hasher.hexdigest()}"
        if got != desc.digest:
            part.unlink()
            raise RegistryError(f"Blob {desc.digest} does not match its digest (got {got}): "
                                "refused")
        os.replace(part, layout.blob(desc.digest))
        return fetched

    def pull(self, ref: Reference, layout_dir: Path, *, name: str = "",
             progress: Progress | None = None,
             have_layer: Callable[[str], bool] | None = None,
             cancelled: Callable[[], bool] | None = None) -> PulledImage:
        """Pull ``ref`` into the OCI layout at ``layout_dir`` and tag it there
        as ``name`` (default ``HOST/REPO:TAG``).

        Idempotent and resumable: blobs already in the layout are not
        fetched again, a partial one goes on from where it stopped. A layer
        whose uncompressed digest (the config's ``rootfs.diff_ids``, hex)
        ``have_layer`` says is stored already is not fetched at all: the
        caller keeps unpacked layers, not their blobs. ``cancelled`` is
        asked between chunks (InternalError "Operation cancelled"; what came
        is kept for the next pull).

        Raises:
            NotFound, RegistryAuthError, RegistryError: see :meth:`resolve`;
                a blob larger than declared or with another digest (nothing
                of it kept), a connection lost (what came is kept).
        """
        layout = Layout(layout_dir)
        layout.ensure()
        desc, doc, data = self.resolve(ref)
        config = Descriptor.parse(doc.get("config"), "config")
        raw_layers = doc.get("layers")
        if not isinstance(raw_layers, list):
            raise RegistryError("The manifest has no layers list")
        layers = [Descriptor.parse(x, f"layer {i}") for i, x in enumerate(raw_layers)]
        if config.size > MAX_CONFIG:
            raise RegistryError(f"The image config is over {MAX_CONFIG} bytes")
        total = sum(x.size for x in layers) + config.size
        done: dict[str, int] = {}
        shown = [0.0, -1]

        def reporter(index: int, blob: Descriptor) -> Callable[[int], None]:
            def report(n: int) -> None:
                done[blob.digest] = n
                if progress is None:
                    return
                got = sum(done.values())
                pct = int(got * 100 / total) if total else 100
                now = time.monotonic()
                if pct != shown[1] or now - shown[0] > 0.5:
                    shown[0], shown[1] = now, pct
                    what = f"layer {index}/{len(layers)}" if index else "config"
                    progress("Download", pct, f"{what}: {got >> 20}/{total >> 20} MiB")
            return report

        fetched = self._fetch_blob(ref.repository, config, layout, reporter(0, config),
                                   cancelled)
        config_data = _parse_json(layout.blob(config.digest).read_bytes(), "image config")
        rootfs = config_data.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
            diff_ids = [None] * len(layers)  # the importer refuses it; fetch all meanwhile
        for i, blob in enumerate(layers, 1):
            diff = diff_ids[i - 1]
            if (have_layer is not None and isinstance(diff, str) and diff.startswith("sha256:")
                    and have_layer(diff[7:])):
                reporter(i, blob)(blob.size)
                continue
            fetched += self._fetch_blob(ref.repository, blob, layout, reporter(i, blob),
                                        cancelled)
        layout.put_bytes(desc.digest, data)
        name = name or f"{self.origin.netloc}/{ref.repository}:{ref.tag or ref.digest}"
        layout.tag(name, desc)
        return PulledImage(layout_dir, name, desc, config, layers, config_data, fetched)

    # -- push ------------------------------------------------------------------------------

    def _upload_blob(self, repo: str, desc: Descriptor, layout: Layout) -> bool:
        """Upload one blob unless the registry has it; True when sent."""
        scope = f"repository:{repo}:pull,push"
        with contextlib.suppress(NotFound):  # 404: the registry lacks it
            self.origin.request("HEAD", f"/v2/{repo}/blobs/{desc.digest}", scope=scope).close()
            return False
        resp = self.origin.request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope,
                                   ok=(202,), body=b"")
        location = resp.headers.get("Location", "")
        resp.close()
        if not location:
            raise RegistryError("The registry started an upload without a Location")
        if "://" not in location:
            location = f"{self.origin.scheme}://{self.origin.netloc}{location}"
        sep = "&" if "?" in location else "?"
        with open(layout.blob(desc.digest), "rb") as f:
            self.origin.request("PUT", f"{location}{sep}digest={desc.digest}", scope=scope,
                                headers={"Content-Type": "application/octet-stream",
                                         "Content-Length": str(desc.size)},
                                body=f, ok=(201,)).close()
        return True

    def push(self, layout_dir: Path, manifest: Descriptor, ref: Reference, *,
             progress: Progress | None = None) -> int:
        """Push ``manifest`` and its blobs from the layout to ``ref`` (a tag).
        Blobs the registry has are not sent again. Returns the bytes sent.

        Raises:
            BadRequest: ``ref`` has a digest; a blob missing from the layout.
            RegistryAuthError, RegistryError: the registry refused.
        """
        if ref.digest:
            raise BadRequest("Push to a tag (REPO:TAG), not a digest")
        layout = Layout(layout_dir)
        if not layout.has(manifest):
            raise BadRequest(f"Manifest {manifest.digest} is not in the layout")
        data = layout.blob(manifest.digest).read_bytes()
        doc = _parse_json(data, "manifest")
        blobs = [Descriptor.parse(doc.get("config"), "config")]
        blobs += [Descriptor.parse(x, "layer") for x in doc.get("layers") or []]
        for blob in blobs:
            if not layout.has(blob):
                raise BadRequest(f"Blob {blob.digest} is not in the layout")
        total = sum(b.size for b in blobs) or 1
        sent = done = 0
        for i, blob in enumerate(blobs):
            if self._upload_blob(ref.repository, blob, layout):
                sent += blob.size
            done += blob.size
            if progress:
                progress("Upload", int(done * 100 / total), f"blob {i + 1}/{len(blobs)}")
        self.origin.request("PUT", f"/v2/{ref.repository}/manifests/{ref.tag}",
                            scope=f"repository:{ref.repository}:pull,push",
                            headers={"Content-Type": manifest.media_type or MEDIA_OCI_MANIFEST},
                            body=data, ok=(201,)).close()
        return sent + len(data)
