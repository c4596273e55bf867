"""``connect()``: the one place a driver is chosen and built."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from cove.model.errors import BadRequest

if TYPE_CHECKING:
    from cove.client.drivers.base import Driver
    from cove.client.transports.base import Transport

__all__ = ["connect"]


def connect(endpoint: str | None = None, *, transport: Transport | None = None,
            command: str | Sequence[str] | None = None, root: str | os.PathLike[str] | None = None,
            remote: str | None = None, env: Mapping[str, str] | None = None,
            verify: bool | str = True, client_cert: str | None = None,
            client_key: str | None = None, timeout: float | None = None,
            project: str | None = None) -> Driver:
    """Build the driver the arguments describe.

    ====================================================  ==============================
    ``connect()``                                         ``RestDriver`` on cove's socket
    ``connect("/var/lib/lxd/unix.socket")``               ``RestDriver`` on that socket
    ``connect("https://h:8443", verify=..., client_cert=..., client_key=...)``
                                                          ``RestDriver`` over TLS
    ``connect(command="lxc")`` (or ``"cove"``)            ``CliDriver(LocalTransport())``
    ``connect(transport=t, command="cove")``              ``CliDriver(t, "cove")``: nesting
    ``connect(root="/var/lib/cove")``                     ``LocalDriver`` (no coved)
    ====================================================  ==============================

    ``project`` puts every driver's calls in that LXD project (``?project=``,
    ``--project``, or the engine's ``project=``).

    Raises:
        BadRequest: arguments that belong to different drivers, or bad ones.
    """
    cli = transport is not None or command is not None or remote is not None
    tls = verify is not True or client_cert is not None or client_key is not None
    if root is not None:
        if endpoint is not None or cli or tls:
            raise BadRequest("root= makes a LocalDriver: give no endpoint, transport, "
                             "command, remote or TLS options with it")
        from cove.client.drivers.local import LocalDriver

        return LocalDriver(root, project=project)
    if cli:
        if endpoint is not None or tls:
            raise BadRequest("transport=/command= make a CliDriver: the endpoint and TLS "
                             "options belong to the command's own configuration (remote=)")
        from cove.client.drivers.cli import CliDriver
        from cove.client.transports.local import LocalTransport

        return CliDriver(transport if transport is not None else LocalTransport(),
                         command if command is not None else "lxc", remote=remote, env=env,
                         timeout=timeout if timeout is not None else 600, project=project)
    if env is not None:
        raise BadRequest("env= applies to a CliDriver's commands (give command= too)")
    from cove.client.drivers.rest import RestDriver

    return RestDriver(endpoint, verify=verify, client_cert=client_cert, client_key=client_key,
                      timeout=timeout, project=project)
