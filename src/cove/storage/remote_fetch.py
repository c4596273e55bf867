"""HTTPS downloads from a remote image server (simplestreams or LXD), hostile-safe.

Design note: a remote image server is hostile input like an uploaded tarball.
Every request goes to the server's own origin (scheme, host, port): a path
from an index is joined under the server's URL only when it is relative and
stays there (no scheme, no ``..``, no leading ``/``), and a redirect is
followed only to the same origin. Each body is read with a cap: JSON
documents at ``MAX_JSON`` bytes, an item at its declared size (not a byte
more) and under the unpack budget, and its sha256 is checked before the file
is handed on.

TLS: a server certificate given with the source (``certificate``, LXD's
``TLSServerCert``) is pinned: the peer's certificate must be those bytes,
whatever CA signed it or host it names; without one the system's CAs and the
host name are checked. A client certificate (coved's own, as LXD uses its
server certificate when it pulls from another LXD) is presented when given.
Plain ``http://`` is refused except on loopback (the tests' servers).
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import posixpath
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

from cove.model.errors import BadRequest
from cove.model.trust import cert_der

__all__ = ["MAX_JSON", "Fetcher", "RemoteError", "RemoteRefused", "safe_join"]

MAX_JSON = 64 << 20  # an index or products document; images: releases the whole catalogue
_CHUNK = 1 << 20
_TIMEOUT = 60.0
_MAX_REDIRECTS = 3


class RemoteError(BadRequest):
    """The remote server failed or sent something cove refuses (a 400: the
    source named in the request is at fault, not cove)."""


class RemoteRefused(RemoteError):
    """The bytes themselves are refused (past their size or the cap, a digest
    that differs): a partial download of them is worth nothing."""


def safe_join(base_path: str, rel: str) -> str:
    """``rel`` (a path from the server's index) under ``base_path``.

    Raises:
        RemoteError: ``rel`` is absolute, has a scheme or a host, or leaves the base.
    """
    if not rel or not isinstance(rel, str):
        raise RemoteError("The image server listed an item without a path")
    if "\\" in rel or "\x00" in rel or "?" in rel or "#" in rel:
        raise RemoteError(f"The image server listed a bad path {rel!r}")
    parts = urlsplit(rel)
    if parts.scheme or parts.netloc or rel.startswith("/"):
        raise RemoteError(f"The image server listed a path outside it: {rel!r}")
    segs = rel.split("/")
    if any(s in ("..", ".") for s in segs) or "" in segs[:-1]:
        raise RemoteError(f"The image server listed a path outside it: {rel!r}")
    base = base_path.rstrip("/")
    return posixpath.join(base + "/", rel) if base else "/" + rel


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Fetcher:
    """GETs under one server URL. Not thread-safe (one per pull)."""

    def __init__(self, server: str, *, certificate: str = "",
                 client_cert: tuple[Path, Path] | None = None,
                 cancelled: Callable[[], bool] = lambda: False) -> None:
        """Raises: BadRequest (a URL that is not https, or http off loopback;
        a certificate that is not one)."""
        parts = urlsplit(server.strip())
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise BadRequest(f"Invalid image server {server!r}: expected https://HOST[:PORT]")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise BadRequest(f"Invalid image server {server!r}: plain http is allowed on "
                             "loopback only")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        self._pin = cert_der(certificate) if certificate else None
        self._client_cert = client_cert
        self._cancelled = cancelled
        self.cancelled = cancelled
        self.fetched = 0  # bytes resumable downloads fetched (``remote_resume``)
        self.server = f"{parts.scheme}://{parts.netloc}{self.base_path}"

    # -- connection -------------------------------------------------------------------
    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if self._pin is not None:
            # pinned: the exact certificate decides, not a CA or a name
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self._client_cert is not None:
            ctx.load_cert_chain(str(self._client_cert[0]), str(self._client_cert[1]))
        return ctx

    def _connect(self) -> http.client.HTTPConnection:
        if self.scheme == "http":
            return http.client.HTTPConnection(self.host, self.port, timeout=_TIMEOUT)
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=_TIMEOUT,
                                           context=self._context())
        try:
            conn.connect()
        except (OSError, ssl.SSLError) as e:
            conn.close()
            raise RemoteError(f"Cannot reach the image server {self.server}: {e}") from None
        if self._pin is not None:
            sock = conn.sock
            peer = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) \
                else None
            if peer != self._pin:
                conn.close()
                raise RemoteError(f"The image server {self.server} did not present the "
                                  "pinned certificate")
        return conn

    def open(self, path: str, *, query: str = "", headers: dict[str, str] | None = None
             ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """GET an absolute ``path`` on the server (same-origin redirects
        followed), with ``headers`` added. The caller closes the connection.

        Raises: RemoteError (unreachable, a status other than 200 — or 206
        and 416 when ``headers`` ask for a ``Range`` —, a redirect elsewhere).
        """
        ok = (200, 206, 416) if headers and "Range" in headers else (200,)
        target = quote(path, safe="/:@!$&'()*+,;=-._~") + (f"?{query}" if query else "")
        for _ in range(_MAX_REDIRECTS + 1):
            conn = self._connect()
            try:
                conn.request("GET", target, headers={"User-Agent": "cove",
                                                     "Accept-Encoding": "identity",
                                                     **(headers or {})})
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise RemoteError(f"Cannot fetch {path} from {self.server}: {e}") from None
            if resp.status in (301, 302, 303, 307, 308):
                loc = resp.getheader("Location", "")
                conn.close()
                dest = urlsplit(loc)
                if (dest.scheme and dest.scheme != self.scheme) or \
                        (dest.hostname and (dest.hostname, dest.port or self.port)
                         != (self.host, self.port)):
                    raise RemoteError(f"The image server {self.server} redirected {path} to "
                                      f"another server ({loc!r}): refused")
                target = dest.path + (f"?{dest.query}" if dest.query else "")
                continue
            if resp.status not in ok:
                body = resp.read(4096)
                conn.close()
                raise RemoteError(f"Cannot fetch {path} from {self.server}: "
                                  f"{resp.status} {resp.reason} {_lxd_error(body)}".rstrip())
            return conn, resp
        raise RemoteError(f"The image server {self.server} redirected {path} too often")

    # -- reads ------------------------------------------------------------------------
    def get_json(self, path: str, *, query: str = "", limit: int = MAX_JSON) -> Any:
        """The JSON document at ``path`` (at most ``limit`` bytes).

        Raises: RemoteError (as ``open``; too big; not JSON)."""
        conn, resp = self.open(path, query=query)
        try:
            data = resp.read(limit + 1)
        except (OSError, http.client.HTTPException) as e:
            raise RemoteError(f"Cannot fetch {path} from {self.server}: {e}") from None
        finally:
            conn.close()
        if len(data) > limit:
            raise RemoteError(f"{path} from {self.server} is larger than {limit} bytes: refused")
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise RemoteError(f"{path} from {self.server} is not JSON") from None

    def download(self, path: str, dest: Path, *, sha256: str = "", size: int | None = None,
                 limit: int, progress: Callable[[int], None] | None = None,
                 query: str = "") -> str:
        """Write the body at ``path`` to ``dest`` (created, mode 0600); return
        its sha256. With ``size``, a body longer than it fails at the first
        byte past it; with ``sha256``, one that does not hash to it fails.
        ``dest`` is removed on any failure.

        Raises: RemoteError (as ``open``; too big; a digest mismatch; cancelled).
        """
        conn, resp = self.open(path, query=query)
        try:
            with open(dest, "xb") as out:  # mode x: never an existing file
                got = copy_capped(resp, out, path=path, server=self.server, size=size,
                                  limit=limit, progress=progress, cancelled=self._cancelled)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        finally:
            conn.close()
        if sha256 and got != sha256.lower():
            dest.unlink(missing_ok=True)
            raise RemoteRefused(f"{path} from {self.server} does not match its sha256 "
                              f"(expected {sha256}, got {got})")
        return got


def copy_capped(src: BinaryIO | http.client.HTTPResponse, out: BinaryIO, *, path: str,
                server: str, size: int | None, limit: int,
                progress: Callable[[int], None] | None = None,
                cancelled: Callable[[], bool] = lambda: False,
                start: int = 0, hasher: Any = None) -> str:
    """Copy ``src`` to ``out`` with the caps of ``Fetcher.download``; the sha256.
    ``start`` bytes are there already (a resumed download), hashed in ``hasher``.

    Raises: RemoteRefused (past ``size`` or ``limit``), RemoteError (short
    of ``size``, the connection failed, cancelled)."""
    cap = limit if size is None else min(size, limit)
    if size is not None and size > limit:
        raise RemoteRefused(f"{path} from {server} is {size} bytes, more than the "
                            f"{limit} cove may unpack: refused")
    h = hasher if hasher is not None else hashlib.sha256()
    done = start
    while True:
        if cancelled():
            raise RemoteError("The download was cancelled")
        try:
            chunk = src.read(_CHUNK)
        except (OSError, http.client.HTTPException) as e:
            raise RemoteError(f"Cannot fetch {path} from {server}: {e}") from None
        if not chunk:
            break
        done += len(chunk)
        if done > cap:
            what = "its declared size" if size is not None and cap == size else \
                f"the {limit} bytes cove may unpack"
            raise RemoteRefused(f"{path} from {server} is larger than {what}: refused")
        h.update(chunk)
        out.write(chunk)
        out.flush()  # what the progress reports is on disk: a resume starts past it
        if progress is not None:
            progress(done)
    if size is not None and done != size:
        raise RemoteError(f"{path} from {server} ended at {done} of its {size} bytes")
    return h.hexdigest()


def _lxd_error(body: bytes) -> str:
    """The ``error`` of an LXD error envelope, else nothing."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    return f"({doc.get('error')})" if isinstance(doc, dict) and doc.get("error") else ""
