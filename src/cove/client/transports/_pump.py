"""Copy a command's stdin in and its output out over plain fds, in one thread.

Used by the transports whose commands hand back file descriptors: this host
(``subprocess`` pipes) and cove's engine in-process (the exec session's
fds). A ``selectors`` loop writes stdin as the command takes it and reads
both outputs as they come, so neither side can fill a pipe and stall.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import time
from collections.abc import Callable
from typing import BinaryIO

__all__ = ["pump"]

_BLOCK = 65536


def _chunks(stdin: bytes | BinaryIO | None) -> Callable[[], bytes]:
    if stdin is None:
        return lambda: b""
    if isinstance(stdin, (bytes, bytearray, memoryview)):
        pending = [bytes(stdin)]
        return lambda: pending.pop() if pending else b""
    return lambda: stdin.read(_BLOCK) or b""


def pump(stdin_fd: int | None, outputs: dict[int, Callable[[bytes], None]],
         stdin: bytes | BinaryIO | None, *, exited: Callable[[], bool],
         timeout: float | None, on_timeout: Callable[[], None],
         drain_grace: float = 2.0) -> bool:
    """Run the copy until every output fd reached EOF; return True if
    ``on_timeout`` had to be called (the command ran past ``timeout``).

    Once ``stdin`` is exhausted the command gets EOF: ``stdin_fd`` is pointed
    at /dev/null (not closed: it belongs to the caller, who closes it, and a
    closed number could be reused meanwhile). Output fds are not closed.
    After the command has ``exited``, outputs still held open by its
    children get ``drain_grace`` seconds.
    """
    p = _Pump(stdin_fd, outputs, stdin)
    try:
        return p.run(exited=exited, timeout=timeout, on_timeout=on_timeout,
                     drain_grace=drain_grace)
    finally:
        p.close_stdin()
        p.sel.close()


class _Pump:
    """The state of one ``pump`` call."""

    def __init__(self, stdin_fd: int | None, outputs: dict[int, Callable[[bytes], None]],
                 stdin: bytes | BinaryIO | None) -> None:
        self.sel = selectors.DefaultSelector()
        self.stdin_fd = stdin_fd
        self.outputs = outputs
        self.next_chunk = _chunks(stdin)
        self.pending = b""
        self.stdin_open = stdin_fd is not None
        if stdin_fd is not None:
            os.set_blocking(stdin_fd, False)
            self.sel.register(stdin_fd, selectors.EVENT_WRITE)
        for fd in outputs:
            self.sel.register(fd, selectors.EVENT_READ)
        self.open_outs = set(outputs)

    def close_stdin(self) -> None:
        if self.stdin_open and self.stdin_fd is not None:
            self.sel.unregister(self.stdin_fd)
            null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
            try:
                with contextlib.suppress(OSError):
                    os.dup2(null, self.stdin_fd, inheritable=False)
            finally:
                os.close(null)
            self.stdin_open = False

    def done(self) -> bool:
        return not self.open_outs and not self.stdin_open

    def run(self, *, exited: Callable[[], bool], timeout: float | None,
            on_timeout: Callable[[], None], drain_grace: float) -> bool:
        deadline = time.monotonic() + timeout if timeout is not None else None
        timed_out = False
        exited_at: float | None = None
        while not self.done():
            now = time.monotonic()
            if deadline is not None and not timed_out and now >= deadline:
                timed_out = True
                on_timeout()
                self.close_stdin()
                deadline = None
                exited_at = now  # give the outputs the grace to end, no more
            if exited_at is None and exited():
                exited_at = now
            if exited_at is not None:
                self.close_stdin()
                if now - exited_at > drain_grace:
                    break
            if self.done():
                break
            wait = 0.1
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - now))
            for key, _ in self.sel.select(wait):
                fd = int(key.fd)
                if fd == self.stdin_fd:
                    self._feed(fd)
                else:
                    self._read(fd)
            if self.done():
                break
            if not self.open_outs and self.stdin_open and exited():
                self.close_stdin()
        return timed_out

    def _feed(self, fd: int) -> None:
        if not self.pending:
            self.pending = self.next_chunk()
            if not self.pending:
                self.close_stdin()
                return
        try:
            n = os.write(fd, self.pending)
        except BlockingIOError:
            return
        except OSError:  # the command closed its stdin
            self.pending = b""
            self.close_stdin()
            return
        self.pending = self.pending[n:]

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, _BLOCK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.outputs[fd](data)
        else:
            self.sel.unregister(fd)
            self.open_outs.discard(fd)
