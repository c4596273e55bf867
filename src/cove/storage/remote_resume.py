"""Downloads from a remote image server that survive an interruption.

Design note: a file whose sha256 is known before it is fetched (a
simplestreams item, an LXD server's unified tarball: its fingerprint) is
downloaded into ``<root>/downloads/sha256-HEX.part``, named by that digest
and kept when the download stops half-way (the connection cut, the pull
cancelled, coved killed). The next pull of the same file re-hashes what is
there and asks for the rest with ``Range: bytes=N-``; a ``206`` whose
``Content-Range`` starts at N is appended, a ``200`` (a server without
Range support) is written from the start, any other range is refused. The
sha256 covers every byte, the kept ones included, and is checked before the
file leaves ``downloads/`` by a rename: a mismatch, or bytes past the
declared size or the unpack cap (``RemoteRefused``), removes the partial
file, so a bad prefix is never resumed twice.

Two pulls of the same file: the partial file is locked (``flock``) by the
one writing it; the other downloads in full beside it without a partial.
Partial files older than ``max_age`` are dropped by ``sweep`` (coved's
start).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from cove.storage.remote_fetch import Fetcher, RemoteError, RemoteRefused, copy_capped

__all__ = ["Partial", "download", "partial_path", "sweep"]

_CHUNK = 1 << 20
_HEX = re.compile(r"[0-9a-f]{64}")


def partial_path(downloads: Path, sha256: str) -> Path:
    """Where the unfinished download of the file hashing to ``sha256`` is kept."""
    return downloads / f"sha256-{sha256}.part"


def _hash_prefix(part: Path, have: int) -> Any:
    """The sha256 state after the first ``have`` bytes of ``part``."""
    h = hashlib.sha256()
    with open(part, "rb") as src:
        left = have
        while left > 0:
            chunk = src.read(min(_CHUNK, left))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h


class Partial:
    """The kept partial download of the file hashing to ``sha256``, locked
    while this object is open (``with``). ``usable`` is False when another
    pull holds it or the digest is not one to name a file by: then nothing
    is kept and ``headers`` asks for the whole file."""

    def __init__(self, downloads: Path, sha256: str, size: int | None) -> None:
        self.sha256 = sha256.lower()
        self.size = size
        self.path = partial_path(downloads, self.sha256)
        self._downloads = downloads
        self._fd = -1
        self.have = 0
        self._hasher: Any = hashlib.sha256()

    @property
    def usable(self) -> bool:
        return self._fd >= 0

    def __enter__(self) -> Self:
        if not _HEX.fullmatch(self.sha256):
            return self
        self._downloads.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another pull is writing it: not ours to touch
            os.close(fd)
            return self
        self._fd = fd
        have = os.fstat(fd).st_size
        if self.size is not None and have > self.size:
            have = 0
        if have:
            self._hasher = _hash_prefix(self.path, have)
        self.have = have
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                if os.fstat(self._fd).st_size == 0:  # nothing worth keeping
                    self.path.unlink()
            os.close(self._fd)  # the lock goes with it
            self._fd = -1

    def complete(self) -> bool:
        """All of it is here already (a pull killed before its rename; a
        size not known: the bytes kept hash to the digest)."""
        if self.usable and self.have and self.size in (None, self.have):
            if self._hasher.hexdigest() == self.sha256:
                return True
            if self.size is not None:  # all its bytes, the wrong ones: from the start
                self.have, self._hasher = 0, hashlib.sha256()
        return False

    def headers(self) -> dict[str, str] | None:
        """The ``Range`` that asks for the rest (None: the whole file)."""
        return {"Range": f"bytes={self.have}-"} if self.usable and self.have else None

    def discard(self) -> None:
        """Forget the kept bytes (the server sent something that is not this file)."""
        if self.usable:
            self.have, self._hasher = 0, hashlib.sha256()
            os.ftruncate(self._fd, 0)

    def receive(self, fetcher: Fetcher, resp: Any, path: str, *, limit: int,
                progress: Callable[[int], None] | None = None) -> int:
        """Write the body of ``resp`` (the answer to ``headers``) on what is
        kept and check the whole file's sha256; the bytes fetched now
        (``fetcher.fetched`` grows by as much).

        Raises: RemoteRefused (another range, past the size or ``limit``,
        another sha256: the partial is emptied), RemoteError (the connection
        stopped, cancelled: what came is kept)."""
        if not self.usable:
            raise RemoteError(f"{path}: no partial download to receive into")
        have = self.have
        if have and resp.status == 416:  # the server's file is shorter now
            self._refuse()
            raise RemoteRefused(f"{path} from {fetcher.server} is shorter than the "
                                f"{have} bytes kept of it: the next pull starts over")
        if have and resp.status == 200:  # no Range support: from the start
            have, self._hasher = 0, hashlib.sha256()
        elif have and not (resp.getheader("Content-Range") or "").startswith(f"bytes {have}-"):
            self._refuse()
            raise RemoteRefused(f"{path} from {fetcher.server}: the server answered another "
                                f"range than bytes {have}- (refused)")
        size = self.size
        length = resp.getheader("Content-Length") or ""
        if size is None and length.isdigit():
            # the whole file's size from the body's: a connection cut short is
            # then a stop worth resuming (http.client reads a short body as EOF)
            size = have + int(length)
        os.ftruncate(self._fd, have)
        os.lseek(self._fd, have, os.SEEK_SET)
        try:
            with open(self._fd, "wb", closefd=False) as out:
                try:
                    got = copy_capped(resp, out, path=path, server=fetcher.server,
                                      size=size, limit=limit, progress=progress,
                                      cancelled=fetcher.cancelled, start=have,
                                      hasher=self._hasher)
                finally:
                    out.flush()
                    now = os.fstat(self._fd).st_size
                    fetcher.fetched += now - have
                    self.have = now
        except RemoteRefused:
            self._refuse()
            raise
        if got != self.sha256:
            self._refuse()
            raise RemoteRefused(f"{path} from {fetcher.server} does not match its sha256 "
                                f"(expected {self.sha256}, got {got})")
        return self.have - have

    def _refuse(self) -> None:
        self.path.unlink(missing_ok=True)
        self.have, self._hasher = 0, hashlib.sha256()

    def finish(self, dest: Path) -> None:
        """The verified file to ``dest`` (a rename: it leaves ``downloads/``)."""
        os.replace(self.path, dest)


def download(fetcher: Fetcher, path: str, dest: Path, *, downloads: Path, sha256: str,
             size: int | None, limit: int, progress: Callable[[int], None] | None = None,
             query: str = "") -> int:
    """Fetch ``path`` to ``dest`` (a new file), resuming a kept partial
    download of ``sha256`` with ``Range``. Returns the bytes fetched now
    (``fetcher.fetched`` grows by as much). On failure nothing is at ``dest``;
    the partial stays unless its bytes were refused.

    Raises: RemoteError (the server failed, the connection stopped,
    cancelled), RemoteRefused (past ``size`` or ``limit``, another sha256,
    a range the server should not have sent).
    """
    with Partial(downloads, sha256, size) as part:
        if not part.usable:
            return _plain(fetcher, path, dest, sha256=sha256, size=size, limit=limit,
                          progress=progress, query=query)
        if part.complete():
            part.finish(dest)
            return 0
        conn, resp = fetcher.open(path, query=query, headers=part.headers())
        try:
            n = part.receive(fetcher, resp, path, limit=limit, progress=progress)
        finally:
            conn.close()
        part.finish(dest)
        return n


def _plain(fetcher: Fetcher, path: str, dest: Path, *, sha256: str, size: int | None,
           limit: int, progress: Callable[[int], None] | None, query: str) -> int:
    fetcher.download(path, dest, sha256=sha256, size=size, limit=limit, progress=progress,
                     query=query)
    n = dest.stat().st_size
    fetcher.fetched += n
    return n


def sweep(downloads: Path, *, max_age: float, now: float | None = None) -> list[str]:
    """Remove partial downloads untouched for ``max_age`` seconds (a pull
    nobody retried), and anything else that is not one. Their names.
    Never raises; idempotent."""
    now = time.time() if now is None else now
    gone: list[str] = []
    with contextlib.suppress(OSError):
        for p in downloads.iterdir():
            with contextlib.suppress(OSError):
                st = p.lstat()
                if p.name.endswith(".part") and p.is_file() and not p.is_symlink() \
                        and now - st.st_mtime <= max_age:
                    continue
                p.unlink()
                gone.append(p.name)
    return gone

