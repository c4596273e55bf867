"""cove's client: one Driver/Transport API for cove, LXD and Incus hosts.

A Driver is the front door to a host, for every resource of the API: its
containers (create, update, start, stop, delete, rename, status, state,
wait_for, transport_for), images and aliases, networks, operations,
trusted certificates, and (``EventDriver``: all but the CLI driver) its
event stream; reports are the ``cove.api`` classes. Transports reach one
container (execute, read_file, write_file, download/upload of files and
folders, user). Every driver behaves the same and every call is convergent;
failures are the ``cove.model.errors`` classes, ``ConnectionFailed`` when a
host cannot be reached. ``connect()`` builds the driver its arguments
describe:

* ``RestDriver(endpoint)``: the LXD REST API, a unix socket or ``https://``;
* ``CliDriver(transport, "lxc" | "cove")``: the command, run through any
  transport (``LocalTransport()`` for this host, or a container's: nesting);
* ``LocalDriver(root)``: cove's engine in this process, no coved;
* ``AsyncRestDriver`` (``cove.client.aio``): the REST driver for asyncio.

``Client`` is the low-level REST client underneath (raw requests, exec
sessions, log streams), which the ``cove`` command uses directly.

Import cost: the names of the first list below (``Client`` and what the
``cove`` command uses) load eagerly and need only the standard library; the
drivers, transports and ``connect`` load on first use, so ``import
cove.client`` stays cheap for the CLI.
"""

from __future__ import annotations

from cove.client._exec import CommandFailed, CommandNotFound, ExecResult
from cove.client._http import ConnectionFailed, Response, UnixTransport
from cove.client._rest import (
    Client,
    ExecSession,
    InstanceFile,
    Operation,
    default_socket_path,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cove.client._factory import connect
    from cove.client._tls import fetch_certificate
    from cove.client.aio import AsyncRestDriver, AsyncTransport
    from cove.client.drivers.base import Driver, EventDriver, EventStream, Progress
    from cove.client.drivers.cli import CliDriver
    from cove.client.drivers.local import LocalDriver
    from cove.client.drivers.rest import RestDriver
    from cove.client.transports.base import Transport
    from cove.client.transports.cli import CliTransport
    from cove.client.transports.local import EngineTransport, LocalTransport
    from cove.client.transports.rest import RestTransport

__all__ = [
    "AsyncRestDriver",
    "AsyncTransport",
    "CliDriver",
    "CliTransport",
    "Client",
    "CommandFailed",
    "CommandNotFound",
    "ConnectionFailed",
    "Driver",
    "EngineTransport",
    "EventDriver",
    "EventStream",
    "ExecResult",
    "ExecSession",
    "InstanceFile",
    "LocalDriver",
    "LocalTransport",
    "Operation",
    "Progress",
    "Response",
    "RestDriver",
    "RestTransport",
    "Transport",
    "UnixTransport",
    "connect",
    "default_socket_path",
    "fetch_certificate",
]

# name -> module, imported on first access (PEP 562).
_LAZY = {
    "AsyncRestDriver": "cove.client.aio",
    "AsyncTransport": "cove.client.aio",
    "CliDriver": "cove.client.drivers.cli",
    "CliTransport": "cove.client.transports.cli",
    "Driver": "cove.client.drivers.base",
    "EngineTransport": "cove.client.transports.local",
    "EventDriver": "cove.client.drivers.base",
    "EventStream": "cove.client.drivers.base",
    "LocalDriver": "cove.client.drivers.local",
    "LocalTransport": "cove.client.transports.local",
    "Progress": "cove.client.drivers.base",
    "RestDriver": "cove.client.drivers.rest",
    "RestTransport": "cove.client.transports.rest",
    "Transport": "cove.client.transports.base",
    "connect": "cove.client._factory",
    "fetch_certificate": "cove.client._tls",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cove.client' has no attribute {name!r}")
    # __import__, not importlib.import_module: importlib (and warnings) cost
    # the cove command ~0.5 ms for this one call
    value = getattr(__import__(module, fromlist=[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
