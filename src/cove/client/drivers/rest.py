"""``RestDriver``: a cove, LXD or Incus host over its REST API (unix socket or https)."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cove import api
from cove.client import _wire as wire
from cove.client._endpoint import http_transport
from cove.client._flow import drive
from cove.client._http import with_project
from cove.client._rest import Client, default_socket_path
from cove.client.drivers._export_stream import export_sync
from cove.client.drivers._resources import check_event_types
from cove.client.drivers._rest_steps import perform
from cove.client.drivers._steps_publish import ExportImage
from cove.client.drivers.base import EventDriver, EventStream, Step
from cove.client.transports.rest import RestTransport
from cove.model.errors import Timeout

if TYPE_CHECKING:
    from cove.client._ws import WebSocket

__all__ = ["RestDriver", "RestEventStream"]


class RestDriver(EventDriver):
    """A host's LXD API at ``endpoint``: a unix socket path (default: cove's,
    ``$COVE_DIR/unix.socket``) or ``https://host[:port]``.

    ``verify``, ``client_cert`` and ``client_key`` apply to https (see
    ``cove.client._tls``); certificate files are checked here, so a bad one
    raises ``BadRequest`` at once. Nothing is sent until the first call.
    """

    def __init__(self, endpoint: str | None = None, *, verify: bool | str = True,
                 client_cert: str | None = None, client_key: str | None = None,
                 timeout: float | None = None, project: str | None = None) -> None:
        self.endpoint = endpoint or default_socket_path()
        self.client = Client(transport=http_transport(
            self.endpoint, verify=verify, client_cert=client_cert, client_key=client_key,
            timeout=timeout), project=project)

    def __repr__(self) -> str:
        return f"RestDriver({self.endpoint!r})"

    def _do(self, step: Step) -> Any:
        if isinstance(step, ExportImage):  # streamed, not a whole answer
            return export_sync(self.client, step)
        return drive(perform(step), self.client.send)

    def server_info(self) -> dict[str, Any]:
        """``GET /1.0``: ``auth`` ("trusted"/"untrusted"), api extensions, environment."""
        return self.client.server()

    def events(self, types: Sequence[str] = ("lifecycle", "operation")) -> RestEventStream:
        return RestEventStream(self.client, check_event_types(types))

    def transport_for(self, name: str) -> RestTransport:
        from cove.model.names import validate_instance_name

        return RestTransport(self.client, validate_instance_name(name))

    def close(self) -> None:
        self.client.close()


class RestEventStream(EventStream):
    """``/1.0/events`` as a websocket, read by a thread of its own into a
    queue, so ``get`` can wait with a timeout whatever the socket is (unix
    or TLS) and closing never races a half-read frame."""

    def __init__(self, client: Client, types: tuple[str, ...]) -> None:
        from cove.client._ws import WebSocket

        sock = client.transport.open_socket()
        path = with_project(wire.events_path(types), client.transport.project)
        self._ws: WebSocket = WebSocket.connect(sock, path)
        self._queue: queue.Queue[api.Event | None] = queue.Queue()
        self._ended = False
        self._reader = threading.Thread(target=self._read, daemon=True, name="cove-events")
        self._reader.start()

    def _read(self) -> None:
        from cove.client._ws import OP_TEXT

        try:
            while True:
                op, payload = self._ws.recv()
                if op != OP_TEXT:
                    if self._ws.closed:
                        return
                    continue
                try:
                    data = json.loads(payload)
                except ValueError:
                    continue  # not an event; LXD sends nothing else
                if isinstance(data, dict):
                    self._queue.put(api.Event.from_wire(data))
        except Exception:  # noqa: BLE001 - a broken stream ends like a closed one
            return
        finally:
            self._queue.put(None)

    def get(self, timeout: float | None = None) -> api.Event | None:
        if self._ended:
            return None
        try:
            event = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise Timeout(f"No event within {timeout:g}s") from None
        if event is None:
            self._ended = True
        return event

    def close(self) -> None:
        self._ended = True
        self._ws.abort()
        self._reader.join(5)
