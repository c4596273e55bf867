"""A minimal RFC 6455 websocket client on the standard library.

Design note: LXD streams exec and console I/O over websockets on the same
unix socket as the REST API. The CLI's ``exec`` is a hot path, so this is
written on ``_socket``, SHA-1 and ``binascii`` instead of a third-party
library (nor ``socket``, ``struct`` or ``threading``: their Python layers
and the enums under them are most of what ``cove exec`` imports). It is a
client only: frames it sends are masked, frames it reads must not be. One
thread may ``recv()`` while others send; sends are serialised by a lock.
Ping frames are answered inside ``recv()`` and never returned; a close
frame from the peer is answered and returned as ``(OP_CLOSE, payload)``, as
is an abrupt end of the stream (close code 1006). ``recv_available()`` is
``recv()`` for a poll loop: one read, the whole messages it completed.
"""

from __future__ import annotations

import _socket
import binascii
import os
from _thread import allocate_lock

from cove.client import _json  # json's loads/dumps without importing json (and re)
from cove.model.errors import CoveError, error_for_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from _socket import socket
    from typing import Self

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "WebSocket",
    "WebSocketError",
    "accept_key",
    "handshake",
]

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEADER = 64 * 1024


class WebSocketError(CoveError):
    """The peer broke the websocket protocol or refused the upgrade."""

    status = 502


def _b64(data: bytes) -> str:
    # base64.b64encode's text; the base64 module imports re (~2 ms a cove exec)
    return binascii.b2a_base64(data, newline=False).decode()


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value that answers ``key``."""
    try:
        # CPython's builtin SHA-1: hashlib loads OpenSSL (~3 ms) for this one
        # digest, which ``cove exec`` computes once per websocket.
        from _sha1 import sha1
    except ImportError:  # another interpreter
        from hashlib import sha1
    return _b64(sha1(key.encode() + _GUID).digest())


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if n == 0:
        return b""
    # One big-integer XOR is far faster in Python than a byte loop.
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    """One frame as bytes (masked unless ``mask`` is False, as servers send)."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head.append(bit | n)
    elif n < 1 << 16:
        head.append(bit | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(bit | 127)
        head += n.to_bytes(8, "big")
    if mask:
        key = os.urandom(4)
        return bytes(head) + key + _mask(payload, key)
    return bytes(head) + payload


def handshake(sock: socket, path: str, host: str = "localhost",
              headers: dict[str, str] | None = None) -> bytes:
    """Upgrade ``sock`` to a websocket at ``path``; return bytes read past the reply.

    Raises:
        CoveError: the server answered with an LXD error (mapped by status).
        WebSocketError: the reply is not a valid websocket upgrade.
    """
    return read_upgrade(sock, path, send_upgrade(sock, path, host, headers))


def send_upgrade(sock: socket, path: str, host: str = "localhost",
                 headers: dict[str, str] | None = None) -> str:
    """Send the upgrade request for ``path``; return its key for ``read_upgrade``.

    Apart from ``read_upgrade`` so a client can send several upgrades before
    it waits for the first reply (``cove exec`` opens four websockets)."""
    key = _b64(os.urandom(16))
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return key


def read_upgrade(sock: socket, path: str, key: str) -> bytes:
    """Read the reply to ``send_upgrade``'s request; return bytes read past it.

    Raises: as ``handshake``.
    """
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise WebSocketError(f"websocket upgrade of {path}: connection closed")
        buf += chunk
        if len(buf) > _MAX_HEADER:
            raise WebSocketError(f"websocket upgrade of {path}: reply header too long")
    head, rest = buf.split(b"\r\n\r\n", 1)
    status_line, *hlines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        raise WebSocketError(f"websocket upgrade of {path}: bad status line "
                             f"{status_line!r}") from None
    hdrs: dict[str, str] = {}
    for line in hlines:
        name, _, value = line.partition(":")
        hdrs[name.strip().lower()] = value.strip()
    if status != 101:
        raise _upgrade_error(sock, path, status, hdrs, rest)
    if hdrs.get("upgrade", "").lower() != "websocket":
        raise WebSocketError(f"websocket upgrade of {path}: no 'Upgrade: websocket'")
    if hdrs.get("sec-websocket-accept") != accept_key(key):
        raise WebSocketError(f"websocket upgrade of {path}: wrong Sec-WebSocket-Accept")
    return rest


def _upgrade_error(sock: socket, path: str, status: int, hdrs: dict[str, str],
                   rest: bytes) -> CoveError:
    length = int(hdrs.get("content-length", "0") or 0)
    sock.settimeout(2.0)
    try:
        while len(rest) < length:
            chunk = sock.recv(length - len(rest))
            if not chunk:
                break
            rest += chunk
    except OSError:
        pass
    try:
        env = _json.loads(rest)
    except ValueError:
        env = None
    if isinstance(env, dict) and (env.get("type") == "error" or status >= 400):
        return error_for_status(int(env.get("error_code") or status),
                                str(env.get("error") or f"HTTP {status}"))
    if status >= 400:
        text = rest.decode("utf-8", "replace").strip()
        return error_for_status(status, text or f"websocket upgrade refused: HTTP {status}")
    return WebSocketError(f"websocket upgrade of {path}: not an upgrade (HTTP {status})")


class WebSocket:
    """A client websocket over an already-upgraded socket.

    Build it with ``WebSocket.connect(sock, path)``. ``recv()`` returns
    ``(opcode, payload)`` for each whole message (fragments are joined):
    ``OP_TEXT``, ``OP_BINARY``, or ``OP_CLOSE`` once the peer closed, after
    which every ``recv()`` returns ``OP_CLOSE`` again. ``close_code`` is the
    peer's close code (1005 if it gave none, 1006 if the stream just ended).
    """

    def __init__(self, sock: socket, leftover: bytes = b"") -> None:
        self.sock = sock
        self._buf = bytearray(leftover)
        self._send_lock = allocate_lock()
        self._frag_op: int | None = None  # the message being joined from fragments
        self._frag_parts: list[bytes] = []
        self.close_sent = False
        self.closed = False  # the peer's close (or EOF) has been seen
        self.close_code: int | None = None
        self.close_payload = b""

    @classmethod
    def connect(cls, sock: socket, path: str, host: str = "localhost",
                headers: dict[str, str] | None = None) -> WebSocket:
        """Upgrade ``sock`` at ``path`` and return the websocket (owns ``sock``)."""
        try:
            rest = handshake(sock, path, host, headers)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)
        return cls(sock, rest)

    @classmethod
    def connect_many(cls, socks: list[socket], paths: list[str],
                     host: str = "localhost") -> list[WebSocket]:
        """``connect`` for each socket and path, the requests all sent before
        the first reply is read (one round trip, not one per websocket).

        Owns ``socks``: all are closed if any upgrade fails. Raises: as
        ``handshake``.
        """
        done: list[WebSocket] = []
        try:
            keys = [send_upgrade(sock, path, host) for sock, path in zip(socks, paths,
                                                                         strict=True)]
            for sock, path, key in zip(socks, paths, keys, strict=True):
                rest = read_upgrade(sock, path, key)
                sock.settimeout(None)
                done.append(cls(sock, rest))
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        return done

    # -- sending ------------------------------------------------------------
    def _send_frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        frame = encode_frame(opcode, payload, fin=fin)
        with self._send_lock:
            if self.close_sent:
                raise WebSocketError("websocket already closed")
            if opcode == OP_CLOSE:
                self.close_sent = True
            self.sock.sendall(frame)

    def send_binary(self, data: bytes) -> None:
        self._send_frame(OP_BINARY, bytes(data))

    def send_text(self, text: str | bytes) -> None:
        self._send_frame(OP_TEXT, text.encode() if isinstance(text, str) else bytes(text))

    def ping(self, data: bytes = b"") -> None:
        self._send_frame(OP_PING, data)

    def send_fragments(self, opcode: int, parts: list[bytes]) -> None:
        """Send one message as several frames (mostly for tests)."""
        with self._send_lock:
            if self.close_sent:
                raise WebSocketError("websocket already closed")
            for i, part in enumerate(parts):
                op = opcode if i == 0 else OP_CONT
                self.sock.sendall(encode_frame(op, part, fin=i == len(parts) - 1))

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame unless one was sent already."""
        payload = code.to_bytes(2, "big") + reason.encode() if code else b""
        with self._send_lock:
            if self.close_sent:
                return
            self.close_sent = True
            try:
                self.sock.sendall(encode_frame(OP_CLOSE, payload))
            except OSError:
                pass

    # -- receiving ----------------------------------------------------------
    def _fill(self) -> bool:
        """One read from the socket into the buffer; False at its end (or on
        an error, a timeout included: the stream is over either way)."""
        try:
            chunk = self.sock.recv(65536)
            pending = getattr(self.sock, "pending", None)  # TLS: decrypted, not yet read
            while chunk and pending is not None and pending():
                chunk += self.sock.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            return False
        self._buf += chunk
        return True

    def _take_frame(self) -> tuple[bool, int, bytes] | None:
        """The first whole frame in the buffer (consumed), or None for too few bytes."""
        buf = self._buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        if b0 & 0x70:
            raise WebSocketError("websocket frame uses reserved bits")
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            pos = 4
        elif n == 127:
            pos = 10
        if len(buf) < pos:
            return None
        if pos > 2:
            n = int.from_bytes(buf[2:pos], "big")
        key = b""
        if b1 & 0x80:  # servers must not mask, but tolerate it
            if len(buf) < pos + 4:
                return None
            key = bytes(buf[pos:pos + 4])
            pos += 4
        if len(buf) < pos + n:
            return None
        payload = bytes(buf[pos:pos + n])
        del buf[:pos + n]
        if key:
            payload = _mask(payload, key)
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def _next_message(self) -> tuple[int, bytes] | None:
        """The next whole message from what is buffered (None: more bytes
        needed). Pings are answered and pongs dropped here; a close is
        answered and returned."""
        while True:
            frame = self._take_frame()
            if frame is None:
                return None
            fin, op, payload = frame
            if op == OP_PING:
                try:
                    self._send_frame(OP_PONG, payload)
                except (OSError, WebSocketError):
                    pass
                continue
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self._peer_closed(code, payload)
                self.send_close(code if code not in (1005, 1006) else 1000)
                return OP_CLOSE, payload
            if op == OP_CONT:
                if self._frag_op is None:
                    raise WebSocketError("websocket continuation without a first frame")
            elif op in (OP_TEXT, OP_BINARY):
                if self._frag_op is not None:
                    raise WebSocketError("websocket message interleaved with a fragment")
                self._frag_op = op
            else:
                raise WebSocketError(f"websocket opcode {op:#x} is unknown")
            self._frag_parts.append(payload)
            if fin:
                message_op, parts = self._frag_op, self._frag_parts
                self._frag_op, self._frag_parts = None, []
                assert message_op is not None
                return message_op, parts[0] if len(parts) == 1 else b"".join(parts)

    def recv(self) -> tuple[int, bytes]:
        """Block for the next whole message; see the class docstring."""
        while not self.closed:
            message = self._next_message()
            if message is not None:
                return message
            if not self._fill():
                self._peer_closed(1006, b"")
        return OP_CLOSE, self.close_payload

    def recv_available(self) -> list[tuple[int, bytes]]:
        """``recv()`` for a poll loop (call it when the socket is readable):
        one read, then every whole message buffered, up to and including a
        close. Empty when no message is whole yet; never blocks otherwise."""
        if self.closed:
            return [(OP_CLOSE, self.close_payload)]
        if not self._fill():
            self._peer_closed(1006, b"")
            return [(OP_CLOSE, b"")]
        return self.recv_buffered()

    def recv_buffered(self) -> list[tuple[int, bytes]]:
        """The whole messages already read (with the upgrade's reply, say),
        without reading more: a poll loop's first call, since poll cannot
        see them."""
        messages = []
        while not self.closed:
            message = self._next_message()
            if message is None:
                break
            messages.append(message)
        return messages

    def send_nowait(self, data: bytes | memoryview) -> int:
        """Send what the socket takes now of ``data`` (raw bytes, e.g. a
        frame from ``encode_frame``) without blocking; how many it took."""
        try:
            return int(self.sock.send(data, _socket.MSG_DONTWAIT))
        except BlockingIOError:
            return 0
        except ValueError:  # a TLS socket: no flags, so non-blocking for one call
            pass
        import ssl  # loaded already: this is a TLS socket

        self.sock.setblocking(False)
        try:
            return int(self.sock.send(data))
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0
        finally:
            self.sock.settimeout(None)

    def _peer_closed(self, code: int, payload: bytes) -> None:
        self.closed = True
        self.close_code = code
        self.close_payload = payload

    # -- closing ------------------------------------------------------------
    def close(self, code: int = 1000, reason: str = "", timeout: float = 1.0) -> None:
        """Close politely: send close, wait up to ``timeout`` for the peer's, drop.

        Safe to call more than once and from any thread that is not inside
        ``recv()`` at the same time.
        """
        self.send_close(code, reason)
        if not self.closed and timeout > 0:
            try:
                self.sock.settimeout(timeout)
                while not self.closed:
                    op, _ = self.recv()
                    if op == OP_CLOSE:
                        break
            except (OSError, WebSocketError):
                pass
        self.abort()

    def abort(self) -> None:
        """Drop the connection without a close handshake."""
        try:
            self.sock.shutdown(_socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
