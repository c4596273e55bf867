"""cove's client: drive a cove (or LXD) server over the LXD REST API 1.0.

Only the standard library is imported here, so the ``cove`` command can use
it on its hot paths. ``Client`` is the REST driver over the unix socket;
long actions return an ``Operation`` to ``wait()`` on; every failure is a
``cove.model.errors.CoveError`` subclass (``ConnectionFailed`` when the
daemon cannot be reached).
"""

from cove.client._http import ConnectionFailed, Response, UnixTransport
from cove.client._rest import (
    Client,
    ExecResult,
    ExecSession,
    InstanceFile,
    Operation,
    default_socket_path,
)

__all__ = [
    "Client",
    "ConnectionFailed",
    "ExecResult",
    "ExecSession",
    "InstanceFile",
    "Operation",
    "Response",
    "UnixTransport",
    "default_socket_path",
]
