"""WebSocket.connect_many: every upgrade request is sent before any reply is read."""

from __future__ import annotations

import socket
import threading

import pytest

from cove.client._ws import OP_TEXT, WebSocket, accept_key, encode_frame
from cove.model.errors import Forbidden


def _read_request(sock: socket.socket) -> dict[str, str]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        assert chunk, "client closed before its request was whole"
        buf += chunk
    lines = buf.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    hdrs["path"] = lines[0].split(" ")[1]
    return hdrs


def _server(ends: list[socket.socket], refuse: int | None, seen: list[str]) -> None:
    # Reads ALL requests first: a client that waits for one reply before
    # sending the next request never gets one (its recv times out).
    requests = [_read_request(s) for s in ends]
    seen.extend(r["path"] for r in requests)
    for i, (sock, req) in enumerate(zip(ends, requests, strict=True)):
        if i == refuse:
            body = b'{"type": "error", "error": "not allowed", "error_code": 403}'
            sock.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
            continue
        try:
            sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Accept: "
                          f"{accept_key(req['sec-websocket-key'])}\r\n\r\n").encode()
                         + encode_frame(OP_TEXT, f"hello {i}".encode(), mask=False))
        except BrokenPipeError:  # a client that saw a refusal may close the others first
            pass


def _pairs(n: int) -> tuple[list[socket.socket], list[socket.socket]]:
    pairs = [socket.socketpair(socket.AF_UNIX) for _ in range(n)]
    for client, _ in pairs:
        client.settimeout(5)
    return [p[0] for p in pairs], [p[1] for p in pairs]


def test_all_requests_go_out_before_the_first_reply() -> None:
    clients, ends = _pairs(4)
    seen: list[str] = []
    t = threading.Thread(target=_server, args=(ends, None, seen))
    t.start()
    paths = [f"/1.0/operations/op/websocket?secret={n}" for n in ("control", "0", "1", "2")]
    sockets = WebSocket.connect_many(clients, paths)
    t.join(5)
    assert seen == paths
    # a frame sent right behind the 101 is kept for the first recv()
    assert [ws.recv() for ws in sockets] == [(OP_TEXT, f"hello {i}".encode()) for i in range(4)]
    for ws in sockets:
        ws.abort()
    for end in ends:
        end.close()


def test_a_refused_upgrade_raises_and_closes_every_socket() -> None:
    clients, ends = _pairs(3)
    t = threading.Thread(target=_server, args=(ends, 1, []))
    t.start()
    with pytest.raises(Forbidden, match="not allowed"):
        WebSocket.connect_many(clients, ["/a", "/b", "/c"])
    t.join(5)
    assert all(c.fileno() == -1 for c in clients)
    for end in ends:
        end.close()
