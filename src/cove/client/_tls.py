"""HTTPS endpoints: LXD's remote API (``https://host:8443``) with client certificates.

Design notes:

* Imported only for ``https://`` endpoints, so the ``cove`` command never
  pays for ``ssl`` on its unix-socket paths.
* Trust in the server is ``verify``: ``True`` checks its certificate against
  the system's CAs and its name; ``False`` checks nothing; a path names the
  server's own certificate (PEM) and pins it: the handshake succeeds only if
  the server presents exactly that certificate, whatever its name or
  issuer. The last is what ``lxc remote add`` does after you accept the
  fingerprint (it keeps ``servercerts/<remote>.crt``); ``fetch_certificate``
  gets the certificate to pin.
* The client proves who it is with ``client_cert``/``client_key``
  (default: ``$LXD_CONF`` or ``~/.config/lxc``, ``client.crt`` and
  ``client.key``, as the ``lxc`` command uses; none if those do not exist).
  The server decides whether it trusts that certificate; an untrusted one
  gets only the public part of ``/1.0`` and 403 elsewhere.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from cove.client._http import ConnectionFailed, HttpTransport
from cove.model.errors import BadRequest

__all__ = [
    "TlsTransport",
    "client_context",
    "default_client_cert",
    "fetch_certificate",
    "fingerprint",
    "parse_https",
]

DEFAULT_PORT = 8443


def lxd_conf_dir() -> Path:
    """Where ``lxc`` keeps its config: ``$LXD_CONF``, else ``~/.config/lxc``."""
    return Path(os.environ.get("LXD_CONF") or Path.home() / ".config" / "lxc")


def default_client_cert() -> tuple[str | None, str | None]:
    """``client.crt`` and ``client.key`` of ``lxc``'s config dir, if both exist."""
    d = lxd_conf_dir()
    crt, key = d / "client.crt", d / "client.key"
    if crt.is_file() and key.is_file():
        return str(crt), str(key)
    return None, None


def parse_https(url: str) -> tuple[str, int]:
    """``https://host[:port]`` → (host, port); port 8443 when not given.

    Raises:
        BadRequest: not an https URL with a host.
    """
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise BadRequest(f"Not an https endpoint: {url!r} (want https://HOST[:PORT])")
    if parts.path not in ("", "/") or parts.query:
        raise BadRequest(f"An endpoint has no path or query: {url!r}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise BadRequest(f"Bad port in {url!r}") from None
    return parts.hostname, port


def fingerprint(der: bytes) -> str:
    """LXD's certificate fingerprint: SHA-256 of the DER, in hex."""
    return hashlib.sha256(der).hexdigest()


def _pem_to_der(pem: str, where: str) -> bytes:
    try:
        return ssl.PEM_cert_to_DER_cert(pem.strip() + "\n")
    except ValueError:
        raise BadRequest(f"{where} is not a PEM certificate") from None


def client_context(verify: bool | str, client_cert: str | None,
                   client_key: str | None) -> ssl.SSLContext:
    """The client's TLS context (the sync and the asyncio drivers use it).

    A pinned certificate is the context's only trust anchor, with OpenSSL's
    partial-chain mode: the server must present exactly it (it need not be
    a CA, and its names are not checked), and this is checked in the
    handshake, before a byte of the request is sent.

    Raises:
        BadRequest: a certificate or key file is missing or not usable.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if verify is True:
        ctx.load_default_certs()
    elif verify is False:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, (str, os.PathLike)):
        try:
            pem = Path(verify).read_text()
        except OSError as e:
            raise BadRequest(f"Cannot read the server certificate {str(verify)!r}: "
                             f"{e.strerror or e}") from None
        der = _pem_to_der(pem, f"Server certificate {str(verify)!r}")
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=der)
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    else:
        raise BadRequest(f"verify is True, False or a certificate path, not {verify!r}")
    if client_cert or client_key:
        if not (client_cert and client_key):
            raise BadRequest("Give both client_cert and client_key (or neither)")
        for what, path in (("certificate", client_cert), ("key", client_key)):
            if not Path(path).is_file():
                raise BadRequest(f"Client {what} file not found: {path}")
        try:
            ctx.load_cert_chain(client_cert, client_key)
        except (ssl.SSLError, OSError, ValueError) as e:
            raise BadRequest(f"Cannot use client certificate {client_cert} with key "
                             f"{client_key}: {getattr(e, 'reason', None) or e}") from None
    return ctx


def _connect_error(url: str, e: OSError, pinned: str | None = None) -> ConnectionFailed:
    if isinstance(e, ssl.SSLCertVerificationError):
        if pinned:
            return ConnectionFailed(f"The server at {url} presented a certificate other than "
                                    f"the pinned {pinned}", url, "certificate")
        return ConnectionFailed(f"The server at {url} is not trusted: {e.verify_message} "
                                "(pin its certificate with verify=PATH, or verify=False)",
                                url, "certificate")
    if isinstance(e, ssl.SSLError):
        return ConnectionFailed(f"TLS with {url} failed: {e.reason or e}", url, "tls")
    if isinstance(e, socket.gaierror):
        return ConnectionFailed(f"Cannot resolve the host of {url}: {e.strerror or e}",
                                url, "refused")
    if e.errno == errno.ECONNREFUSED:
        return ConnectionFailed(f"Nothing listens at {url} (connection refused)", url,
                                "refused")
    if isinstance(e, TimeoutError):
        return ConnectionFailed(f"{url} did not answer in time", url, "timeout")
    return ConnectionFailed(f"Cannot connect to {url}: {e.strerror or e}", url, "refused")


class TlsTransport(HttpTransport):
    """HTTP over TLS to ``https://host:port``, keeping connections alive."""

    def __init__(self, url: str, *, verify: bool | str = True, client_cert: str | None = None,
                 client_key: str | None = None, timeout: float | None = None) -> None:
        super().__init__(timeout)
        self.host, self.port = parse_https(url)
        self.endpoint = f"https://{self.host}:{self.port}"
        self.name = f"the server at {self.endpoint}"
        self.context = client_context(verify, client_cert, client_key)
        self.pinned = str(verify) if not isinstance(verify, bool) else None
        self.has_client_cert = bool(client_cert)

    def open_socket(self, timeout: float | None = None) -> socket.socket:
        try:
            raw = socket.create_connection((self.host, self.port),
                                           timeout=timeout or self.timeout or 30)
        except OSError as e:
            raise _connect_error(self.endpoint, e) from None
        try:
            tls = self.context.wrap_socket(raw, server_hostname=self.host)
        except OSError as e:
            raw.close()
            raise _connect_error(self.endpoint, e, self.pinned) from None
        tls.settimeout(timeout if timeout is not None else self.timeout)
        return tls


def fetch_certificate(url: str, timeout: float = 10) -> str:
    """The server's certificate (PEM), fetched without trusting it: look at
    its fingerprint, then pin it with ``verify=PATH``.

    Raises:
        ConnectionFailed: nobody answers TLS there.
    """
    host, port = parse_https(url)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    endpoint = f"https://{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True) or b""
    except OSError as e:
        raise _connect_error(endpoint, e) from None
    return ssl.DER_cert_to_PEM_cert(der)
