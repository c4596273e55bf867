"""Route netlink (rtnetlink) messages, built and read with ``struct``.

Design note: cove asks the kernel a handful of things (dump links, addresses
and routes; make a bridge or a veth pair; set a link's alias, state and MTU;
add and remove an address; a default route). pyroute2 did that before, and
importing it cost coved 0.4-0.9 s of every start (measured under load: more
than all the rest of the startup of an empty root), paid again by every
test that starts a coved. The messages are fixed C structs followed by
type-length-value attributes (``linux/rtnetlink.h``, ``linux/if_link.h``,
``linux/if_addr.h``), so they are written here directly.

A ``Socket`` is one ``NETLINK_ROUTE`` socket, opened per call (cheap: no
thread, nothing shared between coved's worker threads, nothing left for the
garbage collector). Requests are sent in one batch and every ack is read;
a refused request raises ``NetlinkError`` carrying the kernel's errno.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from typing import Self

__all__ = [
    "IFF_UP", "NLM_F_ACK", "NLM_F_CREATE", "NLM_F_DUMP", "NLM_F_EXCL", "NLM_F_REQUEST",
    "RTM_DELADDR", "RTM_DELLINK", "RTM_GETADDR", "RTM_GETLINK", "RTM_GETROUTE",
    "RTM_NEWADDR", "RTM_NEWLINK", "RTM_NEWROUTE",
    "NetlinkError", "Socket", "attr", "attr_str", "attr_u8", "attr_u32", "attrs_of",
    "ifaddrmsg", "ifinfomsg", "message", "rtmsg", "string_of",
]

NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
IFF_UP = 0x1

_HDR = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table,
#                                       protocol, scope, type, flags
_ATTR = struct.Struct("=HH")  # rtattr: length, type
_RECV = 1 << 18


class NetlinkError(OSError):
    """The kernel refused a request; ``code`` (and ``errno``) is its errno."""

    def __init__(self, code: int) -> None:
        super().__init__(code, os.strerror(code))
        self.code = code


def _pad(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to four bytes (nest by passing joined attributes)."""
    n = _ATTR.size + len(payload)
    return _ATTR.pack(n, kind) + payload + b"\0" * (_pad(n) - n)


def attr_str(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def attr_u8(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=B", value))


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def ifinfomsg(index: int = 0, flags: int = 0, change: int = 0, family: int = 0) -> bytes:
    return _IFINFO.pack(family, 0, index, flags, change)


def ifaddrmsg(family: int, prefixlen: int, index: int, flags: int = 0, scope: int = 0) -> bytes:
    return _IFADDR.pack(family, prefixlen, flags, scope, index)


def rtmsg(family: int, *, dst_len: int = 0, table: int = 0, protocol: int = 0,
          scope: int = 0, rtype: int = 0) -> bytes:
    return _RTMSG.pack(family, dst_len, 0, 0, table, protocol, scope, rtype, 0)


def message(mtype: int, flags: int, seq: int, body: bytes) -> bytes:
    """One netlink message: the header, then ``body`` (a struct and its attributes)."""
    return _HDR.pack(_HDR.size + len(body), mtype, flags, seq, 0) + body


def attrs_of(data: bytes, start: int = 0) -> dict[int, bytes]:
    """The attributes in ``data[start:]`` by type (payloads; nested ones raw)."""
    out: dict[int, bytes] = {}
    off = start
    while off + _ATTR.size <= len(data):
        n, kind = _ATTR.unpack_from(data, off)
        if n < _ATTR.size or off + n > len(data):
            break
        out.setdefault(kind & 0x3FFF, data[off + _ATTR.size:off + n])  # less NLA_F_NESTED
        off += _pad(n)
    return out


def string_of(payload: bytes | None) -> str:
    """A string attribute's text ('' when absent)."""
    return payload.split(b"\0", 1)[0].decode(errors="replace") if payload else ""


def _error(data: bytes, off: int) -> int:
    err: int = struct.unpack_from("=i", data, off + _HDR.size)[0]
    return -err


class Socket:
    """One ``NETLINK_ROUTE`` socket (a context manager that closes it). Not
    shared between threads. ``sock`` may be one opened elsewhere (inside a
    container's network namespace)."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.socket(socket.AF_NETLINK,
                                          socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        self.sock.bind((0, 0))
        self._seq = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def seq(self) -> int:
        self._seq += 1
        return self._seq

    def request(self, *msgs: tuple[int, int, bytes]) -> list[int]:
        """Send ``(type, flags, body)`` requests in one batch, each with
        ``NLM_F_REQUEST | NLM_F_ACK`` added, and read every ack: the errnos
        of those refused, in order (empty when all were done)."""
        out = []
        for mtype, flags, body in msgs:
            out.append(message(mtype, flags | NLM_F_REQUEST | NLM_F_ACK, self.seq(), body))
        self.sock.send(b"".join(out))
        errs, left = [], len(out)
        while left > 0:
            data = self.sock.recv(_RECV)
            off = 0
            while off + _HDR.size <= len(data):
                length, mtype = struct.unpack_from("=IH", data, off)
                if mtype == _NLMSG_ERROR:  # an ack (0) or an error (-errno)
                    err = _error(data, off)
                    if err:
                        errs.append(err)
                    left -= 1
                if length < _HDR.size:
                    break
                off += _pad(length)
        return errs

    def do(self, mtype: int, flags: int, body: bytes) -> None:
        """One request, acked.

        Raises:
            NetlinkError: the kernel refused it.
        """
        errs = self.request((mtype, flags, body))
        if errs:
            raise NetlinkError(errs[0])

    def get(self, mtype: int, body: bytes) -> bytes:
        """A request of one object (not a dump): the reply's payload.

        Raises:
            NetlinkError: the kernel refused it (ENODEV: no such link).
        """
        self.sock.send(message(mtype, NLM_F_REQUEST, self.seq(), body))
        data = self.sock.recv(_RECV)
        length, rtype = struct.unpack_from("=IH", data)
        if rtype == _NLMSG_ERROR:
            raise NetlinkError(_error(data, 0) or errno.EPROTO)
        return data[_HDR.size:length]

    def dump(self, mtype: int, body: bytes) -> list[tuple[int, bytes]]:
        """A dump request: every reply as ``(type, payload)``, the payload
        being the struct and its attributes (the header left off).

        Raises:
            NetlinkError: the kernel refused it.
        """
        self.sock.send(message(mtype, NLM_F_REQUEST | NLM_F_DUMP, self.seq(), body))
        out: list[tuple[int, bytes]] = []
        while True:
            data = self.sock.recv(_RECV)
            off = 0
            while off + _HDR.size <= len(data):
                length, rtype = struct.unpack_from("=IH", data, off)
                if rtype == _NLMSG_DONE:
                    return out
                if rtype == _NLMSG_ERROR:
                    err = _error(data, off)
                    if err:
                        raise NetlinkError(err)
                    return out
                if length < _HDR.size:
                    return out
                out.append((rtype, data[off + _HDR.size:off + length]))
                off += _pad(length)

    # -- readers of dumped structs ---------------------------------------------------------
    @staticmethod
    def link_fields(payload: bytes) -> tuple[int, dict[int, bytes]]:
        """An RTM_NEWLINK payload: (index, attributes)."""
        _, _, index, _, _ = _IFINFO.unpack_from(payload)
        return index, attrs_of(payload, _IFINFO.size)

    @staticmethod
    def addr_fields(payload: bytes) -> tuple[int, int, int, dict[int, bytes]]:
        """An RTM_NEWADDR payload: (family, prefixlen, index, attributes)."""
        family, plen, _, _, index = _IFADDR.unpack_from(payload)
        return family, plen, index, attrs_of(payload, _IFADDR.size)

    @staticmethod
    def route_fields(payload: bytes) -> tuple[int, int, dict[int, bytes]]:
        """An RTM_NEWROUTE payload: (family, dst_len, attributes)."""
        family, dst_len = struct.unpack_from("=BB", payload)
        return family, dst_len, attrs_of(payload, _RTMSG.size)
