"""The stdlib websocket client against a tiny in-test websocket server."""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
from test_client_fakelxd import (
    FakeLXD,
    Request,
    ServerWebSocket,
    sync,
)

from cove.client import _ws
from cove.client._ws import (
    OP_BINARY,
    OP_CLOSE,
    OP_TEXT,
    WebSocket,
    WebSocketError,
    accept_key,
)
from cove.model.errors import Forbidden

# The fake server's fixtures (fake, cove_dir) come from its module.
pytest_plugins = ("test_client_fakelxd",)


def _connect(server: FakeLXD, secret: str) -> WebSocket:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(server.socket_path)
    return WebSocket.connect(sock, f"/1.0/operations/op/websocket?secret={secret}")


def test_accept_key_matches_rfc_6455_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_echo_text_and_binary_with_masked_client_frames(fake: FakeLXD) -> None:
    def echo(req: Request, ws: ServerWebSocket) -> None:
        while True:
            op, data = ws.recv()  # the server side asserts every frame is masked
            if op == 8:
                ws.close()
                return
            ws.send(op, data)

    fake.websockets["echo"] = echo
    ws = _connect(fake, "echo")
    ws.send_text("héllo")
    assert ws.recv() == (OP_TEXT, "héllo".encode())
    ws.send_binary(b"\x00\x01\xff")
    assert ws.recv() == (OP_BINARY, b"\x00\x01\xff")
    ws.close()
    assert ws.close_sent and ws.closed and ws.close_code == 1000


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 300_000])
def test_payload_length_encodings(fake: FakeLXD, size: int) -> None:
    def echo_once(req: Request, ws: ServerWebSocket) -> None:
        op, data = ws.recv()
        ws.send(op, data)
        ws.recv()
        ws.close()

    fake.websockets["big"] = echo_once
    payload = os.urandom(size)
    with _connect(fake, "big") as ws:
        ws.send_binary(payload)
        assert ws.recv() == (OP_BINARY, payload)


def test_fragmented_message_with_ping_between_fragments(fake: FakeLXD) -> None:
    pongs: list[bytes] = []

    def fragments(req: Request, ws: ServerWebSocket) -> None:
        ws.send(OP_BINARY, b"ab", fin=False)
        ws.send(9, b"are you there")  # a ping may come between fragments
        ws.send(0, b"cd", fin=False)
        ws.send(0, b"ef", fin=True)
        _fin, op, data = ws.recv_frame()
        pongs.append(bytes([op]) + data)
        ws.recv()
        ws.close()

    fake.websockets["frag"] = fragments
    with _connect(fake, "frag") as ws:
        assert ws.recv() == (OP_BINARY, b"abcdef")
    assert pongs == [b"\x0aare you there"]


def test_client_fragments_are_joined_by_server(fake: FakeLXD) -> None:
    got: list[tuple[int, bytes]] = []

    def collect(req: Request, ws: ServerWebSocket) -> None:
        got.append(ws.recv())
        ws.recv()
        ws.close()

    fake.websockets["join"] = collect
    with _connect(fake, "join") as ws:
        ws.send_fragments(OP_TEXT, [b"one ", b"two ", b"three"])
    assert got == [(OP_TEXT, b"one two three")]


def test_server_close_is_answered_and_sticky(fake: FakeLXD) -> None:
    answered: list[tuple[int, bytes]] = []
    seen = threading.Event()

    def closer(req: Request, ws: ServerWebSocket) -> None:
        ws.send(8, struct.pack("!H", 4000) + b"bye")
        answered.append(ws.recv())
        seen.set()

    fake.websockets["close"] = closer
    ws = _connect(fake, "close")
    assert ws.recv() == (OP_CLOSE, struct.pack("!H", 4000) + b"bye")
    assert ws.close_code == 4000
    assert ws.recv()[0] == OP_CLOSE  # stays closed
    ws.close()
    assert seen.wait(5)
    assert answered[0][0] == 8
    assert struct.unpack("!H", answered[0][1][:2])[0] == 4000
    with pytest.raises(WebSocketError):
        ws.send_text("too late")


def test_abrupt_end_reads_as_close_1006(fake: FakeLXD) -> None:
    fake.websockets["drop"] = lambda req, ws: None
    ws = _connect(fake, "drop")
    assert ws.recv() == (OP_CLOSE, b"")
    assert ws.close_code == 1006
    ws.close()


def test_refused_upgrade_raises_the_lxd_error(fake: FakeLXD) -> None:
    with pytest.raises(Forbidden, match="bad websocket secret"):
        _connect(fake, "no-such-secret")


def test_plain_http_answer_is_not_an_upgrade(fake: FakeLXD) -> None:
    fake.route("GET", "/plain")(lambda req: sync({}))
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(fake.socket_path)
    with pytest.raises(WebSocketError, match="bad status|Upgrade|not"):
        # 200 instead of 101: not an LXD error envelope, not an upgrade either
        _ws.handshake(sock, "/plain")
    sock.close()


@pytest.fixture
def raw_server(cove_dir: str) -> Iterator[tuple[str, list[bytes]]]:
    """A server that answers the upgrade with a wrong accept key."""
    path = os.path.join(cove_dir, "raw.socket")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = srv.accept()
        seen.append(conn.recv(4096))
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n")
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield path, seen
    srv.close()


def test_wrong_accept_key_is_refused(raw_server: tuple[str, list[bytes]]) -> None:
    path, seen = raw_server
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    with pytest.raises(WebSocketError, match="Sec-WebSocket-Accept"):
        WebSocket.connect(sock, "/x")
    request = seen[0].decode()
    assert "Sec-WebSocket-Version: 13" in request
    assert "Upgrade: websocket" in request


def test_mask_roundtrip() -> None:
    key = b"\x01\x02\x03\x04"
    data = os.urandom(1001)
    assert _ws._mask(_ws._mask(data, key), key) == data
    assert _ws._mask(b"", key) == b""
