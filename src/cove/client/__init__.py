"""cove's client: one Driver/Transport API for cove, LXD and Incus hosts.

Drivers talk to a host (create, update, start, stop, delete, status, state,
wait_for, transport_for), Transports to one container (execute, read_file,
write_file, download/upload of files and folders, user). Every driver
behaves the same and every call is convergent; failures are the
``cove.model.errors`` classes, ``ConnectionFailed`` when a host cannot be
reached. ``connect()`` builds the driver its arguments describe:

* ``RestDriver(endpoint)``: the LXD REST API, a unix socket or ``https://``;
* ``CliDriver(transport, "lxc" | "cove")``: the command, run through any
  transport (``LocalTransport()`` for this host, or a container's: nesting);
* ``LocalDriver(root)``: cove's engine in this process, no coved;
* ``AsyncRestDriver`` (``cove.client.aio``): the REST driver for asyncio.

Import cost: the names of the first list below (``Client`` and what the
``cove`` command uses) load eagerly and need only the standard library; the
drivers, transports and ``connect`` load on first use, so ``import
cove.client`` stays cheap for the CLI.
"""

from __future__ import annotations

import importlib

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
    from cove.client.drivers.base import Driver, Progress
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
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
