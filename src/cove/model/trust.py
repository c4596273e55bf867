"""Remote access, as plain data: trusted certificates, the server's config keys,
and the ``core.https_address`` syntax (pure; standard library only).

LXD's trust model: a client over HTTPS is trusted when the SHA-256
fingerprint of its TLS certificate is in the trust store; everyone on the
unix socket is trusted (the socket is root-only).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from dataclasses import dataclass, field

from cove.model.config import parse_size
from cove.model.errors import BadRequest

__all__ = [
    "DEFAULT_HTTPS_PORT",
    "DEFAULT_METRICS_PORT",
    "MAX_UNPACK_KEY",
    "SERVER_CONFIG_KEYS",
    "Certificate",
    "cert_der",
    "der_to_pem",
    "fingerprint",
    "metrics_authentication",
    "parse_address",
    "parse_https_address",
    "validate_server_config",
]

DEFAULT_HTTPS_PORT = 8443
DEFAULT_METRICS_PORT = 9100  # LXD's shared.HTTPSMetricsDefaultPort
CERT_TYPES = ("client", "metrics")

#: The server config keys cove knows (LXD's names, and cove's own).
SERVER_CONFIG_KEYS = ("core.https_address", "core.metrics_address",
                      "core.metrics_authentication", "cove.images.max_size",
                      "images.auto_update_cached", "images.auto_update_interval",
                      "images.remote_cache_expiry")
#: LXD's image-cache keys that take a number (days, hours): LXD's integers,
#: and cove takes a decimal too (a test's expiry in seconds).
_NUMBER_KEYS = ("images.auto_update_interval", "images.remote_cache_expiry")
#: The most one archive (image, backup, layer) may unpack to; unset, 90% of
#: the free space of the root's filesystem when the unpacking starts.
MAX_UNPACK_KEY = "cove.images.max_size"
_BOOLS = {"true": True, "1": True, "yes": True, "on": True,
          "false": False, "0": False, "no": False, "off": False}
#: The listen-address keys and the port each takes when none is given.
ADDRESS_PORTS = {"core.https_address": DEFAULT_HTTPS_PORT,
                 "core.metrics_address": DEFAULT_METRICS_PORT}

_PEM = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)


@dataclass
class Certificate:
    """One trusted certificate. ``certificate`` is PEM."""

    fingerprint: str
    certificate: str
    name: str = ""
    type: str = "client"
    restricted: bool = False
    projects: list[str] = field(default_factory=list)
    created_at: float = 0.0


def cert_der(text: str | bytes) -> bytes:
    """The DER bytes of a certificate given as PEM, or as LXD's API sends it
    (base64 DER, a PEM without its armour).

    Raises:
        BadRequest: neither.
    """
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    m = _PEM.search(text)
    body = m.group(1) if m else text
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("The certificate is neither PEM nor base64 DER") from None
    if len(der) < 64 or der[0] != 0x30:
        raise BadRequest("The certificate is not an X.509 certificate (DER)")
    return der


def der_to_pem(der: bytes) -> str:
    b64 = base64.b64encode(der).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def fingerprint(der: bytes) -> str:
    """LXD's fingerprint: SHA-256 of the DER, lower-case hex."""
    return hashlib.sha256(der).hexdigest()


def parse_https_address(value: str) -> tuple[str | None, int] | None:
    """``core.https_address`` → (host or None for every address, port); None
    when empty (HTTPS off). Accepted: ``:8443``, ``0.0.0.0:8443``,
    ``127.0.0.1``, ``[::1]:8443``, ``[::]``, ``host.example:8443``.

    Raises:
        BadRequest: a bad host or port.
    """
    return parse_address(value)


def parse_address(value: str, key: str = "core.https_address") -> tuple[str | None, int] | None:
    """A listen address of config ``key`` (``core.https_address`` or
    ``core.metrics_address``, whose default ports differ) → (host or None for
    every address, port); None when empty (not listening). The forms of
    ``parse_https_address``.

    Raises:
        BadRequest: a bad host or port (the message names ``key``).
    """
    value = value.strip()
    if not value:
        return None
    host: str
    port_s = ""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise BadRequest(f"Invalid {key} {value!r}: unclosed '['")
        host, rest = value[1:end], value[end + 1:]
        if rest and not rest.startswith(":"):
            raise BadRequest(f"Invalid {key} {value!r}")
        port_s = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise BadRequest(f"Invalid {key} {value!r}: not an IPv6 "
                             "address in brackets") from None
    elif value.count(":") > 1:
        host = value  # a bare IPv6 address, default port
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise BadRequest(f"Invalid {key} {value!r}") from None
    else:
        host, _, port_s = value.partition(":")
    if port_s and (not port_s.isdigit() or not 0 < int(port_s) < 65536):
        raise BadRequest(f"Invalid {key} {value!r}: bad port {port_s!r}")
    port = int(port_s) if port_s else ADDRESS_PORTS.get(key, DEFAULT_HTTPS_PORT)
    if host and not value.startswith("[") and value.count(":") <= 1:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", host):
                raise BadRequest(f"Invalid {key} {value!r}: bad host "
                                 f"{host!r}") from None
    return (host or None), port


def metrics_authentication(config: dict[str, str]) -> bool:
    """Whether ``/1.0/metrics`` needs a trusted certificate (LXD's
    ``core.metrics_authentication``, true unless set false)."""
    return _BOOLS.get(config.get("core.metrics_authentication", "true").lower(), True)


def _check_number(key: str, value: str) -> None:
    """Raises: BadRequest (not a non-negative number)."""
    try:
        ok = float(value) >= 0 and value.strip().lower() not in ("inf", "nan", "infinity")
    except ValueError:
        ok = False
    if not ok:
        raise BadRequest(f"Invalid value for {key}: {value!r} is not a non-negative number")


def validate_server_config(config: object) -> dict[str, str]:
    """Check the server's config; return it with string values.

    Raises:
        BadRequest: an unknown key or a bad value.
    """
    if not isinstance(config, dict):
        raise BadRequest("The server config must be an object of keys and values")
    out: dict[str, str] = {}
    for key, raw in config.items():
        if not isinstance(key, str) or key not in SERVER_CONFIG_KEYS:
            raise BadRequest(f"Unknown server configuration key: {key} "
                             f"(cove knows {', '.join(SERVER_CONFIG_KEYS)})")
        if not isinstance(raw, (str, int)) or isinstance(raw, bool):
            raise BadRequest(f"Invalid value for {key}: must be a string")
        value = str(raw)
        if key in ADDRESS_PORTS:
            parse_address(value, key)
        elif key == "core.metrics_authentication" and value.lower() not in _BOOLS and value:
            raise BadRequest(f"Invalid value for {key}: {value!r} is not a boolean")
        elif key == MAX_UNPACK_KEY and value:
            parse_size(value, key)
        elif key == "images.auto_update_cached" and value.lower() not in _BOOLS and value:
            raise BadRequest(f"Invalid value for {key}: {value!r} is not a boolean")
        elif key in _NUMBER_KEYS and value:
            _check_number(key, value)
        if value != "":
            out[key] = value
    return out
