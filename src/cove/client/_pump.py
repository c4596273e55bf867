"""The byte pumps of an exec session's streams: an output websocket's
messages written to a file, a descriptor or a buffer (a broken local pipe
is drained, not fatal), and stdin read in chunks from a file object that
has no descriptor. Standard library only (the CLI's ``exec`` runs on these).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from cove.client._ws import WebSocket

__all__ = ["Sink", "read_chunks"]


def read_chunks(src: Any, stopped: Callable[[], bool]) -> Iterator[bytes]:
    """``src.read()`` in chunks until its end or ``stopped()``."""
    if src is None:
        return
    while not stopped():
        data = src.read(65536)
        if not data:
            return
        yield data


class Sink:
    """Where one output websocket's data goes: ``dest`` (an fd or a binary
    file object), or a buffer when ``dest`` is None (``captured()``).

    If writing locally fails (``cove exec ... | head``), the rest is dropped,
    so the command is never stuck on a full stream, and ``broken`` is called
    once (it sends the command SIGPIPE, as a local pipe would).
    """

    __slots__ = ("_broken", "_buf", "_dest", "_ok", "ws")

    def __init__(self, ws: WebSocket, dest: Any, broken: Callable[[], None]) -> None:
        self.ws = ws
        self._dest = dest
        self._buf: list[bytes] | None = [] if dest is None else None
        self._broken = broken
        self._ok = True

    def write(self, data: bytes) -> None:
        if not self._ok:
            return
        if self._buf is not None:
            self._buf.append(data)
            return
        try:
            if isinstance(self._dest, int):
                _write_fd(self._dest, data)
            else:
                self._dest.write(data)
                flush = getattr(self._dest, "flush", None)
                if flush is not None:
                    flush()
        except (OSError, ValueError):
            self._ok = False
            self._broken()

    def captured(self) -> bytes:
        return b"".join(self._buf) if self._buf is not None else b""


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
