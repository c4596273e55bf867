"""A container's console, through its conmon monitor.

Design note: a container whose spec has ``process.terminal`` is created
under ``conmon -t -i --leave-stdin-open``. runc makes a pty in the
container, binds its slave on ``/dev/console`` and as the init's stdio, and
hands the master to conmon over the console socket. conmon then owns the
console: it copies output to the k8s-file log (the console log) and to every
client of its attach socket, and what a client writes to that socket to the
console's input. ``--leave-stdin-open`` keeps the input open when a client
goes, so the next one can type too. The console's size and the log's
reopening are commands on conmon's ``ctl`` fifo in the bundle (``1 H W``,
``2 0 0``), the same protocol podman speaks.

The attach socket is a SOCK_SEQPACKET socket at
``<socket dir>/<container id>/attach``; each packet conmon sends is one
byte of stream type (2 stdout, 3 stderr: a pty has only stdout) and the
data; packets a client sends are raw input.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from cove.model.errors import BadRequest

__all__ = ["ConsoleAttachment", "attach", "reopen_log"]

_STDOUT, _STDERR = 2, 3
_PACKET = 8192 + 1  # conmon's STDIO_BUF_SIZE and the type byte


def _ctl(ctl_path: Path, line: str) -> None:
    """One command to conmon. O_NONBLOCK: conmon holds the fifo open for
    reading while it runs, and if it is gone the open fails at once (ENXIO)
    rather than hanging."""
    fd = os.open(ctl_path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class ConsoleAttachment:
    """One client's connection to a console. Not thread-safe: one reader,
    one writer, as the server's pumps use it."""

    def __init__(self, sock: socket.socket, ctl_path: Path) -> None:
        self._sock = sock
        self._ctl_path = ctl_path

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self) -> bytes | None:
        """The next output (b"" at the end: the container stopped); None
        when a non-blocking socket has nothing yet. Raises BlockingIOError
        never: the caller polls ``fileno()``."""
        while True:
            try:
                packet = self._sock.recv(_PACKET)
            except BlockingIOError:
                return None
            except OSError:
                return b""
            if not packet:
                return b""
            if packet[0] in (_STDOUT, _STDERR) and len(packet) > 1:
                return packet[1:]

    def write(self, data: bytes) -> None:
        """Input to the console, in packets conmon reads whole.

        Raises:
            OSError: the console is gone (the container stopped).
        """
        view = memoryview(data)
        while view:
            n = self._sock.send(view[:_PACKET - 1])
            view = view[n:]

    def resize(self, width: int, height: int) -> None:
        """Set the console's window size (the shell on it gets SIGWINCH)."""
        with contextlib.suppress(OSError):  # gone with its container: nothing to size
            _ctl(self._ctl_path, f"1 {max(height, 1)} {max(width, 1)}\n")

    def close(self) -> None:
        """Let go of the console; it and what runs on it go on. Idempotent."""
        self._sock.close()


def attach(socket_path: Path, ctl_path: Path) -> ConsoleAttachment:
    """Connect to a running container's console (non-blocking socket).

    Raises:
        BadRequest: the container has no console to attach to (it was
            started without one, or its monitor is gone).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        sock.connect(str(socket_path))
    except OSError as e:
        sock.close()
        raise BadRequest(f"The instance has no console to attach to ({e.strerror})") from None
    sock.setblocking(False)
    return ConsoleAttachment(sock, ctl_path)


def reopen_log(ctl_path: Path) -> bool:
    """Ask conmon to start its log afresh (it writes a new, empty file in
    place of the old). False when no conmon listens (nothing runs)."""
    try:
        _ctl(ctl_path, "2 0 0\n")
    except OSError:
        return False
    return True
