"""coved over HTTPS: the TLS context, who is asking, and the listener that follows
``core.https_address``.

Design notes:

* LXD's trust model needs the server to *accept any* client certificate in
  the handshake and decide afterwards, by fingerprint, whether it is
  trusted: an untrusted client must still get the public part of ``/1.0``
  (and a 403 elsewhere), not a failed handshake. OpenSSL does that with a
  verify callback that says yes; Python's ``ssl`` has no way to set one, so
  ``accept_any_client_cert`` sets it with ctypes on the context's
  ``SSL_CTX``. The pointer is checked first (the verify mode read back
  through it must be the one Python set, for two different modes), and
  coved refuses to listen on HTTPS rather than guess if it is not.
* A request's trust is decided once, by the ``auth`` middleware
  (``routes_trust``): unix socket: trusted (the socket is root-only);
  HTTPS: trusted iff the engine's trust store has the client certificate's
  fingerprint.
* The listener is started, moved and stopped live when the config changes,
  as LXD does; a failed bind leaves the old one and refuses the change.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import logging
import ssl
from pathlib import Path
from typing import Any

from aiohttp import web

from cove.model.errors import BadRequest, InternalError
from cove.model.trust import parse_address

__all__ = ["HttpsListener", "accept_any_client_cert", "peer_fingerprint", "server_context"]

log = logging.getLogger("cove.server")

_VERIFY_PEER = 0x01
_VERIFY_FAIL_IF_NO_PEER_CERT = 0x02
_VerifyCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


def _accept(preverify_ok: int, store: int | None) -> int:
    return 1  # any certificate: trust is decided by fingerprint, per request


_ACCEPT = _VerifyCallback(_accept)  # kept alive for the life of the process


def _libssl() -> ctypes.CDLL:
    import _ssl  # the module that links OpenSSL for Python: use that very libssl

    for name in (_ssl.__file__, ctypes.util.find_library("ssl"), "libssl.so.3"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            lib.SSL_CTX_set_verify  # noqa: B018 - raises AttributeError if not exported
            return lib
        except (OSError, AttributeError):
            continue
    raise InternalError("libssl not found: cannot accept client certificates over HTTPS")


def accept_any_client_cert(ctx: ssl.SSLContext) -> None:
    """Make ``ctx`` ask every client for a certificate and accept whatever it sends.

    Raises:
        InternalError: the context's ``SSL_CTX`` could not be found safely.
    """
    lib = _libssl()
    lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
    lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_set_verify.restype = None
    lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VerifyCallback]
    # PySSLContext: PyObject_HEAD, then the SSL_CTX pointer.
    ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not ptr:
        raise InternalError("no SSL_CTX in this ssl.SSLContext")
    ctx.verify_mode = ssl.CERT_REQUIRED
    ok = lib.SSL_CTX_get_verify_mode(ptr) == _VERIFY_PEER | _VERIFY_FAIL_IF_NO_PEER_CERT
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ok = ok and lib.SSL_CTX_get_verify_mode(ptr) == _VERIFY_PEER
    if not ok:
        raise InternalError("this Python's ssl.SSLContext layout is not the one expected; "
                            "refusing to patch it")
    lib.SSL_CTX_set_verify(ptr, _VERIFY_PEER, _ACCEPT)


def server_context(crt: Path, key: Path) -> ssl.SSLContext:
    """TLS 1.2+ with the server certificate, asking clients for theirs."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(crt), str(key))
    accept_any_client_cert(ctx)
    return ctx


def peer_fingerprint(request: web.Request) -> str | None:
    """The SHA-256 fingerprint of the client's TLS certificate; None over the
    unix socket or when the client sent none."""
    transport = request.transport
    if transport is None:
        return None
    obj = transport.get_extra_info("ssl_object")
    if obj is None:
        return None
    der = obj.getpeercert(binary_form=True)
    return hashlib.sha256(der).hexdigest() if der else None


def is_tls(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


class HttpsListener:
    """The HTTPS site of a running coved, following ``core.https_address``
    (or, with ``key="core.metrics_address"``, the metrics-only site).

    ``runner`` is set by ``serve()`` once the app runs; before that (an app
    in a test), changes are only remembered. The certificate and key are
    the engine's (``server_cert_paths``), made on first use.
    """

    def __init__(self, engine: Any, key: str = "core.https_address") -> None:
        self.engine = engine
        self.key = key
        self.runner: web.AppRunner | None = None
        self.site: web.TCPSite | None = None
        self.address = ""
        self._ctx: ssl.SSLContext | None = None

    def context(self) -> ssl.SSLContext:
        if self._ctx is None:
            self.engine.trust.server_certificate()  # made at first use
            crt, key = self.engine.trust.server_cert_paths
            self._ctx = server_context(crt, key)
        return self._ctx

    @property
    def bound(self) -> list[str]:
        """The addresses really listened on (``host:port``)."""
        if self.site is None or self.site._server is None:
            return []
        socks: Any = getattr(self.site._server, "sockets", None) or []
        out = []
        for s in socks:
            host, port = s.getsockname()[:2]
            out.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        return out

    async def apply(self, address: str) -> None:
        """Listen on ``address`` (``""``: stop listening).

        Raises:
            BadRequest: the address is bad or cannot be bound (nothing changes).
        """
        parsed = parse_address(address, self.key)
        if address == self.address and (self.site is not None or not parsed):
            return
        if self.runner is None:
            self.address = address
            return
        new: web.TCPSite | None = None
        if parsed is not None:
            host, port = parsed
            new = web.TCPSite(self.runner, host, port, ssl_context=self.context(),
                              reuse_address=True)
            old_same = self.site is not None and parse_address(self.address, self.key) == parsed
            if old_same:  # same socket address: close the old one first
                await self._stop()
            try:
                await new.start()
            except OSError as e:
                raise BadRequest(f"Cannot listen on {address}: {e.strerror or e}") from None
        await self._stop()
        self.site = new
        self.address = address
        if new is not None:
            log.info("listening on https://%s (%s)", ", ".join(self.bound), self.key)

    async def _stop(self) -> None:
        if self.site is not None:
            site, self.site = self.site, None
            await site.stop()
            log.info("stopped listening on HTTPS (%s)", self.key)
