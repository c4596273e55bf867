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
    closed number could be reused meanwhile). Output fds are not closed. After the command has ``exited``,
    outputs still held open by its children get ``drain_grace`` seconds.
    """
    sel = selectors.DefaultSelector()
    next_chunk = _chunks(stdin)
    pending = b""
    stdin_open = stdin_fd is not None
    if stdin_fd is not None:
        os.set_blocking(stdin_fd, False)
        sel.register(stdin_fd, selectors.EVENT_WRITE)
    for fd in outputs:
        sel.register(fd, selectors.EVENT_READ)
    open_outs = set(outputs)
    deadline = time.monotonic() + timeout if timeout is not None else None
    timed_out = False
    exited_at: float | None = None

    def close_stdin() -> None:
        nonlocal stdin_open
        if stdin_open and stdin_fd is not None:
            sel.unregister(stdin_fd)
            null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
            try:
                with contextlib.suppress(OSError):
                    os.dup2(null, stdin_fd, inheritable=False)
            finally:
                os.close(null)
            stdin_open = False

    try:
        while open_outs or stdin_open:
            now = time.monotonic()
            if deadline is not None and not timed_out and now >= deadline:
                timed_out = True
                on_timeout()
                close_stdin()
                deadline = None
                exited_at = now  # give the outputs the grace to end, no more
            if exited_at is None and exited():
                exited_at = now
            if exited_at is not None:
                close_stdin()
                if now - exited_at > drain_grace:
                    break
            if not open_outs and not stdin_open:
                break
            wait = 0.1
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - now))
            for key, _ in sel.select(wait):
                fd = int(key.fd)
                if fd == stdin_fd:
                    if not pending:
                        pending = next_chunk()
                        if not pending:
                            close_stdin()
                            continue
                    try:
                        n = os.write(fd, pending)
                    except BlockingIOError:
                        continue
                    except OSError:  # the command closed its stdin
                        pending = b""
                        close_stdin()
                        continue
                    pending = pending[n:]
                    continue
                try:
                    data = os.read(fd, _BLOCK)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    outputs[fd](data)
                else:
                    sel.unregister(fd)
                    open_outs.discard(fd)
            if not open_outs and not stdin_open:
                break
            if not open_outs and stdin_open and exited():
                close_stdin()
    finally:
        close_stdin()
        sel.close()
    return timed_out
