"""Attaching to an instance's console over its websockets (LXD's
``console`` extension), as ``lxc console`` does: ``POST .../console``, then
``control`` and ``0``. Standard library only: ``cove console`` imports it.

Detaching is the client's: Ctrl+a then q (also when both arrive in one
read, which ``lxc`` misses) closes the control websocket, and the server
ends the operation. Ctrl+a twice sends one Ctrl+a to the console.
"""

from __future__ import annotations

import json
import os
import select
import threading

from cove.model.errors import CoveError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cove.client._ws import WebSocket

__all__ = ["DETACH_HINT", "ConsoleSession", "split_detach"]

DETACH_HINT = "To detach from the console, press: <ctrl>+a q"
_CTRL_A = 0x01


def split_detach(data: bytes, pending: bool) -> tuple[bytes, bool, bool]:
    """Input with the escape handled: (bytes for the console, whether a
    Ctrl+a is pending at the end, whether to detach). Pure."""
    out = bytearray()
    for b in data:
        if pending:
            pending = False
            if b == ord("q"):
                return bytes(out), False, True
            if b == _CTRL_A:
                out.append(_CTRL_A)
                continue
            out += bytes((_CTRL_A, b))
        elif b == _CTRL_A:
            pending = True
        else:
            out.append(b)
    return bytes(out), pending, False


class ConsoleSession:
    """A console with its websockets connected (``Client.console``);
    ``resize()`` may be called from a signal handler while ``run()`` copies."""

    def __init__(self, op: Any, sockets: dict[str, WebSocket]) -> None:
        """``op`` is the console's ``Operation`` (of ``cove.client``)."""
        self.operation = op
        self.sockets = sockets
        self._stop = threading.Event()

    def resize(self, width: int, height: int) -> None:
        """Tell the console the terminal's size (``window-resize``)."""
        msg = {"command": "window-resize", "args": {"width": str(width), "height": str(height)}}
        try:
            self.sockets["control"].send_text(json.dumps(msg))
        except (OSError, CoveError):
            pass  # gone: run() is ending

    def run(self, stdin: int, stdout: int) -> bool:
        """Copy ``stdin`` to the console and the console to ``stdout`` until
        the user detaches (True) or the console ends (False: the instance
        stopped, or the server ended the session)."""
        reader = threading.Thread(target=self._pump_out, args=(stdout,), daemon=True,
                                  name="console-out")
        reader.start()
        detached = self._pump_in(stdin)
        if detached:
            try:
                self.sockets["control"].close(reason="Detaching from console", timeout=1.0)
            except (OSError, CoveError):
                pass
        reader.join(5)
        self.close()
        return detached

    def _pump_in(self, fd: int) -> bool:
        pending = False
        ws = self.sockets["0"]
        while not self._stop.is_set():
            try:
                p = select.poll()  # not select.select: the fd may be above 1024
                p.register(fd, select.POLLIN)
                ready = p.poll(100)
            except (OSError, ValueError):
                return False
            if not ready:
                continue
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                continue
            except OSError:
                return False
            if not data:  # our input ended: detach, as leaving the terminal would
                return True
            send, pending, detach = split_detach(data, pending)
            try:
                if send:
                    ws.send_binary(send)
            except (OSError, CoveError):
                return False
            if detach:
                return True
        return False

    def _pump_out(self, fd: int) -> None:
        from cove.client._ws import OP_BINARY, OP_CLOSE

        try:
            while True:
                op, data = self.sockets["0"].recv()
                if op == OP_CLOSE:
                    break
                if op == OP_BINARY and data:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
        except (OSError, CoveError):
            pass
        self._stop.set()

    def close(self) -> None:
        """Close every websocket (safe to call more than once)."""
        self._stop.set()
        for ws in self.sockets.values():
            try:
                ws.close(timeout=0.2)
            except (OSError, CoveError):
                pass
