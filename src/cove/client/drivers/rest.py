"""``RestDriver``: a cove, LXD or Incus host over its REST API (unix socket or https)."""

from __future__ import annotations

from typing import Any

from cove.client._endpoint import http_transport
from cove.client._flow import drive
from cove.client._rest import Client, default_socket_path
from cove.client.drivers._rest_steps import perform
from cove.client.drivers.base import Driver, Step
from cove.client.transports.rest import RestTransport

__all__ = ["RestDriver"]


class RestDriver(Driver):
    """A host's LXD API at ``endpoint``: a unix socket path (default: cove's,
    ``$COVE_DIR/unix.socket``) or ``https://host[:port]``.

    ``verify``, ``client_cert`` and ``client_key`` apply to https (see
    ``cove.client._tls``); certificate files are checked here, so a bad one
    raises ``BadRequest`` at once. Nothing is sent until the first call.
    """

    def __init__(self, endpoint: str | None = None, *, verify: bool | str = True,
                 client_cert: str | None = None, client_key: str | None = None,
                 timeout: float | None = None) -> None:
        self.endpoint = endpoint or default_socket_path()
        self.client = Client(transport=http_transport(
            self.endpoint, verify=verify, client_cert=client_cert, client_key=client_key,
            timeout=timeout))

    def __repr__(self) -> str:
        return f"RestDriver({self.endpoint!r})"

    def _do(self, step: Step) -> Any:
        return drive(perform(step), self.client.send)

    def server_info(self) -> dict[str, Any]:
        """``GET /1.0``: ``auth`` ("trusted"/"untrusted"), api extensions, environment."""
        return self.client.server()

    def transport_for(self, name: str) -> RestTransport:
        from cove.model.names import validate_instance_name

        return RestTransport(self.client, validate_instance_name(name))

    def close(self) -> None:
        self.client.close()
