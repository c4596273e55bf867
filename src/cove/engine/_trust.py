"""Remote access: the server's certificate and config, and the trust store.

Design note: the engine owns the root, so it owns the files that say who
may come in over HTTPS: ``server.crt``/``server.key`` (made at first use),
the server config (``core.https_address``, in the store's meta table) and
the trusted client certificates (the store's certificates table). coved's
HTTPS listener and its auth check only ask; ``is_trusted`` is answered from
memory, refreshed on every change, because it is asked on every request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

from cove.engine.events import EventBus
from cove.model import trust
from cove.model.errors import BadRequest, NotFound
from cove.model.trust import Certificate
from cove.store import Store

__all__ = ["Trust"]

_META_CONFIG = "server.config"


class Trust:
    """The server's certificate and config, and the trusted client certificates.
    Thread-safe."""

    def __init__(self, root: Path, store: Store, events: EventBus,
                 clock: Callable[[], float]) -> None:
        self._root = root
        self._store = store
        self._events = events
        self._now = clock
        self._lock = threading.Lock()
        self._trusted: dict[str, str] | None = None  # fingerprint -> type

    # -- the server's own certificate ----------------------------------------------------
    @property
    def server_cert_paths(self) -> tuple[Path, Path]:
        """Where the server certificate and its key are (made by ``server_certificate``)."""
        return self._root / "server.crt", self._root / "server.key"

    def server_certificate(self) -> str:
        """The server certificate (PEM), made on first use. Idempotent."""
        crt, key = self.server_cert_paths
        with self._lock:
            if not (crt.is_file() and key.is_file()):
                from cove.host.certs import generate_certificate

                return generate_certificate(crt, key, server=True)
        return crt.read_text()

    def server_fingerprint(self) -> str:
        """SHA-256 of the server certificate, hex."""
        return trust.fingerprint(trust.cert_der(self.server_certificate()))

    # -- server config ---------------------------------------------------------------------
    def server_config(self) -> dict[str, str]:
        """The saved server config (``core.https_address``...)."""
        raw = self._store.get_meta(_META_CONFIG)
        return dict(json.loads(raw)) if raw else {}

    def check_server_config(self, config: object, *, patch: bool) -> dict[str, str]:
        """The config a PUT (``patch`` False) or PATCH would leave, checked.
        An empty value removes a key. Nothing is saved.

        Raises:
            BadRequest: an unknown key or bad value.
        """
        if not isinstance(config, dict):
            raise BadRequest("The server config must be an object of keys and values")
        new = {**self.server_config(), **config} if patch else dict(config)
        return trust.validate_server_config(new)

    def save_server_config(self, config: dict[str, str]) -> None:
        """Store ``config`` whole. Idempotent.

        Raises:
            BadRequest: an unknown key or bad value (nothing is saved).
        """
        self._store.set_meta(_META_CONFIG, json.dumps(trust.validate_server_config(config),
                                                     sort_keys=True))

    # -- trust store --------------------------------------------------------------------------
    def list_certificates(self) -> list[Certificate]:
        """Every trusted certificate."""
        return self._store.list_certificates()

    def get_certificate(self, fingerprint: str) -> Certificate:
        """By fingerprint or a unique prefix of it.

        Raises:
            NotFound: none matches.  BadRequest: the prefix matches several.
        """
        fp = fingerprint.lower()
        if not fp or any(c not in "0123456789abcdef" for c in fp):
            raise NotFound(f"Certificate not found: {fingerprint}")
        found = [c for c in self._store.list_certificates() if c.fingerprint.startswith(fp)]
        if not found:
            raise NotFound(f"Certificate not found: {fingerprint}")
        if len(found) > 1:
            raise BadRequest(f"Certificate fingerprint {fingerprint!r} is ambiguous")
        return found[0]

    def add_certificate(self, certificate: str | bytes, *, name: str = "",
                        type: str = "client") -> Certificate:
        """Trust ``certificate`` (PEM or base64 DER).

        Raises:
            BadRequest: not a certificate, or a bad type.
            Conflict: it is trusted already.
        """
        if type not in trust.CERT_TYPES:
            raise BadRequest(f"Invalid certificate type {type!r}: one of "
                             f"{', '.join(trust.CERT_TYPES)}")
        der = trust.cert_der(certificate)
        from cove.host.certs import check_certificate

        subject = check_certificate(der)
        cert = Certificate(fingerprint=trust.fingerprint(der), certificate=trust.der_to_pem(der),
                           name=name or subject, type=type, created_at=self._now())
        self._store.add_certificate(cert)
        self._trusted = None
        self._events.lifecycle("certificate-created", f"/1.0/certificates/{cert.fingerprint}")
        return cert

    def delete_certificate(self, fingerprint: str) -> None:
        """Stop trusting a certificate (by fingerprint or unique prefix).

        Raises:
            NotFound: none matches.  BadRequest: the prefix matches several.
        """
        cert = self.get_certificate(fingerprint)
        self._store.delete_certificate(cert.fingerprint)
        self._trusted = None
        self._events.lifecycle("certificate-deleted", f"/1.0/certificates/{cert.fingerprint}")

    def is_trusted(self, fingerprint: str) -> bool:
        """Whether a client certificate (by fingerprint) is in the trust store
        as a ``client`` one: a ``metrics`` certificate may only scrape
        ``/1.0/metrics`` (``certificate_type``), as in LXD."""
        return self.certificate_type(fingerprint) == "client"

    def certificate_type(self, fingerprint: str) -> str | None:
        """The type (``client``, ``metrics``) of a trusted certificate; None
        for one that is not trusted."""
        known = self._trusted
        if known is None:
            known = {c.fingerprint: c.type for c in self._store.list_certificates()}
            self._trusted = known
        return known.get(fingerprint)

