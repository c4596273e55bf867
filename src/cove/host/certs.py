"""TLS certificates on disk: make a self-signed pair, check one (``cryptography``).

Design note: coved makes its server certificate with this at first start
(``ROOT/server.crt`` and ``server.key``); tests and tools make client
certificates the same way. Keys are EC P-384, as LXD's; the key file is
written 0600 before any secret goes into it. ``cryptography`` is imported
here only, on use.
"""

from __future__ import annotations

import datetime
import os
import socket
from pathlib import Path

from cove.model.errors import BadRequest

__all__ = ["check_certificate", "generate_certificate"]


def generate_certificate(crt: Path, key: Path, *, common_name: str | None = None,
                         server: bool = True, days: int = 3650) -> str:
    """Write a new self-signed certificate and its key; return the PEM.

    A server certificate names this host, ``localhost``, 127.0.0.1 and ::1,
    with the host name first (``lxc`` checks a pinned certificate against
    its first DNS name), and may sign (CA), as LXD's do.
    """
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    host = socket.gethostname() or "localhost"
    cn = common_name or f"root@{host}"
    private = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cove"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(private.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.ExtendedKeyUsage(
                   [ExtendedKeyUsageOID.SERVER_AUTH if server
                    else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.BasicConstraints(ca=server, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, key_encipherment=False, content_commitment=False,
                   data_encipherment=False, key_agreement=False, key_cert_sign=server,
                   crl_sign=False, encipher_only=False, decipher_only=False), critical=True))
    if server:
        names: list[x509.GeneralName] = [x509.DNSName(host)]
        if host != "localhost":
            names.append(x509.DNSName("localhost"))
        names += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                  x509.IPAddress(ipaddress.ip_address("::1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(private, hashes.SHA384())
    crt.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(private.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    crt.write_bytes(pem)
    return pem.decode()


def check_certificate(der: bytes) -> str:
    """Parse a DER certificate; return its subject (for messages).

    Raises:
        BadRequest: not a certificate ``cryptography`` can read.
    """
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as e:
        raise BadRequest(f"Not a valid X.509 certificate: {e}") from None
    return cert.subject.rfc4514_string()
