"""Another LXD or cove as an image server (``protocol: lxd``).

Design note: what LXD's server does when it pulls from another LXD
(``lxd/daemon_images.go`` ``ImageDownload`` through ``client/lxd_images.go``):
an alias is looked up at ``GET /1.0/images/aliases/NAME``, the image at
``GET /1.0/images/FP`` and its files at ``GET /1.0/images/FP/export`` — one
file (a unified tarball), or ``multipart/form-data`` with a ``metadata`` and
a ``rootfs`` part (split). A private image is reachable without trust with
the ``secret`` its owner made (``?secret=``); public ones need none; a
trusted client certificate sees all. The bytes must hash to the
fingerprint (the metadata part's then the rootfs part's, as LXD computes
it) or the pull fails.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from cove.model.errors import NotFound
from cove.storage import remote_resume
from cove.storage.remote_fetch import Fetcher, RemoteError, copy_capped

__all__ = ["LxdImage", "download", "resolve"]

_HEX = re.compile(r"[0-9a-f]{1,64}")
_MAX_HEADERS = 16 << 10


class LxdImage:
    """What the remote says of one image: its fingerprint and LXD ``Image`` object."""

    def __init__(self, fingerprint: str, info: dict[str, Any]) -> None:
        self.fingerprint = fingerprint
        self.info = info

    @property
    def size(self) -> int:
        size = self.info.get("size")
        return size if isinstance(size, int) and not isinstance(size, bool) else 0


def _metadata(doc: Any, what: str) -> Any:
    if not isinstance(doc, dict) or doc.get("type") != "sync":
        raise RemoteError(f"The image server's answer for {what} is not an LXD response")
    return doc.get("metadata")


def _query(secret: str) -> str:
    return urlencode({"secret": secret}) if secret else ""


def resolve(fetcher: Fetcher, *, alias: str = "", fingerprint: str = "",
            secret: str = "") -> LxdImage:
    """The image ``fingerprint`` (a prefix is fine) or ``alias`` names on the server.

    Raises:
        NotFound: the server has no such alias or image (or keeps it from us).
        RemoteError: the server failed or answered nonsense.
    """
    base = fetcher.base_path
    if fingerprint and not alias:
        # LXD's ImageDownload tries the fingerprint as an alias first
        # (pylxd sends an alias as the fingerprint)
        try:
            doc = fetcher.get_json(f"{base}/1.0/images/aliases/{quote(fingerprint, safe='')}")
            meta = _metadata(doc, f"alias {fingerprint!r}")
            target = meta.get("target") if isinstance(meta, dict) else None
            if isinstance(target, str) and _HEX.fullmatch(target):
                fingerprint = target
        except (RemoteError, NotFound):
            pass
    if not fingerprint:
        try:
            doc = fetcher.get_json(f"{base}/1.0/images/aliases/{quote(alias, safe='')}")
        except RemoteError as e:
            raise NotFound(f"Image alias {alias!r} not found on {fetcher.server}: {e}") from None
        meta = _metadata(doc, f"alias {alias!r}")
        target = meta.get("target") if isinstance(meta, dict) else None
        if not isinstance(target, str) or not _HEX.fullmatch(target):
            raise RemoteError(f"The image server's alias {alias!r} has no fingerprint")
        fingerprint = target
    fingerprint = fingerprint.lower()
    if not _HEX.fullmatch(fingerprint):
        raise NotFound(f"Image not found: {fingerprint!r} is not a fingerprint")
    try:
        doc = fetcher.get_json(f"{base}/1.0/images/{fingerprint}", query=_query(secret))
    except RemoteError as e:
        raise NotFound(f"Image {fingerprint} not found on {fetcher.server}: {e}") from None
    info = _metadata(doc, f"image {fingerprint}")
    full = info.get("fingerprint") if isinstance(info, dict) else None
    if not isinstance(full, str) or len(full) != 64 or not full.startswith(fingerprint):
        raise RemoteError(f"The image server answered image {fingerprint} with another one")
    return LxdImage(full, info)


def download(fetcher: Fetcher, image: LxdImage, tmpdir: Path, *, limit: int,
             secret: str = "", progress: Callable[[int], None] | None = None,
             downloads: Path | None = None) -> tuple[Path, Path | None]:
    """Fetch the image's files into ``tmpdir``: (rootfs or unified tarball,
    metadata tarball or None). The files are the caller's; on failure none stays.
    With ``downloads``, a unified tarball (one file, its sha256 the
    fingerprint; LXD serves it with Range) is resumable there
    (``remote_resume``); a split image comes whole each time.

    Raises: RemoteError (a digest that is not the fingerprint, a malformed
    multipart body, past ``limit``, the server failed)."""
    if downloads is None:
        return _download(fetcher, image, tmpdir, limit, secret, progress, None)
    with remote_resume.Partial(downloads, image.fingerprint, None) as part:
        return _download(fetcher, image, tmpdir, limit, secret, progress, part)


def _download(fetcher: Fetcher, image: LxdImage, tmpdir: Path, limit: int, secret: str,
              progress: Callable[[int], None] | None, part: remote_resume.Partial | None
              ) -> tuple[Path, Path | None]:
    path = f"{fetcher.base_path}/1.0/images/{image.fingerprint}/export"
    if part is not None and part.complete():
        part.finish(tmpdir / "image.tar")
        return tmpdir / "image.tar", None
    conn, resp = fetcher.open(path, query=_query(secret),
                              headers=part.headers() if part is not None else None)
    made: list[Path] = []
    try:
        ctype = resp.getheader("Content-Type", "")
        if part is not None and part.usable and not ctype.startswith("multipart/form-data"):
            part.receive(fetcher, resp, path, limit=limit, progress=progress)
            part.finish(tmpdir / "image.tar")
            return tmpdir / "image.tar", None
        if part is not None:
            part.discard()  # split, or kept by another pull: not resumed
        h = hashlib.sha256()
        if ctype.startswith("multipart/form-data"):
            m = re.search(r'boundary="?([^";]+)"?', ctype)
            if m is None:
                raise RemoteError(f"{path}: a multipart answer without a boundary")
            parts = _Multipart(resp, m.group(1).encode(), limit, progress)
            got = parts.save(tmpdir, made, h)
            if set(got) != {"metadata", "rootfs"}:
                raise RemoteError(f"{path}: expected a 'metadata' and a 'rootfs' part, got "
                                  f"{sorted(got)}")
            result: tuple[Path, Path | None] = (got["rootfs"], got["metadata"])
        else:
            dest = tmpdir / "image.tar"
            made.append(dest)
            with open(dest, "xb") as out:
                digest = copy_capped(resp, out, path=path, server=fetcher.server,
                                     size=None, limit=limit, progress=progress)
            if digest != image.fingerprint:
                raise RemoteError(f"The image from {fetcher.server} does not match its "
                                  f"fingerprint {image.fingerprint} (got {digest})")
            return dest, None
        if h.hexdigest() != image.fingerprint:
            raise RemoteError(f"The image from {fetcher.server} does not match its "
                              f"fingerprint {image.fingerprint} (got {h.hexdigest()})")
        return result
    except BaseException:
        for p in made:
            p.unlink(missing_ok=True)
        raise
    finally:
        conn.close()


class _Multipart:
    """A streaming reader of LXD's export body: parts written to files as they come."""

    def __init__(self, src: Any, boundary: bytes, limit: int,
                 progress: Callable[[int], None] | None) -> None:
        self._src = src
        self._delim = b"\r\n--" + boundary
        self._buf = b"\r\n"  # the first delimiter has no CRLF before it
        self._limit = limit
        self._done = 0
        self._progress = progress
        self._eof = False

    def _fill(self) -> bool:
        if self._eof:
            return False
        chunk = self._src.read(1 << 20)
        if not chunk:
            self._eof = True
            return False
        self._done += len(chunk)
        if self._done > self._limit + _MAX_HEADERS:
            raise RemoteError(f"The image is larger than the {self._limit} bytes cove may "
                              "unpack: refused")
        if self._progress is not None:
            self._progress(self._done)
        self._buf += chunk
        return True

    def _skip_to_delim(self) -> None:
        while self._delim not in self._buf:
            keep = self._buf[-len(self._delim):]
            self._buf = keep
            if not self._fill():
                raise RemoteError("Malformed multipart image: no boundary")
        self._buf = self._buf[self._buf.index(self._delim) + len(self._delim):]

    def _headers(self) -> str | None:
        """The part's name, or None at the closing delimiter."""
        while len(self._buf) < 2 and self._fill():
            pass
        if self._buf.startswith(b"--"):
            return None
        while b"\r\n\r\n" not in self._buf:
            if len(self._buf) > _MAX_HEADERS or not self._fill():
                raise RemoteError("Malformed multipart image: bad part headers")
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        m = re.search(rb'name="([^"]*)"', head)
        if m is None:
            raise RemoteError("Malformed multipart image: a part without a name")
        return m.group(1).decode("utf-8", "replace")

    def _body(self, out: Any, hasher: Any) -> None:
        n = len(self._delim)
        while True:
            i = self._buf.find(self._delim)
            if i >= 0:
                data, self._buf = self._buf[:i], self._buf[i + n:]
                out.write(data)
                hasher.update(data)
                return
            if len(self._buf) > n:
                data, self._buf = self._buf[:-n], self._buf[-n:]
                out.write(data)
                hasher.update(data)
            if not self._fill():
                raise RemoteError("Malformed multipart image: a part without its end")

    def save(self, tmpdir: Path, made: list[Path], hasher: Any) -> dict[str, Path]:
        """Write the parts (``metadata`` first, then ``rootfs``, as LXD sends them)."""
        self._skip_to_delim()
        got: dict[str, Path] = {}
        while True:
            name = self._headers()
            if name is None:
                return got
            if name not in ("metadata", "rootfs") or name in got:
                raise RemoteError(f"Unexpected part {name!r} in the image export")
            if name == "rootfs" and "metadata" not in got:
                raise RemoteError("The image export sent its rootfs before its metadata")
            dest = tmpdir / f"image-{name}"
            made.append(dest)
            with open(dest, "xb") as out:
                self._body(out, hasher)
            got[name] = dest
