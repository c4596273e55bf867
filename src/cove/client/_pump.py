"""The byte pumps of an exec session's streams: stdin read in chunks that
stop when the session does, and an output websocket copied to a file, a
descriptor or a buffer (a broken local pipe is drained, not fatal).
Standard library only (the CLI's ``exec`` runs on these).
"""

from __future__ import annotations

import os
import select

from cove.model.errors import CoveError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterator
    from typing import Any

    from cove.client._ws import WebSocket

__all__ = ["pump_out", "read_chunks"]


def read_chunks(src: Any, stop: threading.Event) -> Iterator[bytes]:
    if src is None:
        return
    if isinstance(src, (bytes, bytearray, memoryview)):
        if src:
            yield bytes(src)
        return
    fd: int | None = src if isinstance(src, int) else None
    if fd is None:
        try:
            fd = src.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
    if fd is None:
        while not stop.is_set():
            data = src.read(65536)
            if not data:
                return
            yield data
        return
    while not stop.is_set():
        try:
            ready, _, _ = select.select([fd], [], [], 0.1)
        except (OSError, ValueError):
            return
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            continue
        except OSError:
            return
        if not data:
            return
        yield data


def pump_out(ws: WebSocket, dest: Any, buf: list[bytes] | None,
              broken: Callable[[], None]) -> None:
    """Copy one output stream until the server closes it.

    If writing locally fails (``cove exec ... | head``), the rest is read and
    dropped, so the command is never stuck on a full stream, and ``broken``
    is called once (it sends the command SIGPIPE, as a local pipe would).
    """
    from cove.client._ws import OP_BINARY, OP_CLOSE

    sink_ok = True
    try:
        while True:
            op, data = ws.recv()
            if op == OP_CLOSE:
                return
            if op != OP_BINARY:
                # LXD's end-of-stream barrier: no more data. Close our side
                # now (servers may wait for that before ending the operation)
                # and read on until the server's close arrives.
                ws.send_close()
                continue
            if not sink_ok:
                continue
            if buf is not None:
                buf.append(data)
                continue
            try:
                if isinstance(dest, int):
                    _write_fd(dest, data)
                else:
                    dest.write(data)
                    flush = getattr(dest, "flush", None)
                    if flush is not None:
                        flush()
            except (OSError, ValueError):
                sink_ok = False
                broken()
    except (OSError, CoveError):
        return


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]

