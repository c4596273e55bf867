"""An exec session's streams, copied by one poll loop on the caller's thread.

Design note: ``cove exec`` is a hot path and most of it is waiting, so the
session runs no threads (nor imports ``threading``): one ``select.poll``
loop reads the output websockets (``1`` and ``2``, or ``0`` with a pty),
copies stdin (an fd) into websocket ``0`` and waits for the operation's end
through ``GET /1.0/operations/ID/wait``, sent on the REST connection as the
loop starts (``HttpTransport.begin``) and read when it answers. Input is
queued as frames and sent with non-blocking sends only when the socket
takes them, so a command that does not read its stdin while it writes a lot
of output never deadlocks the loop. A ``stdin`` file object without a
descriptor is the one case read by a helper thread (a blocking ``read()``
cannot be polled). The wire is LXD's (see ``cove.client._rest``).
"""

from __future__ import annotations

from cove.client import _json  # json's loads/dumps without importing json (and re)
from cove.client._exec import ExecResult
from cove.model.errors import CoveError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cove.client._exec_loop import Operation
    from cove.client._http import HttpTransport
    from cove.client._ws import WebSocket

__all__ = ["ExecSession"]

_SIGPIPE = 13  # the same number on every Linux architecture


class ExecSession:
    """A started command with its websockets connected (see ``Client.exec_start``).

    ``resize()`` and ``signal()`` may be called from any thread (or a signal
    handler) while ``run()`` is copying data.
    """

    #: How long to wait for output streams to end after the command has.
    drain_timeout = 5.0

    def __init__(self, op: Operation, sockets: dict[str, WebSocket], interactive: bool,
                 transport: HttpTransport | None = None) -> None:
        self.operation = op
        self.sockets = sockets
        self.interactive = interactive
        self.transport = transport
        self.stopped = False  # closed: a stdin-feeding thread stops

    def resize(self, width: int, height: int) -> None:
        self._control({"command": "window-resize",
                       "args": {"width": str(width), "height": str(height)}})

    def signal(self, signum: int) -> None:
        self._control({"command": "signal", "signal": int(signum)})

    def _control(self, msg: dict[str, Any]) -> None:
        try:
            self.sockets["control"].send_text(_json.dumps(msg))
        except (OSError, CoveError):
            pass  # the command has ended; nothing to tell

    def run(self, stdin: Any = None, stdout: Any = None, stderr: Any = None) -> ExecResult:
        """Copy stdin in and output out until the command ends; close; return.

        ``stdin`` is None (no input), bytes, an fd or a binary file object;
        ``stdout``/``stderr`` an fd or a binary file object to stream to, or
        None to capture into the result.

        Raises:
            CoveError: the operation failed (the websockets are closed first).
        """
        from cove.client._exec_loop import Loop  # here: ``cove list`` needs none of it
        from cove.client._pump import Sink

        sinks = [Sink(self.sockets["0"] if self.interactive else self.sockets["1"], stdout,
                      self._broken_pipe)]
        if not self.interactive:
            sinks.append(Sink(self.sockets["2"], stderr, self._broken_pipe))
        try:
            op = Loop(self, sinks).run(stdin)
        finally:
            self.close()
        code = op.metadata.get("return", 0)
        return ExecResult(int(code if code is not None else 0), sinks[0].captured(),
                          sinks[1].captured() if len(sinks) > 1 else b"")

    def _broken_pipe(self) -> None:
        self.signal(_SIGPIPE)

    def close(self) -> None:
        """Close every websocket (safe to call more than once)."""
        self.stopped = True
        for ws in self.sockets.values():  # every close out first: one round trip for all
            ws.send_close()
        for ws in self.sockets.values():
            ws.close(timeout=0.2)
