"""The poll loop of ``ExecSession.run`` (see ``cove.client._exec_session``).

Loaded only when a session runs, so ``import cove.client`` (``cove list``)
does not load the websocket code.
"""

from __future__ import annotations

import os
import select
import time

from cove.client import _json  # json's loads/dumps without importing json (and re)
from cove.client._http import parse_envelope
from cove.client._pump import read_chunks
from cove.client._ws import OP_BINARY, OP_CLOSE, OP_TEXT, encode_frame
from cove.model.errors import CoveError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    from cove.client._http import HttpTransport, PendingResponse
    from cove.client._pump import Sink
    from cove.client._ws import WebSocket

    class Session(Protocol):
        """What the loop needs of ``cove.client._exec_session.ExecSession``."""

        operation: Operation
        sockets: dict[str, WebSocket]
        interactive: bool
        transport: HttpTransport | None
        stopped: bool
        drain_timeout: float

    class Operation(Protocol):
        """What the loop needs of ``cove.client._rest.Operation``."""

        id: str
        status: str
        metadata: dict[str, Any]

        @property
        def done(self) -> bool: ...
        def wait(self, timeout: float | None = None) -> Any: ...
        def update_from(self, wire: dict[str, Any]) -> None: ...
        def raise_for_error(self) -> None: ...

__all__ = ["END", "Loop"]

END = _json.dumps({"command": "end"})  # LXD's end of stdin (any text message is)

_IN = select.POLLIN
_OUT = select.POLLOUT
_GONE = select.POLLHUP | select.POLLERR | select.POLLNVAL


class Loop:
    """One run of an ``ExecSession``: the poll loop and what it tracks."""

    def __init__(self, session: Session, sinks: list[Sink]) -> None:
        self.session = session
        self.poller = select.poll()
        self.masks: dict[int, int] = {}
        self.sinks = {sink.ws.sock.fileno(): sink for sink in sinks}
        self.in_ws = session.sockets["0"]
        self.in_fd = self.in_ws.sock.fileno()
        self.queue: list[bytes] = []  # frames for websocket 0, the first maybe half-sent
        self.sent = 0                 # bytes of queue[0] already sent
        self.stdin_fd: int | None = None
        self.pending: PendingResponse | None = None
        self.close_frame: bytes | None = None  # queued for websocket 0 (stdin only)

    def _watch(self, fd: int, mask: int) -> None:
        old = self.masks.get(fd, 0)
        if mask == old:
            return
        if not mask:
            del self.masks[fd]
            self.poller.unregister(fd)
        elif old:
            self.masks[fd] = mask
            self.poller.modify(fd, mask)
        else:
            self.masks[fd] = mask
            self.poller.register(fd, mask)

    def run(self, stdin: Any) -> Operation:
        session = self.session
        op = session.operation
        for fd, sink in list(self.sinks.items()):
            self._watch(fd, _IN)
            self._deliver(fd, sink, sink.ws.recv_buffered())  # read with the upgrade's reply
        self._start_input(stdin)
        if not op.done and session.transport is not None:
            self.pending = session.transport.begin("GET", f"/1.0/operations/{op.id}/wait")
            self._watch(self.pending.fileno(), _IN)
        deadline: float | None = None
        try:
            while self.sinks or self.pending is not None:
                if op.done and deadline is None:
                    deadline = time.monotonic() + session.drain_timeout
                timeout = -1.0
                if deadline is not None:
                    timeout = max(0.0, deadline - time.monotonic()) * 1000
                    if timeout == 0:
                        break  # a daemonised child keeps the output open: the server's to end
                for fd, events in self.poller.poll(timeout):
                    self._event(fd, events, op)
        finally:
            self._drop_input()
            if self.pending is not None:
                self.pending.close()
        if not op.done:  # no transport to wait through: wait now
            op.wait()
        op.raise_for_error()
        return op

    def _event(self, fd: int, events: int, op: Operation) -> None:
        if self.pending is not None and fd == self.pending.fileno():
            pending, self.pending = self.pending, None
            self._watch(fd, 0)
            resp = pending.finish()
            op.update_from(dict(parse_envelope(resp).get("metadata") or {}))
            if op.done:
                self._drop_input()  # the command has ended: leave the rest of stdin alone
            else:  # a server that ends a wait early: ask again
                self.pending = self.session.transport.begin(  # type: ignore[union-attr]
                    "GET", f"/1.0/operations/{op.id}/wait")
                self._watch(self.pending.fileno(), _IN)
            return
        if fd == self.stdin_fd:
            self._read_stdin()
            return
        if events & _OUT and fd == self.in_fd:
            self._flush()
        sink = self.sinks.get(fd)
        if sink is not None and events & (_IN | _GONE):
            self._deliver(fd, sink, sink.ws.recv_available())
        elif events & _GONE and fd == self.in_fd and sink is None:
            self._drop_input()

    def _deliver(self, fd: int, sink: Sink, messages: list[tuple[int, bytes]]) -> None:
        for kind, data in messages:
            if kind == OP_CLOSE:
                self._output_ended(fd)
                return
            if kind == OP_BINARY:
                sink.write(data)
                continue
            # LXD's end-of-stream barrier: no more data. Close our side now
            # (servers may wait for that before ending the operation) and
            # read on until the server's close arrives.
            if fd == self.in_fd:
                self._drop_input()
            sink.ws.send_close()

    def _output_ended(self, fd: int) -> None:
        del self.sinks[fd]
        if fd == self.in_fd:  # a pty's stream: its input goes with it
            self._drop_input()
        self._watch(fd, 0)

    # -- stdin ----------------------------------------------------------------------
    def _start_input(self, stdin: Any) -> None:
        if stdin is None:
            self._queue_end()
            return
        if isinstance(stdin, (bytes, bytearray, memoryview)):
            if stdin:
                self._queue(encode_frame(OP_BINARY, bytes(stdin)))
            self._queue_end()
            return
        fd: int | None = stdin if isinstance(stdin, int) else None
        if fd is None:
            try:
                fd = stdin.fileno()
            except (AttributeError, OSError, ValueError):
                fd = None
        if fd is None:
            self._feed_in_thread(stdin)
            return
        self.stdin_fd = fd
        self._watch(fd, _IN)

    def _read_stdin(self) -> None:
        fd = self.stdin_fd
        assert fd is not None
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._watch(fd, 0)  # read on once websocket 0 has taken this (_flush)
            self._queue(encode_frame(OP_BINARY, data))
            return
        self._watch(fd, 0)
        self.stdin_fd = None
        self._queue_end()

    def _queue_end(self) -> None:
        self._queue(encode_frame(OP_TEXT, END.encode()))
        if not self.session.interactive:
            self.close_frame = encode_frame(OP_CLOSE, (1000).to_bytes(2, "big"))
            self._queue(self.close_frame)

    def _queue(self, frame: bytes) -> None:
        self.queue.append(frame)
        self._flush()

    def _flush(self) -> None:
        while self.queue:
            head = self.queue[0]
            try:
                n = self.in_ws.send_nowait(memoryview(head)[self.sent:])
            except OSError:
                self._drop_input()
                return
            self.sent += n
            if self.sent < len(head):
                self._watch(self.in_fd, self.masks.get(self.in_fd, 0) | _OUT)
                return
            if self.queue.pop(0) is self.close_frame:
                self.in_ws.close_sent = True  # ws.close() must not send another
            self.sent = 0
        self._watch(self.in_fd, self.masks.get(self.in_fd, 0) & ~_OUT)
        if self.stdin_fd is not None:
            self._watch(self.stdin_fd, _IN)

    def _drop_input(self) -> None:
        """The command (or its server) is done with stdin: stop copying it.
        A half-sent frame is finished first so the stream stays well formed."""
        if self.queue and self.sent:
            try:
                self.in_ws.sock.sendall(memoryview(self.queue[0])[self.sent:])
                if self.queue[0] is self.close_frame:
                    self.in_ws.close_sent = True
            except OSError:
                pass
        self.queue.clear()
        self.sent = 0
        if self.stdin_fd is not None:
            self._watch(self.stdin_fd, 0)
            self.stdin_fd = None
        if self.in_fd in self.masks:
            self._watch(self.in_fd, self.masks[self.in_fd] & ~_OUT)

    def _feed_in_thread(self, src: Any) -> None:
        """A file object without a descriptor: a blocking ``read()``, so a thread."""
        import threading

        session = self.session

        def feed() -> None:
            ws = session.sockets["0"]
            try:
                for chunk in read_chunks(src, lambda: session.stopped):
                    ws.send_binary(chunk)
                if session.stopped:
                    return
                ws.send_text(END)
                if not session.interactive:
                    ws.send_close()
            except (OSError, CoveError):
                pass  # the command is gone; its stdin with it

        threading.Thread(target=feed, daemon=True, name="exec-stdin").start()
