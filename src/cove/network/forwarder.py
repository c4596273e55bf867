"""cove's forwarder: one process per non-NAT ``proxy`` device, as LXD's
``forkproxy`` is. Run as a script (``python -I -S forwarder.py SPEC``, the
standard library only, so it starts in ~15 ms).

Design note: the process makes its listening sockets in the listen side's
network namespace (and mount namespace for a unix socket), then enters the
connect side's namespaces for good, so every ``connect()`` it makes from
then on (to ``127.0.0.1:80`` of the container, or a unix socket path
resolved inside the container's root by the kernel) is the other side's,
and the listening sockets stay bound where they were made. Bytes move with
``splice(2)`` through a 1 MiB pipe per direction (no copy into Python), on
a level-triggered epoll loop; UDP is relayed datagram by datagram with one
connected socket per client address (closed after 120 s idle).

Lifetime: it exits on SIGTERM, and by itself when the instance's init ends
(it polls a pidfd of it), so it never outlives its container even when
coved is dead; it does outlive coved, like conmon, and the next coved
adopts it by the ``--cove-proxy=`` tag in its argv. A listening unix socket
file it made on the host is removed when it exits.

It imports nothing of cove (``-I -S``: no site, no script directory on
``sys.path``), so it makes its one raw syscall (``setns``) itself rather
than through ``cove.host.syscalls``, and it imports nothing after entering
the container's mount namespace (where a file could be planted).

Memory: one runs per proxy device, so it takes the standard library's C
modules (``_socket``, ``_signal``, ``_json``'s scanner) rather than their
Python wrappers (``socket`` pulls in ``enum``, ``selectors`` and ``io``;
``json`` pulls in ``re``): 3.4 MB of PSS at import instead of 4.9
(Python 3.11), measured by ``bench/spawn.py`` per user.

Protocol with coved: the spec is JSON in the last argument; the process
writes one JSON line to the inherited fd ``status_fd`` once it listens
(``{"ok": true}``) or failed (``{"errno": N, "error": "..."}``), then
closes it. Exit status 0 after a clean stop.
"""

from __future__ import annotations

import _json
import _signal as signal
import _socket as socket
import ctypes
import errno
import fcntl
import os
import select
import stat
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["main"]

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
PIPE_SIZE = 1 << 20
UDP_IDLE = 120.0
SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
ROUNDS = 16  # splices per wakeup per direction before others get a turn

IN, OUT, ERR = select.EPOLLIN, select.EPOLLOUT, select.EPOLLERR | select.EPOLLHUP


class Failed(Exception):
    """Setup failed for a reason that is not an errno (a file in the way)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.errno = code


_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int, kind: int) -> None:
    if _libc.setns(fd, kind) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


class Pipe:
    """One direction of a connection: src -> kernel pipe -> dst."""

    __slots__ = ("done", "dst", "eof", "pending", "r", "src", "w")

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src, self.dst = src, dst
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(self.w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # above fs.pipe-max-size: the default 64 KiB still works
        self.pending = 0
        self.eof = False
        self.done = False

    def pump(self) -> None:
        """Move what can move now. Raises OSError on a broken connection."""
        for _ in range(ROUNDS):
            if self.pending:
                try:
                    n = os.splice(self.r, self.dst.fileno(), self.pending, flags=SPLICE_FLAGS)
                except BlockingIOError:
                    return
                self.pending -= n
                continue
            if self.eof:
                if not self.done:
                    self.done = True
                    try:
                        self.dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                return
            try:
                n = os.splice(self.src.fileno(), self.w, PIPE_SIZE, flags=SPLICE_FLAGS)
            except BlockingIOError:
                return
            if n == 0:
                self.eof = True
            self.pending += n

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


class Conn:
    """An accepted client and its connection to the target."""

    __slots__ = ("a", "b", "connecting", "down", "header", "up")

    def __init__(self, a: socket.socket, b: socket.socket, header: bytes) -> None:
        self.a, self.b = a, b
        self.connecting = True
        self.header = header
        self.up: Pipe | None = None
        self.down: Pipe | None = None

    def wants(self, s: socket.socket) -> int:
        if self.connecting:
            return OUT if s is self.b else 0
        assert self.up is not None and self.down is not None
        ev = 0
        for p in (self.up, self.down):
            if p.src is s and not p.eof and not p.pending:
                ev |= IN
            if p.dst is s and p.pending:
                ev |= OUT
        return ev

    def finished(self) -> bool:
        return (not self.connecting and self.up is not None and self.down is not None
                and self.up.done and self.down.done)


class Forwarder:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.listen = spec["listen"]
        self.connect = spec["connect"]
        self.ep = select.epoll()
        self.listeners: dict[int, tuple[socket.socket, int]] = {}  # fd -> (sock, target port)
        self.udp: dict[int, tuple[socket.socket, int]] = {}
        self.sessions: dict[tuple[int, object], tuple[socket.socket, float]] = {}
        self.session_fds: dict[int, tuple[int, object]] = {}
        self.conns: dict[int, Conn] = {}
        self.registered: dict[int, int] = {}
        self.unlink: tuple[int, str] | None = None
        self.pidfd = -1

    # -- setup ------------------------------------------------------------------------
    def setup(self) -> None:
        spec = self.spec
        pid = int(spec["pid"])
        self.pidfd = os.pidfd_open(pid)
        ns: dict[tuple[str, str], int] = {}
        for side, proc in (("host", "self"), ("ct", str(pid))):
            for kind in ("net", "mnt"):
                ns[side, kind] = os.open(f"/proc/{proc}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
        listen_side, connect_side = ("ct", "host") if spec["bind"] == "instance" \
            else ("host", "ct")
        in_mnt = "host"
        if listen_side == "ct":
            setns(ns["ct", "net"], CLONE_NEWNET)
            if self.listen["proto"] == "unix" and not self.listen["path"].startswith("@"):
                setns(ns["ct", "mnt"], CLONE_NEWNS)
                in_mnt = "ct"
        self._listen(host_side=listen_side == "host")
        setns(ns[connect_side, "net"], CLONE_NEWNET)
        if self.connect["proto"] == "unix" and not self.connect["path"].startswith("@"):
            if in_mnt != connect_side:
                setns(ns[connect_side, "mnt"], CLONE_NEWNS)
        elif in_mnt != "host":
            setns(ns["host", "mnt"], CLONE_NEWNS)
        for fd in ns.values():
            os.close(fd)
        if spec.get("security_gid"):
            os.setgroups([])
            os.setgid(int(spec["security_gid"]))
        if spec.get("security_uid"):
            os.setuid(int(spec["security_uid"]))
        self.ep.register(self.pidfd, IN)

    def _listen(self, host_side: bool) -> None:
        lst = self.listen
        cports = self.connect.get("ports") or [0]
        if lst["proto"] == "unix":
            path = lst["path"]
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
                              | socket.SOCK_CLOEXEC)
            if path.startswith("@"):
                s.bind("\0" + path[1:])
            else:
                self._bind_file(s, path, host_side)
            s.listen(128)
            self._add_listener(s, cports[0], IN)
            return
        kind = socket.SOCK_STREAM if lst["proto"] == "tcp" else socket.SOCK_DGRAM
        for i, port in enumerate(lst["ports"]):
            s = socket.socket(socket.AF_INET, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((lst["host"], port))
            target = cports[i] if len(cports) > 1 else cports[0]
            if kind == socket.SOCK_STREAM:
                s.listen(128)
                self._add_listener(s, target, IN)
            else:
                self.udp[s.fileno()] = (s, target)
                self.ep.register(s.fileno(), IN)

    def _bind_file(self, s: socket.socket, path: str, host_side: bool) -> None:
        parent, name = os.path.split(path)
        dirfd = os.open(parent or "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode):
                os.close(dirfd)
                raise Failed(errno.EEXIST, f"{path} exists and is not a socket")
            os.unlink(name, dir_fd=dirfd)  # a socket left by a killed forwarder
        s.bind(path)
        os.chmod(path, int(self.spec.get("mode", 0o644)))
        os.chown(path, int(self.spec.get("uid", 0)), int(self.spec.get("gid", 0)))
        if host_side:
            self.unlink = (dirfd, name)  # removed at exit, whichever namespace we are in
        else:
            os.close(dirfd)  # a directory fd in the container would pin its mounts

    def _add_listener(self, s: socket.socket, target: int, ev: int) -> None:
        self.listeners[s.fileno()] = (s, target)
        self.ep.register(s.fileno(), ev)

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        last_sweep = time.monotonic()
        while True:
            timeout = 30.0 if self.sessions else -1
            for fd, ev in self.ep.poll(timeout):
                if fd == self.pidfd:
                    return  # the instance's init ended
                if fd in self.listeners:
                    self._accept(fd)
                elif fd in self.conns:
                    self._on_conn(fd, ev)
                elif fd in self.udp:
                    self._udp_in(fd)
                elif fd in self.session_fds:
                    self._udp_back(fd)
            if self.sessions and time.monotonic() - last_sweep > 30:
                last_sweep = time.monotonic()
                self._sweep_udp()

    def _accept(self, fd: int) -> None:
        lsock, port = self.listeners[fd]
        while True:
            try:
                # _socket's accept (socket.socket.accept wraps it the same way)
                fd, peer = lsock._accept()  # type: ignore[attr-defined]
                a = socket.socket(lsock.family, socket.SOCK_STREAM, 0, fd)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # EMFILE and friends: the client waits in the backlog
            a.setblocking(False)
            if a.family == socket.AF_INET:
                a.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as Go's default
            header = self._header(a, peer) if self.spec.get("proxy_protocol") else b""
            try:
                b = self._dial(port)
            except OSError:
                a.close()
                continue
            c = Conn(a, b, header)
            self.conns[a.fileno()] = c
            self.conns[b.fileno()] = c
            self._update(c)

    def _header(self, a: socket.socket, peer: object) -> bytes:
        # LXD's forkproxy sends the PROXY protocol's v1 (text) header.
        if a.family != socket.AF_INET:
            return b"PROXY UNKNOWN\r\n"
        src = peer if isinstance(peer, tuple) else a.getpeername()
        dst = a.getsockname()
        return f"PROXY TCP4 {src[0]} {dst[0]} {src[1]} {dst[1]}\r\n".encode()

    def _dial(self, port: int) -> socket.socket:
        c = self.connect
        if c["proto"] == "unix":
            b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
                              | socket.SOCK_CLOEXEC)
            addr: object = "\0" + c["path"][1:] if c["path"].startswith("@") else c["path"]
        else:
            b = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
                              | socket.SOCK_CLOEXEC)
            # a relay must not hold back a short write (forkproxy's Go sets it too)
            b.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            addr = (c["host"], port)
        err = b.connect_ex(addr)  # type: ignore[arg-type]
        if err not in (0, errno.EINPROGRESS):
            b.close()
            raise OSError(err, os.strerror(err))
        return b

    def _on_conn(self, fd: int, ev: int) -> None:
        c = self.conns[fd]
        try:
            if c.connecting:
                err = c.b.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
                c.connecting = False
                if c.header:
                    c.b.sendall(c.header)  # a few bytes into an empty send buffer
                c.up, c.down = Pipe(c.a, c.b), Pipe(c.b, c.a)
            assert c.up is not None and c.down is not None
            c.up.pump()
            c.down.pump()
        except OSError:
            self._close(c)
            return
        if c.finished():
            self._close(c)
        else:
            self._update(c)

    def _update(self, c: Conn) -> None:
        for s in (c.a, c.b):
            fd = s.fileno()
            want = c.wants(s)
            have = self.registered.get(fd)
            if have is None:
                self.ep.register(fd, want)
            elif have != want:
                self.ep.modify(fd, want)
            self.registered[fd] = want

    def _close(self, c: Conn) -> None:
        for s in (c.a, c.b):
            fd = s.fileno()
            if self.registered.pop(fd, None) is not None:
                self.ep.unregister(fd)
            self.conns.pop(fd, None)
            s.close()
        for p in (c.up, c.down):
            if p is not None:
                p.close()

    # -- udp -----------------------------------------------------------------------------
    def _udp_in(self, fd: int) -> None:
        lsock, port = self.udp[fd]
        now = time.monotonic()
        while True:
            try:
                data, peer = lsock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            key = (fd, peer)
            sess = self.sessions.get(key)
            if sess is None:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK
                                  | socket.SOCK_CLOEXEC)
                try:
                    s.connect((self.connect["host"], port))
                except OSError:
                    s.close()
                    continue
                self.session_fds[s.fileno()] = key
                self.ep.register(s.fileno(), IN)
                sess = (s, now)
            self.sessions[key] = (sess[0], now)
            try:
                sess[0].send(data)
            except OSError:
                pass  # UDP: a datagram may be lost

    def _udp_back(self, fd: int) -> None:
        key = self.session_fds[fd]
        s, _ = self.sessions[key]
        lsock, _ = self.udp[key[0]]
        self.sessions[key] = (s, time.monotonic())
        while True:
            try:
                data = s.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # ICMP unreachable from the target: nothing to relay
            try:
                lsock.sendto(data, key[1])  # type: ignore[call-overload]
            except OSError:
                pass

    def _sweep_udp(self) -> None:
        now = time.monotonic()
        for key, (s, used) in list(self.sessions.items()):
            if now - used > UDP_IDLE:
                del self.sessions[key]
                del self.session_fds[s.fileno()]
                self.ep.unregister(s.fileno())
                s.close()

    def cleanup(self) -> None:
        if self.unlink is not None:
            dirfd, name = self.unlink
            try:
                os.unlink(name, dir_fd=dirfd)
            except OSError:
                pass
            self.unlink = None


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


class _JsonContext:
    """What ``_json.make_scanner`` reads off ``json.JSONDecoder`` (JSON's
    plain rules, no hooks)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float
    memo: dict[str, str] = {}  # noqa: RUF012 - the scanner's own cache of keys


def parse_spec(text: str) -> dict[str, Any]:
    """The JSON object ``text``, parsed by the C scanner ``json`` uses.

    Raises:
        ValueError: not one JSON object.
    """
    try:
        # typeshed knows only json.JSONDecoder as the scanner's context
        obj, end = _json.make_scanner(_JsonContext())(text, 0)  # type: ignore[arg-type]
    except StopIteration:
        raise ValueError("the spec is no JSON") from None
    if not isinstance(obj, dict) or text[end:].strip():
        raise ValueError("the spec is no JSON object")
    return obj


def main(argv: list[str]) -> int:
    spec = parse_spec(argv[-1])
    status = int(spec["status_fd"])
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    fwd = Forwarder(spec)
    try:
        try:
            fwd.setup()
        except (OSError, Failed) as e:
            code = e.errno or errno.EIO
            text = _json.encode_basestring_ascii(str(e))
            os.write(status, f'{{"errno": {int(code)}, "error": {text}}}\n'.encode())
            return 1
        os.write(status, b'{"ok": true}\n')
        os.close(status)
        fwd.run()
        return 0
    finally:
        fwd.cleanup()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
