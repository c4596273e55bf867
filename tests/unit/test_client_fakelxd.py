"""A small fake LXD server over a unix socket, for the client and CLI tests.

Routes are typed handler functions ``(Request) -> Reply`` keyed by method and
path; websocket endpoints are ``(Request, ServerWebSocket) -> None`` keyed by
secret. Operations live in ``FakeLXD.ops`` and answer ``GET
/1.0/operations/ID`` and ``.../wait`` (which blocks until ``finish()``).
Everything received is recorded in ``requests``. The tests at the bottom
check the fake itself.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import shutil
import socket
import socketserver
import struct
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

import pytest

# -- requests and replies ---------------------------------------------------------


class Request:
    def __init__(self, method: str, path: str, query: dict[str, str],
                 headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path} {self.query}>"


class Reply:
    def __init__(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                 chunks: Iterator[bytes] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.chunks = chunks


Handler = Callable[[Request], Reply]


def _envelope(**kw: Any) -> bytes:
    env = {"type": "sync", "status": "Success", "status_code": 200, "operation": "",
           "error_code": 0, "error": "", "metadata": None}
    env.update(kw)
    return json.dumps(env).encode()


def sync(metadata: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, _envelope(metadata=metadata),
                 {"Content-Type": "application/json", **(headers or {})})


def error(code: int, message: str) -> Reply:
    return Reply(code, _envelope(type="error", status="", status_code=0, error_code=code,
                                 error=message), {"Content-Type": "application/json"})


def async_(op: FakeOp) -> Reply:
    return Reply(202, _envelope(type="async", status="Operation created", status_code=100,
                                operation=f"/1.0/operations/{op.id}", metadata=op.to_dict()),
                 {"Content-Type": "application/json", "Location": f"/1.0/operations/{op.id}"})


class FakeOp:
    """An operation: ``finish()`` or ``fail()`` ends it and wakes waiters."""

    def __init__(self, cls: str = "task", metadata: dict[str, Any] | None = None,
                 resources: dict[str, list[str]] | None = None) -> None:
        self.id = str(uuid.uuid4())
        self.cls = cls
        self.status = "Running"
        self.status_code = 103
        self.metadata = metadata or {}
        self.resources = resources or {}
        self.err = ""
        self.error_code = 0
        self.done = threading.Event()

    def finish(self, **metadata: Any) -> FakeOp:
        self.metadata.update(metadata)
        self.status, self.status_code = "Success", 200
        self.done.set()
        return self

    def fail(self, message: str, error_code: int = 0) -> FakeOp:
        self.status, self.status_code, self.err = "Failure", 400, message
        self.error_code = error_code
        self.done.set()
        return self

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "class": self.cls, "description": "fake", "status": self.status,
             "status_code": self.status_code, "resources": self.resources,
             "metadata": self.metadata or None, "may_cancel": False, "err": self.err,
             "created_at": "2024-05-01T10:20:30.123456789Z",
             "updated_at": "2024-05-01T10:20:31Z", "location": "none"}
        if self.error_code:
            d["error_code"] = self.error_code
        return d


# -- server-side websockets ------------------------------------------------------------

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class ServerWebSocket:
    """The server end: reads masked frames (and insists on the mask), writes plain ones."""

    def __init__(self, rfile: Any, sock: socket.socket) -> None:
        self.rfile = rfile
        self.sock = sock
        self.lock = threading.Lock()

    def _read(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) < n:
            raise EOFError
        return data

    def recv_frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = self._read(2)
        assert b1 & 0x80, "client frames must be masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        key = self._read(4)
        data = bytes(b ^ key[i % 4] for i, b in enumerate(self._read(n)))
        return bool(b0 & 0x80), b0 & 0x0F, data

    def recv(self) -> tuple[int, bytes]:
        """Next whole message; pings answered; (8, payload) on close; (8, b'') on EOF."""
        parts: list[bytes] = []
        op0 = 0
        while True:
            try:
                fin, op, data = self.recv_frame()
            except (EOFError, OSError, ValueError):
                return 8, b""
            if op == 9:
                self.send(10, data)
                continue
            if op == 10:
                continue
            if op == 8:
                return 8, data
            if op != 0:
                op0 = op
            parts.append(data)
            if fin:
                return op0, b"".join(parts)

    def send(self, opcode: int, data: bytes = b"", fin: bool = True) -> None:
        head = bytearray([(0x80 if fin else 0) | opcode])
        n = len(data)
        if n < 126:
            head.append(n)
        elif n < 1 << 16:
            head += bytes([126]) + struct.pack("!H", n)
        else:
            head += bytes([127]) + struct.pack("!Q", n)
        with self.lock:
            self.sock.sendall(bytes(head) + data)

    def close(self, code: int = 1000) -> None:
        try:
            self.send(8, struct.pack("!H", code))
        except OSError:
            pass


WsHandler = Callable[[Request, ServerWebSocket], None]


# -- the server ---------------------------------------------------------------------------

class FakeLXD:
    """Serve ``routes`` on ``socket_path`` in a thread. Use as a context manager."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.routes: dict[tuple[str, str], Handler] = {}
        self.websockets: dict[str, WsHandler] = {}  # by secret, or by path for streams
        self.ops: dict[str, FakeOp] = {}
        self.requests: list[Request] = []
        self.route("GET", "/1.0")(lambda req: sync({
            "api_version": "1.0", "api_extensions": ["instances"], "auth": "trusted",
            "environment": {"server": "cove", "server_version": "0.1.0",
                            "kernel_version": "6.1.0", "driver": "runc"}}))
        self._server: socketserver.ThreadingUnixStreamServer | None = None

    def resolves_names(self) -> None:
        """Advertise cove's ``cove_exec_user_name`` (exec user names), as coved does."""
        self.route("GET", "/1.0")(lambda req: sync({
            "api_version": "1.0", "api_extensions": ["instances", "cove_exec_user_name"],
            "auth": "trusted", "environment": {"server": "cove"}}))

    def route(self, method: str, path: str) -> Callable[[Handler], Handler]:
        def add(fn: Handler) -> Handler:
            self.routes[(method, path)] = fn
            return fn
        return add

    def add_op(self, op: FakeOp) -> FakeOp:
        self.ops[op.id] = op
        return op

    def finished(self, **metadata: Any) -> Reply:
        """An async reply whose operation has already succeeded."""
        return async_(self.add_op(FakeOp()).finish(**metadata))

    def find(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]

    # -- dispatch --------------------------------------------------------------------
    def handle(self, req: Request) -> Reply:
        self.requests.append(req)
        fn = self.routes.get((req.method, req.path))
        if fn is not None:
            return fn(req)
        parts = req.path.split("/")
        if req.method == "GET" and len(parts) >= 4 and parts[2] == "operations":
            op = self.ops.get(parts[3])
            if op is None:
                return error(404, "Operation not found")
            if len(parts) == 5 and parts[4] == "wait":
                timeout = float(req.query.get("timeout", "-1"))
                op.done.wait(None if timeout < 0 else timeout)
            return sync(op.to_dict())
        return error(404, "not found")

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> FakeLXD:
        fake = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Transfer-Encoding") == "chunked":
                    body = self._chunked()
                else:
                    body = self.rfile.read(length) if length else b""
                req = Request(self.command, url.path, dict(parse_qsl(url.query)),
                              {k.lower(): v for k, v in self.headers.items()}, body)
                if (url.path.endswith("/websocket") and "secret" in req.query) \
                        or url.path in fake.websockets:  # a stream: /1.0/events
                    fake.requests.append(req)
                    self._websocket(req)
                    return
                reply = fake.handle(req)
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                if reply.chunks is not None:
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for chunk in reply.chunks:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def _chunked(self) -> bytes:
                out = b""
                while True:
                    n = int(self.rfile.readline().strip(), 16)
                    if n == 0:
                        self.rfile.readline()
                        return out
                    out += self.rfile.read(n)
                    self.rfile.readline()

            def _websocket(self, req: Request) -> None:
                handler = fake.websockets.get(req.query.get("secret", req.path))
                if handler is None or req.headers.get("upgrade", "").lower() != "websocket":
                    reply = error(403, "bad websocket secret")
                    self.send_response(reply.status)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                    return
                key = req.headers["sec-websocket-key"].encode()
                accept = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
                self.send_response(101)
                self.send_header("Upgrade", "websocket")
                self.send_header("Connection", "Upgrade")
                self.send_header("Sec-WebSocket-Accept", accept)
                self.end_headers()
                self.wfile.flush()
                try:
                    handler(req, ServerWebSocket(self.rfile, self.connection))
                finally:
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        class Server(socketserver.ThreadingUnixStreamServer):
            daemon_threads = True

        self._server = Server(self.socket_path, H)
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            for op in self.ops.values():
                op.done.set()
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeExec:
    """``POST /1.0/instances/NAME/exec`` with LXD's websocket flow.

    Non-interactive: what arrives on fd 0 (until the text barrier or a close)
    is echoed to fd 1 after ``stdout``; ``stderr`` goes to fd 2. Interactive:
    fd 0 carries both ways. The operation ends with ``return`` = ``code``
    once the output streams are closed. ``hold`` keeps the command "running"
    until set (to test control messages).
    """

    def __init__(self, fake: FakeLXD, name: str, *, stdout: bytes = b"", stderr: bytes = b"",
                 code: int = 0, echo: bool = True) -> None:
        self.fake = fake
        self.stdout, self.stderr, self.code, self.echo = stdout, stderr, code, echo
        self.body: dict[str, Any] = {}
        self.stdin = b""
        self.stdin_end = ""  # "text" (barrier) or "close"
        self.control: list[dict[str, Any]] = []
        self.control_event = threading.Event()
        self.hold = threading.Event()
        self.hold.set()
        self.connected: list[str] = []
        fake.route("POST", f"/1.0/instances/{name}/exec")(self._start)

    def _start(self, req: Request) -> Reply:
        self.body = req.json()
        interactive = bool(self.body.get("interactive"))
        names = ["0", "control"] if interactive else ["0", "1", "2", "control"]
        secrets = {n: uuid.uuid4().hex for n in names}
        op = self.fake.add_op(FakeOp("websocket", {"fds": secrets}))
        outputs_done = threading.Semaphore(0)
        n_outputs = 1 if interactive else 2
        piped: list[bytes | None] = []
        piped_cv = threading.Condition()

        def finish_when_outputs_done() -> None:
            for _ in range(n_outputs):
                outputs_done.acquire()
            op.finish(**{"return": self.code})

        threading.Thread(target=finish_when_outputs_done, daemon=True).start()

        def read_stdin(ws: ServerWebSocket, then_echo: bool) -> None:
            while True:
                opcode, data = ws.recv()
                if opcode == 2:
                    self.stdin += data
                    if then_echo:
                        ws.send(2, data)
                    with piped_cv:
                        piped.append(data)
                        piped_cv.notify_all()
                    continue
                self.stdin_end = "text" if opcode == 1 else "close"
                with piped_cv:
                    piped.append(None)
                    piped_cv.notify_all()
                if opcode == 8:
                    ws.close()
                return

        def fd0(req: Request, ws: ServerWebSocket) -> None:
            self.connected.append("0")
            if interactive:
                ws.send(2, self.stdout)
                reader = threading.Thread(target=read_stdin, args=(ws, self.echo), daemon=True)
                reader.start()
                reader.join(2)
                self.hold.wait(5)
                ws.close()
                ws.recv()
                outputs_done.release()
            else:
                read_stdin(ws, False)

        def fd1(req: Request, ws: ServerWebSocket) -> None:
            self.connected.append("1")
            if self.stdout:
                ws.send(2, self.stdout)
            if self.echo:
                while True:
                    with piped_cv:
                        while not piped:
                            piped_cv.wait()
                        data = piped.pop(0)
                    if data is None:
                        break
                    ws.send(2, data)
            self.hold.wait(5)
            ws.send(1, b"")  # LXD's end-of-stream barrier
            ws.close()
            ws.recv()  # the client's close: as coved, end only once it is acknowledged
            outputs_done.release()

        def fd2(req: Request, ws: ServerWebSocket) -> None:
            self.connected.append("2")
            if self.stderr:
                ws.send(2, self.stderr)
            self.hold.wait(5)
            ws.close()
            ws.recv()  # the client's close: as coved, end only once it is acknowledged
            outputs_done.release()

        def control(req: Request, ws: ServerWebSocket) -> None:
            self.connected.append("control")
            while True:
                opcode, data = ws.recv()
                if opcode == 8:
                    ws.close()
                    return
                self.control.append(json.loads(data))
                self.control_event.set()

        handlers = {"0": fd0, "1": fd1, "2": fd2, "control": control}
        for n, secret in secrets.items():
            self.fake.websockets[secret] = handlers[n]
        return async_(op)


@pytest.fixture
def cove_dir() -> Iterator[str]:
    # Short, because a unix socket path must fit in 108 bytes.
    d = tempfile.mkdtemp(prefix="cove-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def fake(cove_dir: str) -> Iterator[FakeLXD]:
    with FakeLXD(os.path.join(cove_dir, "unix.socket")) as server:
        yield server


# -- the fake's own checks ------------------------------------------------------------------

def test_fake_answers_server_info_over_http(fake: FakeLXD) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.connect(fake.socket_path)
    s.sendall(b"GET /1.0 HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"api_version" not in data:
        data += s.recv(4096)
    s.close()
    assert data.startswith(b"HTTP/1.1 200")


def test_fake_unknown_route_is_lxd_404(fake: FakeLXD) -> None:
    reply = fake.handle(Request("GET", "/1.0/nope", {}, {}, b""))
    assert reply.status == 404
    assert json.loads(reply.body)["error_code"] == 404
