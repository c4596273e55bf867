"""Turn an endpoint string into an HTTP transport (one place for both REST drivers).

``/path/to/unix.socket`` or ``unix:///path`` is a unix socket (cove's is
``$COVE_DIR/unix.socket``, LXD's ``/var/lib/lxd/unix.socket``);
``https://host[:port]`` is a remote API with TLS (port 8443 by default).
Nothing else is accepted. ``ssl`` is imported only for https.
"""

from __future__ import annotations

from cove.client._http import HttpTransport, UnixTransport
from cove.model.errors import BadRequest

__all__ = ["http_transport", "is_https", "unix_path"]


def is_https(endpoint: str) -> bool:
    return endpoint.startswith("https://")


def unix_path(endpoint: str) -> str:
    """The socket path of a unix endpoint.

    Raises:
        BadRequest: neither an absolute path nor ``unix://`` + one.
    """
    path = endpoint.removeprefix("unix://")
    if not path.startswith("/"):
        raise BadRequest(f"Bad endpoint {endpoint!r}: give a unix socket path "
                         "(/var/lib/lxd/unix.socket) or https://HOST[:PORT]")
    return path


def http_transport(endpoint: str, *, verify: bool | str = True, client_cert: str | None = None,
                   client_key: str | None = None, timeout: float | None = None) -> HttpTransport:
    """The transport for ``endpoint`` (see the module notes).

    Raises:
        BadRequest: a malformed endpoint, or unusable certificate files.
    """
    if not isinstance(endpoint, str) or not endpoint:
        raise BadRequest("The endpoint must be a non-empty string")
    if is_https(endpoint):
        from cove.client._tls import TlsTransport, default_client_cert

        if client_cert is None and client_key is None:
            client_cert, client_key = default_client_cert()
        return TlsTransport(endpoint, verify=verify, client_cert=client_cert,
                            client_key=client_key, timeout=timeout)
    if endpoint.startswith(("http://", "ws://", "wss://")):
        raise BadRequest(f"Bad endpoint {endpoint!r}: the LXD API is served over https:// "
                         "or a unix socket")
    return UnixTransport(unix_path(endpoint), timeout, name="the server")
