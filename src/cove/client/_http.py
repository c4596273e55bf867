"""HTTP/1.1 over coved's unix socket, and LXD's response envelope.

Design note: this module is the client's one choke point for HTTP. It uses
only ``_socket`` (not ``socket``, whose Python layer builds four enums) and a small HTTP/1.1 codec of its own (``_Connection``)
because the ``cove`` command imports it on every call and pays for every
import (see DESIGN.md, "A Python CLI pays for its imports"): ``http.client``
drags in ``email.parser`` and ``ssl``, ~20 ms on every call for header
parsing this client does in a dozen lines. Connections are
kept alive and reused; an idle connection the server has closed is noticed
before reuse (it reads as ready-with-EOF) and a request with a replayable
body is retried once on a fresh connection when a reused one turns out dead.

Every failure to reach the daemon is a ``ConnectionFailed`` that names the
socket; every LXD error envelope becomes the ``CoveError`` subclass bound to
its ``error_code`` (``cove.model.errors.error_for_status``), so callers see
the same exception types the engine raises in-process.
"""

from __future__ import annotations

import _socket
import errno
import io
import os
import select
from _thread import allocate_lock  # threading.Lock, without threading (cove list needs no thread)
from abc import ABC, abstractmethod

from cove.client import _json  # json's loads/dumps without importing json (and re)
from cove.model.errors import CoveError, InternalError, error_for_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from _socket import socket
    from collections.abc import Callable, Iterator, Mapping
    from typing import Any, BinaryIO, Self

__all__ = [
    "ConnectionFailed",
    "HttpTransport",
    "PendingResponse",
    "Response",
    "StreamResponse",
    "UnixTransport",
    "parse_envelope",
    "raise_for_envelope",
]

_BLOCK = 1 << 16


class ConnectionFailed(CoveError):
    """coved could not be reached over its socket.

    ``reason`` is one of ``"missing"`` (no socket file), ``"refused"`` (a
    socket file nobody listens on), ``"denied"`` (no permission) or
    ``"closed"`` (the daemon hung up mid-request). The first two mean the
    daemon is not running, which is when the CLI starts it.
    """

    status = 503

    def __init__(self, message: str, socket_path: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.socket_path = socket_path
        self.reason = reason

    @property
    def not_running(self) -> bool:
        return self.reason in ("missing", "refused")


class Response:
    """A whole HTTP response: status, headers (lower-case names), body bytes."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        return _json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


class StreamResponse:
    """A response whose body is read as it arrives (``logs --follow``).

    Iterate for chunks; ``close()`` drops the connection (it is never reused,
    the server may still be writing to it).
    """

    def __init__(self, resp: _Reply, conn: _Connection) -> None:
        self.status = resp.status
        self.headers = {k.lower(): v for k, v in resp.getheaders()}
        self._resp = resp
        self._conn = conn

    def __iter__(self) -> Iterator[bytes]:
        try:
            while True:
                chunk = self._resp.read1(_BLOCK)
                if not chunk:
                    return
                yield chunk
        finally:
            self.close()

    def read(self) -> bytes:
        try:
            return self._resp.read()
        finally:
            self.close()

    def close(self) -> None:
        self._resp.close()
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HTTPError(OSError):
    """The peer broke HTTP/1.1 (a bad status line, header or chunk)."""


class _Reply:
    """One response read off a ``_Connection``: status, headers, body."""

    def __init__(self, rfile: Any, method: str) -> None:
        line = rfile.readline(65537)
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise HTTPError(f"bad status line {line[:80]!r}")
        self.status = int(parts[1])
        self._headers: list[tuple[str, str]] = []
        while True:
            h = rfile.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            self._headers.append((name.strip(), value.strip()))
        hdrs = {k.lower(): v for k, v in self._headers}
        self._rfile = rfile
        self._chunked = "chunked" in hdrs.get("transfer-encoding", "").lower()
        length = hdrs.get("content-length")
        self._left: int | None = int(length) if length is not None and not self._chunked else None
        if method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
            self._left = 0
            self._chunked = False
        self._chunk_left = 0
        self._done = self._left == 0
        conn_hdr = hdrs.get("connection", "").lower()
        self.will_close = conn_hdr == "close" or (self._left is None and not self._chunked)

    def getheaders(self) -> list[tuple[str, str]]:
        return list(self._headers)

    def read1(self, n: int = _BLOCK) -> bytes:
        """Up to ``n`` bytes of body; b"" at its end."""
        if self._done:
            return b""
        if self._chunked:
            if self._chunk_left == 0:
                size_line = self._rfile.readline(1024)
                try:
                    self._chunk_left = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise HTTPError(f"bad chunk size {size_line[:40]!r}") from None
                if self._chunk_left == 0:
                    while self._rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    self._done = True
                    return b""
            data = self._rfile.read1(min(n, self._chunk_left))
            if not data:
                raise HTTPError("connection closed inside a chunk")
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                self._rfile.readline(3)
            return bytes(data)
        want = n if self._left is None else min(n, self._left)
        data = self._rfile.read1(want)
        if self._left is not None:
            if not data:
                raise HTTPError("connection closed before the body ended")
            self._left -= len(data)
            self._done = self._left == 0
        elif not data:
            self._done = True
        return bytes(data)

    def read(self) -> bytes:
        out = bytearray()
        while True:
            chunk = self.read1(_BLOCK)
            if not chunk:
                return bytes(out)
            out += chunk

    def close(self) -> None:
        self._done = True


class _SocketReader(io.RawIOBase):
    """``socket.makefile("rb")``'s raw layer, for sockets of ``_socket``
    (which have no ``makefile``) as well as ``socket``'s and ``ssl``'s."""

    def __init__(self, sock: socket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        return int(self._sock.recv_into(b))


class _Connection:
    """HTTP/1.1 on one socket (unix or TLS), opened on first use by ``opener``."""

    def __init__(self, opener: Callable[[float | None], socket],
                 timeout: float | None) -> None:
        self._opener = opener
        self.timeout = timeout
        self.sock: socket | None = None
        self._rfile: Any = None

    def connect(self) -> None:
        self.sock = self._opener(self.timeout)
        self._rfile = io.BufferedReader(_SocketReader(self.sock), _BLOCK)

    def request(self, method: str, path: str, body: Any = None,
                headers: Mapping[str, str] | None = None) -> None:
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        hdrs = {"Host": "localhost", "Accept-Encoding": "identity"}
        hdrs.update(headers or {})
        stream = body is not None and not isinstance(body, (bytes, bytearray, memoryview))
        if body is not None and not stream:
            hdrs["Content-Length"] = str(len(body))
        elif stream and "Content-Length" not in hdrs:
            hdrs["Transfer-Encoding"] = "chunked"
        elif body is None and method in ("POST", "PUT", "PATCH"):
            hdrs["Content-Length"] = "0"
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        if body is not None and not stream:
            self.sock.sendall(head.encode("latin-1") + bytes(body))
            return
        self.sock.sendall(head.encode("latin-1"))
        if stream:
            chunked = hdrs.get("Transfer-Encoding") == "chunked"
            while True:
                block = body.read(_BLOCK)
                if not block:
                    break
                if chunked:
                    self.sock.sendall(b"%x\r\n" % len(block) + block + b"\r\n")
                else:
                    self.sock.sendall(block)
            if chunked:
                self.sock.sendall(b"0\r\n\r\n")

    def getresponse(self, method: str = "GET") -> _Reply:
        return _Reply(self._rfile, method)

    def close(self) -> None:
        if self._rfile is not None:
            self._rfile.close()
            self._rfile = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def open_unix_socket(path: str, timeout: float | None = None,
                     name: str = "coved") -> socket:
    """Connect to ``path``; ConnectionFailed names the socket and the reason."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise _connect_error(path, e, name) from None
    return sock


def _connect_error(path: str, e: OSError, name: str = "coved") -> ConnectionFailed:
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        return ConnectionFailed(f"{name} is not running: no socket at {path}", path, "missing")
    if e.errno == errno.ECONNREFUSED:
        return ConnectionFailed(f"{name} is not running: nothing listens on {path}",
                                path, "refused")
    if e.errno in (errno.EACCES, errno.EPERM):
        return ConnectionFailed(f"permission denied on {path} (run as root?)", path, "denied")
    return ConnectionFailed(f"cannot connect to {name} at {path}: {e.strerror or e}", path,
                            "refused")


class _ProgressReader:
    """Feeds a file to the connection in blocks and reports bytes sent."""

    def __init__(self, f: BinaryIO, total: int | None,
                 progress: Callable[[int, int | None], None]) -> None:
        self._f = f
        self._total = total
        self._sent = 0
        self._progress = progress

    def read(self, n: int = _BLOCK) -> bytes:
        data = self._f.read(n)
        self._sent += len(data)
        self._progress(self._sent, self._total)
        return data


def _length_of(f: Any) -> int | None:
    try:
        return int(os.fstat(f.fileno()).st_size - f.tell())
    except (AttributeError, OSError, ValueError):
        pass
    try:
        pos = f.tell()
        end = f.seek(0, os.SEEK_END)
        f.seek(pos)
        return int(end - pos)
    except (AttributeError, OSError, ValueError):
        return None


class HttpTransport(ABC):
    """Sends HTTP requests to one server, reusing idle connections.

    Thread-safe: each request takes an idle connection (or opens one) and
    gives it back when the response has been read whole. Subclasses say how
    to open a socket (``open_socket``) and name the server in messages
    (``endpoint``, ``name``).
    """

    endpoint = ""
    name = "the server"
    # the LXD project every request is in (``?project=``, added here once for
    # every call, as LXD's Go client does); None or "default": none added
    project: str | None = None

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout
        self._idle: list[_Connection] = []
        self._lock = allocate_lock()

    @abstractmethod
    def open_socket(self, timeout: float | None = None) -> socket:
        """A fresh raw socket to the server (websockets use their own).

        Raises:
            ConnectionFailed: the server cannot be reached.
        """

    @property
    def socket_path(self) -> str:
        return self.endpoint

    def _new(self) -> _Connection:
        return _Connection(self.open_socket, self.timeout)

    # -- connections --------------------------------------------------------
    def _take(self) -> tuple[_Connection, bool]:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if _alive(conn):
                    return conn, True
                conn.close()
        return self._new(), False

    def _give(self, conn: _Connection) -> None:
        with self._lock:
            self._idle.append(conn)

    def connect(self) -> None:
        """Open one connection now and keep it for the next request.

        Raises:
            ConnectionFailed: nobody answers on the socket.
        """
        conn = self._new()
        conn.connect()
        self._give(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- requests -----------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None,
                headers: Mapping[str, str] | None = None, *,
                progress: Callable[[int, int | None], None] | None = None) -> Response:
        """Send one request and return its whole ``Response``.

        ``body`` is a JSON-able dict or list (sent as JSON), bytes, a binary
        file-like object (streamed; ``progress(sent, total)`` is called per
        block) or None.

        Raises:
            ConnectionFailed: the daemon cannot be reached or hung up.
        """
        resp, conn = self._exchange(method, path, body, headers, progress)
        try:
            data = resp.read()
        except (OSError, HTTPError) as e:
            conn.close()
            raise ConnectionFailed(f"{self.name} hung up while answering {method} {path}: {e}",
                                   self.endpoint, "closed") from None
        result = Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        if resp.will_close:
            conn.close()
        else:
            self._give(conn)
        return result

    def begin(self, method: str, path: str) -> PendingResponse:
        """Send a bodiless request now and read its answer later: ``fileno()``
        polls readable when the answer starts, ``finish()`` reads it whole.
        For waiting on a long poll (``/operations/ID/wait``) in a loop that
        does other work meanwhile. Raises as ``request`` does.
        """
        path = with_project(path, self.project)
        conn, reused = self._take()
        while True:
            try:
                conn.request(method, path)
                break
            except OSError as e:
                conn.close()
                if not reused:  # a reused one may have been closed by the server: once more
                    raise ConnectionFailed(f"{self.name} hung up during {method} {path}: {e}",
                                           self.endpoint, "closed") from None
                conn, reused = self._new(), False
        return PendingResponse(self, conn, method, path)

    def stream(self, method: str, path: str,
               headers: Mapping[str, str] | None = None) -> StreamResponse:
        """Send a bodiless request; read its answer as it arrives.

        The connection is not reused. Raises as ``request`` does.
        """
        resp, conn = self._exchange(method, path, None, headers, None)
        return StreamResponse(resp, conn)

    def _exchange(self, method: str, path: str, body: Any, headers: Mapping[str, str] | None,
                  progress: Callable[[int, int | None], None] | None,
                  ) -> tuple[_Reply, _Connection]:
        path = with_project(path, self.project)
        hdrs = dict(headers or {})
        replayable = True
        if isinstance(body, (dict, list)):
            body = _json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif body is not None and not isinstance(body, (bytes, bytearray, memoryview)):
            replayable = False
            total = _length_of(body)
            if total is not None:
                hdrs["Content-Length"] = str(total)
            if progress is not None:
                body = _ProgressReader(body, total, progress)
        conn, reused = self._take()
        try:
            resp = self._send(conn, method, path, body, hdrs)
        except ConnectionFailed as e:
            if not (reused and replayable and e.reason == "closed"):
                raise
            conn = self._new()
            resp = self._send(conn, method, path, body, hdrs)
        return resp, conn

    def _send(self, conn: _Connection, method: str, path: str, body: Any,
              hdrs: dict[str, str]) -> _Reply:
        try:
            conn.request(method, path, body=body, headers=hdrs)
            return conn.getresponse(method)
        except ConnectionFailed:
            conn.close()
            raise
        except (OSError, HTTPError) as e:
            conn.close()
            if isinstance(e, TimeoutError):
                raise ConnectionFailed(f"{self.name} did not answer {method} {path} in time",
                                       self.endpoint, "timeout") from None
            raise ConnectionFailed(f"{self.name} hung up during {method} {path}: {e}",
                                   self.endpoint, "closed") from None


class PendingResponse:
    """A request sent by ``HttpTransport.begin``, its answer not read yet."""

    def __init__(self, transport: HttpTransport, conn: _Connection, method: str,
                 path: str) -> None:
        self._transport = transport
        self._conn = conn
        self._method = method
        self._path = path

    def fileno(self) -> int:
        assert self._conn.sock is not None
        return int(self._conn.sock.fileno())

    def finish(self) -> Response:
        """Read the answer (blocks until it is whole); the connection goes
        back to the transport for reuse. Raises ConnectionFailed."""
        conn, method, path = self._conn, self._method, self._path
        try:
            resp = conn.getresponse(method)
            data = resp.read()
        except (OSError, HTTPError) as e:
            conn.close()
            raise ConnectionFailed(f"{self._transport.name} hung up while answering "
                                   f"{method} {path}: {e}", self._transport.endpoint,
                                   "closed") from None
        result = Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        if resp.will_close:
            conn.close()
        else:
            self._transport._give(conn)
        return result

    def close(self) -> None:
        """Give up on the answer (the connection is dropped, not reused)."""
        self._conn.close()


def with_project(path: str, project: str | None) -> str:
    """``path`` in ``project``: ``?project=`` added to an API path that has
    none (an explicit one, as in ``used_by`` URLs, is kept)."""
    if not project or project == "default" or not path.startswith("/1.0"):
        return path
    _, sep, query = path.partition("?")
    if any(p.partition("=")[0] == "project" for p in query.split("&")):
        return path
    if not project.replace("-", "").replace(".", "").isalnum():
        from cove.client._url import quote

        project = quote(project, safe="")
    return f"{path}{'&' if sep else '?'}project={project}"


class UnixTransport(HttpTransport):
    """HTTP over a unix socket (coved's, or LXD's ``/var/lib/lxd/unix.socket``)."""

    name = "coved"

    def __init__(self, socket_path: str, timeout: float | None = None, *,
                 name: str = "coved") -> None:
        super().__init__(timeout)
        self.endpoint = socket_path
        self.name = name

    def open_socket(self, timeout: float | None = None) -> socket:
        """A fresh raw socket to the daemon (websockets use their own)."""
        return open_unix_socket(self.endpoint, timeout, self.name)


def _alive(conn: _Connection) -> bool:
    """An idle keep-alive connection is readable only if the peer closed it."""
    sock = conn.sock
    if sock is None:
        return True  # never connected: it will connect on use
    try:
        p = select.poll()  # not select.select: a process may hold fds above 1024
        p.register(sock, select.POLLIN)
        readable = p.poll(0)
    except (OSError, ValueError):
        return False
    return not readable


# -- LXD's envelope -------------------------------------------------------------

def parse_envelope(resp: Response) -> dict[str, Any]:
    """Decode LXD's response envelope, raising its error if it is one.

    Raises:
        CoveError: the subclass bound to ``error_code`` for ``type: error``
            (or to the HTTP status when the body is not an envelope).
    """
    try:
        env = _json.loads(resp.body) if resp.body else None
    except ValueError:
        env = None
    if not isinstance(env, dict) or "type" not in env:
        if resp.status >= 400:
            text = resp.body.decode("utf-8", "replace").strip()
            raise error_for_status(resp.status, text or f"HTTP {resp.status}")
        raise InternalError(f"coved sent a response that is not an LXD envelope "
                            f"(HTTP {resp.status})")
    raise_for_envelope(env, resp.status)
    return env


def raise_for_envelope(env: dict[str, Any], http_status: int = 0) -> None:
    if env.get("type") == "error" or http_status >= 400:
        code = env.get("error_code") or http_status or 500
        raise error_for_status(int(code), str(env.get("error") or f"HTTP {code}"))
