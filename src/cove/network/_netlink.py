"""Links, addresses and routes through netlink (pyroute2), host and container side.

Design note (measured here): one veth into a container's namespace, on the
bridge and up, is one netlink request (~1.3 ms, most of it the kernel);
addresses, links and the default route inside take four more (~2.5 ms).
pyroute2 is imported on first use, so nothing on the CLI's path pays for it.

The container side needs a netlink socket *in* the container's network
namespace. pyroute2's own netns support forks a helper process for that,
which a threaded daemon should not do on its hot path; instead the calling
thread enters the namespace with ``setns(2)`` just long enough to open the
socket (a socket stays in the namespace it was made in) and returns at
once. ``setns`` with ``CLONE_NEWNET`` only moves the calling thread.

Ownership: every bridge cove makes carries an ``ifalias`` of
``cove:<root id>:<network>``; veths are named ``cv<root id><n>``. Reconcile
only ever removes links that carry those marks.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_network,
)
from pathlib import Path
from typing import Any

from cove.model.errors import Conflict, CoveError, InternalError

__all__ = ["LinkExists", "Netlink", "NicSetup", "br_netfilter_active", "parse_net_dev"]

_CLONE_NEWNET = 0x40000000
_IFA_F_NODAD = 0x02
_BRIDGE_MAX_PORTS = 1023  # the kernel's BR_MAX_PORTS (1,024) less port 0
_IN6_ADDR_GEN_MODE_NONE = 1  # linux/if_link.h: IN6_ADDR_GEN_MODE_NONE


class LinkExists(Conflict):
    """A link of that name exists and is not cove's."""


@functools.cache
def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc().setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def _netlink_socket_in(nsfd: int) -> Iterator[socket.socket]:
    """A NETLINK_ROUTE socket inside the namespace ``nsfd`` (see module note)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(nsfd)
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0)
        finally:
            _setns(home)  # if this fails the thread is lost: let it raise
    finally:
        os.close(home)
    try:
        yield sock
    finally:
        sock.close()


def br_netfilter_active() -> bool:
    """Bridged IPv4 passes the ip hooks (conntrack un-NATs bridged replies)."""
    try:
        return Path("/proc/sys/net/bridge/bridge-nf-call-iptables").read_text().strip() == "1"
    except OSError:
        return False


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    """``/proc/net/dev`` as ``Netlink.counters`` gives one link's: by name,
    the host end's counters reversed (what a container behind a veth sees).
    Lines that do not parse are skipped."""
    out = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        v = rest.split()
        if not sep or len(v) < 10:
            continue
        try:  # receive: bytes packets and 6 more, then transmit: bytes packets ...
            out[name.strip()] = {"bytes_received": int(v[8]), "bytes_sent": int(v[0]),
                                 "packets_received": int(v[9]), "packets_sent": int(v[1])}
        except ValueError:
            continue
    return out


def _sysctl(path: str, value: str) -> None:
    try:
        with open(f"/proc/sys/{path}", "w") as f:
            f.write(value)
    except FileNotFoundError:
        pass


@functools.cache
def _ipv6_on_host() -> bool:
    """False when the kernel runs without IPv6 (``ipv6.disable=1``): then it
    refuses IPv6 link settings (EAFNOSUPPORT), and there is no link-local."""
    return os.path.isdir("/proc/sys/net/ipv6")


def _encode(msg: Any, mtype: int, flags: int, seq: int) -> bytes:
    msg["header"]["type"] = mtype
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg.encode()
    return bytes(msg.data)


def _acks(sock: socket.socket, count: int) -> list[int]:
    """Read ``count`` netlink acks; the errnos of those that failed."""
    errs = []
    while count > 0:
        data = sock.recv(65536)
        off = 0
        while off + 16 <= len(data):
            length, mtype = struct.unpack_from("=IH", data, off)
            if mtype == 2:  # NLMSG_ERROR: an ack (0) or an error (-errno)
                err = struct.unpack_from("=i", data, off + 16)[0]
                if err:
                    errs.append(-err)
                count -= 1
            off += (length + 3) & ~3
    return errs


def _configure_inside(sock: socket.socket, nic: NicSetup) -> None:
    """Inside the container: lo and the NIC up, its addresses, the default
    route. One lookup, then one batch of requests (one send, one ack each),
    encoded with pyroute2's message classes: ~0.5 ms, where a pyroute2
    ``IPRoute`` on the socket takes ~3 ms for the same."""
    from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
    from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    sock.bind((0, 0))
    get = ifinfmsg()
    get["attrs"] = [("IFLA_IFNAME", nic.name)]
    sock.send(_encode(get, RTM_GETLINK, NLM_F_REQUEST, 1))
    reply = sock.recv(65536)
    if struct.unpack_from("=H", reply, 4)[0] == 2:
        err = -struct.unpack_from("=i", reply, 16)[0]
        raise OSError(err, os.strerror(err))
    idx = struct.unpack_from("=i", reply, 20)[0]  # nlmsghdr (16) + family, type: the index

    req, new = NLM_F_REQUEST | NLM_F_ACK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    msgs = []
    lo = ifinfmsg()
    lo["index"], lo["flags"], lo["change"] = 1, 1, 1  # IFF_UP; lo is 1 in every netns
    msgs.append(_encode(lo, RTM_NEWLINK, req, 2))
    if nic.ipv6 is None and _ipv6_on_host():
        # A network without IPv6: no link-local address on the NIC (addr_gen_mode
        # none, set before it is up), so it sends no DAD, router solicitation or
        # MLD report; the bridge floods those to every port, N^2 on a network of
        # N instances. IPv6 itself stays on (::1, addresses a user adds).
        off = ifinfmsg()
        off["index"] = idx
        off["attrs"] = [("IFLA_AF_SPEC", {"attrs": [
            ("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", _IN6_ADDR_GEN_MODE_NONE)]})]})]
        msgs.append(_encode(off, RTM_NEWLINK, req, 3 + len(msgs)))
    for iface, fam, flags in ((nic.ipv4, socket.AF_INET, 0),
                              (nic.ipv6, socket.AF_INET6, _IFA_F_NODAD)):
        if iface is None:
            continue
        a = ifaddrmsg()
        a["family"], a["prefixlen"], a["index"], a["flags"] = \
            fam, iface.network.prefixlen, idx, flags
        a["attrs"] = [("IFA_LOCAL", str(iface.ip)), ("IFA_ADDRESS", str(iface.ip))]
        msgs.append(_encode(a, RTM_NEWADDR, new, 3 + len(msgs)))
    up = ifinfmsg()
    up["index"], up["flags"], up["change"] = idx, 1, 1
    msgs.append(_encode(up, RTM_NEWLINK, req, 3 + len(msgs)))
    if nic.default_route:
        for gw, fam in ((nic.gateway4, socket.AF_INET), (nic.gateway6, socket.AF_INET6)):
            if gw is None or (fam == socket.AF_INET and nic.ipv4 is None) or \
                    (fam == socket.AF_INET6 and nic.ipv6 is None):
                continue
            r = rtmsg()
            # main table, proto boot, scope universe, unicast
            r["family"], r["table"], r["proto"], r["scope"], r["type"] = fam, 254, 3, 0, 1
            r["attrs"] = [("RTA_GATEWAY", str(gw)), ("RTA_OIF", idx)]
            msgs.append(_encode(r, RTM_NEWROUTE, new, 3 + len(msgs)))
    sock.send(b"".join(msgs))
    errs = _acks(sock, len(msgs))
    if errs:
        raise OSError(errs[0], os.strerror(errs[0]))


def _addresses4(sock: socket.socket) -> list[tuple[int, int, IPv4Address]]:
    """(ifindex, prefixlen, address) of every IPv4 address in the socket's namespace."""
    from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
    from pyroute2.netlink.rtnl import RTM_GETADDR
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

    req = ifaddrmsg()
    req["family"] = socket.AF_INET
    sock.send(_encode(req, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1))
    out: list[tuple[int, int, IPv4Address]] = []
    while True:
        data = sock.recv(65536)
        off = 0
        while off + 16 <= len(data):
            length, mtype = struct.unpack_from("=IH", data, off)
            if mtype in (2, 3):  # NLMSG_ERROR, NLMSG_DONE
                return out
            # ifaddrmsg: family, prefixlen, flags, scope (1 byte each), index (u32)
            family, plen = struct.unpack_from("=BB", data, off + 16)
            index = struct.unpack_from("=I", data, off + 20)[0]
            attr = off + 24
            while family == socket.AF_INET and attr + 4 <= off + length:
                alen, atype = struct.unpack_from("=HH", data, attr)
                if alen < 4:
                    break
                if atype == 2 and alen >= 8:  # IFA_LOCAL
                    out.append((index, plen, IPv4Address(data[attr + 4:attr + 8])))
                attr += (alen + 3) & ~3
            off += (length + 3) & ~3
            if length == 0:
                return out


def _readdress_inside(sock: socket.socket, address: IPv4Address, prefixlen: int) -> bool:
    """Give ``address`` the prefix ``prefixlen`` where it sits: the new one
    is added before the old goes, so the address (and the default route
    through its subnet's gateway) is never missing. True if it changed."""
    from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST
    from pyroute2.netlink.rtnl import RTM_DELADDR, RTM_NEWADDR
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

    sock.bind((0, 0))
    found = [(i, p) for i, p, a in _addresses4(sock) if a == address and p != prefixlen]
    if not found:
        return False
    index, old = found[0]
    msgs: list[bytes] = []
    for mtype, plen, flags in ((RTM_NEWADDR, prefixlen, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE),
                               (RTM_DELADDR, old, NLM_F_REQUEST | NLM_F_ACK)):
        a = ifaddrmsg()
        a["family"], a["prefixlen"], a["index"] = socket.AF_INET, plen, index
        a["attrs"] = [("IFA_LOCAL", str(address)), ("IFA_ADDRESS", str(address))]
        msgs.append(_encode(a, mtype, flags, 2 + len(msgs)))
    sock.send(b"".join(msgs))
    errs = [e for e in _acks(sock, len(msgs)) if e != errno.EEXIST]
    if errs:
        raise OSError(errs[0], os.strerror(errs[0]))
    return True


@dataclass(frozen=True)
class NicSetup:
    """One NIC to make: the veth pair and what the container side gets."""

    host_name: str
    bridge: str
    name: str  # inside the container
    hwaddr: str
    mtu: int | None
    ipv4: IPv4Interface | None
    gateway4: IPv4Address | None
    ipv6: IPv6Interface | None = None
    gateway6: IPv6Address | None = None
    default_route: bool = True
    hairpin: bool = False


class _Serialized:
    """One pyroute2 IPRoute, used from one thread of its own.

    coved runs each operation (and each exit) in a short-lived thread, and
    pyroute2 0.9 opens a netlink socket and an event loop per calling thread,
    even on a shared IPRoute; those would be closed only when the garbage
    collector got to them. So every call is handed to a single worker thread
    and its result read whole there.
    """

    def __init__(self) -> None:
        self._ipr: Any = None
        self._pool: Any = None
        self._lock = threading.Lock()

    def _run(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._ipr is None:
            from pyroute2 import IPRoute

            self._ipr = IPRoute()
        result = getattr(self._ipr, name)(*args, **kwargs)
        if result is not None and not isinstance(result, (list, tuple, dict, str)) \
                and hasattr(result, "__next__"):
            result = list(result)
        return result

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                if self._pool is None:
                    from concurrent.futures import ThreadPoolExecutor

                    self._pool = ThreadPoolExecutor(1, thread_name_prefix="netlink")
                pool = self._pool
            return pool.submit(self._run, name, args, kwargs).result()
        return call

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return

        def close_ipr() -> None:
            ipr, self._ipr = self._ipr, None
            if ipr is not None:
                with contextlib.suppress(Exception):
                    ipr.close()

        pool.submit(close_ipr).result()
        pool.shutdown(wait=True)


_shared = _Serialized()


class Netlink:
    """Host-side netlink through one shared pyroute2 socket (``_Serialized``)."""

    def __init__(self) -> None:
        self._bridges: dict[str, int] = {}  # bridge name -> ifindex (checked on use)

    def _ipr(self) -> Any:
        return _shared

    # -- reading the host ---------------------------------------------------------
    def used_networks(self) -> list[IPv4Network | IPv6Network]:
        """Every route destination (all tables) and address subnet on the host."""
        ipr = self._ipr()
        out: list[IPv4Network | IPv6Network] = []
        for fam in (socket.AF_INET, socket.AF_INET6):
            for r in ipr.route("dump", family=fam):
                dst = r.get_attr("RTA_DST")
                if dst:
                    with contextlib.suppress(ValueError):
                        out.append(ip_network(f"{dst}/{r['dst_len']}", strict=False))
        for a in ipr.get_addr():
            addr = a.get_attr("IFA_ADDRESS")
            if addr:
                with contextlib.suppress(ValueError):
                    out.append(ip_network(f"{addr}/{a['prefixlen']}", strict=False))
        return out

    def links(self) -> dict[str, str]:
        """Every link on the host: name -> ifalias ('' when none)."""
        return {ln.get_attr("IFLA_IFNAME"): ln.get_attr("IFLA_IFALIAS") or ""
                for ln in self._ipr().get_links()}

    @staticmethod
    def index(name: str) -> int | None:
        """A host link's index, None if there is none (sysfs: pyroute2's
        ``link_lookup`` dumps every link, which grows with the host)."""
        if not name or "/" in name or name in (".", ".."):
            return None
        try:
            return int(Path(f"/sys/class/net/{name}/ifindex").read_text())
        except (OSError, ValueError):
            return None

    # -- bridges ------------------------------------------------------------------------
    def ensure_bridge(self, name: str, alias: str, ipv4: IPv4Interface | None,
                      ipv6: IPv6Interface | None, mtu: int | None = None) -> None:
        """Make (or adopt, when it carries ``alias``) bridge ``name`` with exactly
        these addresses, up, with forwarding and ``route_localnet`` on it only.

        Raises:
            LinkExists: a link of that name exists and is not this cove root's.
        """
        ipr = self._ipr()
        idx = self.index(name)
        if idx is not None:
            (link,) = ipr.get_links(idx)
            if (link.get_attr("IFLA_IFALIAS") or "") != alias:
                raise LinkExists(f"A link named {name!r} already exists on the host and is "
                                 "not this cove's: choose another network name")
        else:
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except Exception as e:  # noqa: BLE001 - pyroute2 raises NetlinkError
                if getattr(e, "code", None) == errno.EEXIST:
                    raise LinkExists(f"A link named {name!r} already exists") from None
                raise InternalError(f"Cannot create bridge {name}: {e}") from None
            idx = self.index(name)
            assert idx is not None
        # forwarding: containers' traffic is routed (NAT, published ports between
        # instances). route_localnet: DNAT from 127.0.0.1 may leave through here
        # (the ruleset's guard chain drops 127/8 arriving on it).
        _sysctl(f"net/ipv4/conf/{name}/forwarding", "1")
        _sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")
        _sysctl(f"net/ipv6/conf/{name}/accept_ra", "0")
        _sysctl(f"net/ipv6/conf/{name}/disable_ipv6", "0" if ipv6 else "1")
        self._bridges[name] = idx
        kw: dict[str, Any] = {"ifalias": alias, "state": "up"}
        if mtu:
            kw["mtu"] = mtu
        ipr.link("set", index=idx, **kw)
        want = {str(i) for i in (ipv4, ipv6) if i is not None}
        have = {}
        for a in ipr.get_addr(index=idx):
            addr = a.get_attr("IFA_ADDRESS")
            if addr and not addr.startswith("fe80"):
                have[f"{addr}/{a['prefixlen']}"] = a
        # New addresses first, old ones after: when a subnet grows (10.0.0.1/24
        # -> 10.0.0.1/23) the gateway address is never absent for the
        # instances behind it (the same address with another prefix is a
        # second primary address, not a clash).
        for text in want - set(have):
            addr, plen = text.split("/")
            # no duplicate address detection: cove hands the addresses out, and
            # DAD would keep an address unusable for its first second
            ipr.addr("add", index=idx, address=addr, prefixlen=int(plen),
                     **({"flags": _IFA_F_NODAD} if ":" in addr else {}))
        for text in set(have) - want:
            addr, plen = text.split("/")
            with contextlib.suppress(Exception):
                ipr.addr("del", index=idx, address=addr, prefixlen=int(plen))

    def delete_link(self, name: str) -> bool:
        """Remove a link if it exists (idempotent); True if it was there."""
        self._bridges.pop(name, None)
        idx = self.index(name)
        if idx is None:
            return False
        try:
            self._ipr().link("del", index=idx)
        except Exception as e:  # noqa: BLE001 - gone meanwhile is fine
            if getattr(e, "code", None) == errno.ENODEV:
                return False
            raise InternalError(f"Cannot delete link {name}: {e}") from None
        return True

    # -- NICs -------------------------------------------------------------------------------
    def attach(self, nsfd: int, nic: NicSetup) -> None:
        """Make ``nic``'s veth pair: the host end on its bridge, the other end
        in the namespace ``nsfd``, addressed, up, with the default route.

        Raises:
            Conflict: the bridge has no port left (1,023 is the kernel's limit).
            InternalError: netlink refused a step (the caller undoes).
        """
        ipr = self._ipr()
        br = self._bridge_index(nic.bridge)
        peer: dict[str, Any] = {"ifname": nic.name, "net_ns_fd": nsfd, "address": nic.hwaddr}
        extra: dict[str, Any] = {}
        if nic.mtu:
            peer["mtu"] = extra["mtu"] = nic.mtu
        try:
            try:
                ipr.link("add", ifname=nic.host_name, kind="veth", master=br, state="up",
                         peer=peer, **extra)
            except Exception as e:
                if getattr(e, "code", None) not in (errno.ENODEV, errno.EINVAL):
                    raise
                self._bridges.pop(nic.bridge, None)
                ipr.link("add", ifname=nic.host_name, kind="veth",
                         master=self._bridge_index(nic.bridge), state="up", peer=peer, **extra)
        except CoveError:
            raise
        except Exception as e:  # noqa: BLE001 - NetlinkError and friends
            if getattr(e, "code", None) == errno.EXFULL:  # the bridge has no port number left
                raise Conflict(f"Bridge {nic.bridge} is full: a Linux bridge holds at most "
                               f"{_BRIDGE_MAX_PORTS} NICs; put this NIC on another "
                               "network") from None
            raise InternalError(f"Cannot create veth {nic.host_name}: {e}") from None
        # The host end is a bridge port and needs no IPv6 address of its own: no
        # link-local, so none of its DAD, router solicitations or MLD reports
        # are flooded to every other port. Set before the container's end is
        # up, so the pair has no carrier yet and nothing was sent.
        _sysctl(f"net/ipv6/conf/{nic.host_name}/disable_ipv6", "1")
        if nic.hairpin:
            self.set_hairpin(nic.host_name, True)
        with _netlink_socket_in(nsfd) as sock:
            try:
                _configure_inside(sock, nic)
            except OSError as e:
                raise InternalError(f"Cannot configure {nic.name} in the container: "
                                    f"{e.strerror or e}") from None

    @staticmethod
    def readdress(nsfd: int, address: IPv4Address, prefixlen: int) -> bool:
        """In the namespace ``nsfd``: ``address`` gets the prefix ``prefixlen``
        (a grown subnet). True if it changed; False if the address is not there.

        Raises:
            InternalError: netlink refused it.
        """
        with _netlink_socket_in(nsfd) as sock:
            try:
                return _readdress_inside(sock, address, prefixlen)
            except OSError as e:
                raise InternalError(f"Cannot give {address} the prefix /{prefixlen}: "
                                    f"{e.strerror or e}") from None

    def _bridge_index(self, bridge: str) -> int:
        idx = self._bridges.get(bridge)
        if idx is None:
            idx = self.index(bridge)
            if idx is None:
                raise InternalError(f"Bridge {bridge} is missing (restart coved to repair it)")
            self._bridges[bridge] = idx
        return idx

    @staticmethod
    def set_hairpin(host_name: str, on: bool) -> None:
        """Let the bridge send a frame back out of the port it came in on (an
        instance reaching its own published port)."""
        with contextlib.suppress(OSError):
            Path(f"/sys/class/net/{host_name}/brport/hairpin_mode").write_text("1" if on else "0")

    @staticmethod
    def counters(host_name: str) -> dict[str, int] | None:
        """The NIC's counters as the container sees them (the host end's,
        reversed); None if the veth is gone. Four sysfs reads: ``cove list``
        asks this of every running instance."""
        base = f"/sys/class/net/{host_name}/statistics/"
        out = {}
        for key, host_key in (("bytes_received", "tx_bytes"), ("bytes_sent", "rx_bytes"),
                              ("packets_received", "tx_packets"),
                              ("packets_sent", "rx_packets")):
            try:
                with open(base + host_key, "rb") as f:
                    out[key] = int(f.read())
            except (OSError, ValueError):
                return None
        return out

    @staticmethod
    def all_counters() -> dict[str, dict[str, int]]:
        """``counters`` of every link in coved's namespace, by name, from one
        read of ``/proc/net/dev`` (the kernel's same counters as sysfs): a
        listing of N instances reads it once instead of 4N sysfs files.
        Empty if it cannot be read."""
        try:
            with open("/proc/net/dev", "rb") as f:
                return parse_net_dev(f.read().decode("ascii", "replace"))
        except OSError:
            return {}

    @staticmethod
    def link_state(host_name: str) -> str:
        try:
            return "up" if Path(f"/sys/class/net/{host_name}/operstate").read_text().strip() \
                in ("up", "unknown") else "down"
        except OSError:
            return "down"

    def close(self) -> None:
        _shared.close()
