"""Links, addresses and routes through netlink (``_rtnl``), host and container side.

Design note (measured here): one veth into a container's namespace, on the
bridge and up, is one netlink request (~1.3 ms, most of it the kernel);
addresses, links and the default route inside are one more batch. The
messages are built by ``_rtnl`` (the standard library's ``struct``): pyroute2,
used before, cost 0.4-0.9 s of every coved start to import.

The container side needs a netlink socket *in* the container's network
namespace: the calling thread enters the namespace with ``setns(2)`` just
long enough to open the socket (a socket stays in the namespace it was made
in) and returns at once. ``setns`` with ``CLONE_NEWNET`` only moves the
calling thread. Each call opens a socket of its own and closes it, so
coved's worker threads share nothing.

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
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_interface,
    ip_network,
)
from pathlib import Path
from typing import Any

from cove.model.errors import Conflict, InternalError
from cove.network import _rtnl as rt

__all__ = ["LinkExists", "Netlink", "NicSetup", "br_netfilter_active", "parse_net_dev"]

_CLONE_NEWNET = 0x40000000
_IFA_F_NODAD = 0x02
_BRIDGE_MAX_PORTS = 1023  # the kernel's BR_MAX_PORTS (1,024) less port 0
_IN6_ADDR_GEN_MODE_NONE = 1  # linux/if_link.h: IN6_ADDR_GEN_MODE_NONE
# attribute types: linux/if_link.h (IFLA_*, IFLA_INFO_*, VETH_INFO_PEER),
# linux/if_addr.h (IFA_*), linux/rtnetlink.h (RTA_*)
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MTU, _IFLA_MASTER = 1, 3, 4, 10
_IFLA_LINKINFO, _IFLA_IFALIAS, _IFLA_AF_SPEC, _IFLA_NET_NS_FD = 18, 20, 26, 28
_IFLA_INFO_KIND, _IFLA_INFO_DATA, _VETH_INFO_PEER = 1, 2, 1
_IFLA_INET6_ADDR_GEN_MODE = 8
_IFA_ADDRESS, _IFA_LOCAL, _IFA_FLAGS = 1, 2, 8
_RTA_DST, _RTA_OIF, _RTA_GATEWAY = 1, 4, 5


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


def _mac(text: str) -> bytes:
    return bytes(int(x, 16) for x in text.split(":"))


def _configure_inside(sock: socket.socket, nic: NicSetup) -> None:
    """Inside the container: lo and the NIC up, its addresses, the default
    route. One lookup, then one batch of requests (one send, one ack each)."""
    nl = rt.Socket(sock)
    idx = rt.Socket.link_fields(nl.get(rt.RTM_GETLINK, rt.ifinfomsg()
                                       + rt.attr_str(_IFLA_IFNAME, nic.name)))[0]

    create = rt.NLM_F_CREATE | rt.NLM_F_EXCL
    msgs: list[tuple[int, int, bytes]] = []
    msgs.append((rt.RTM_NEWLINK, 0, rt.ifinfomsg(1, rt.IFF_UP, rt.IFF_UP)))  # lo is 1 in every netns
    if nic.ipv6 is None and _ipv6_on_host():
        # A network without IPv6: no link-local address on the NIC (addr_gen_mode
        # none, set before it is up), so it sends no DAD, router solicitation or
        # MLD report; the bridge floods those to every port, N^2 on a network of
        # N instances. IPv6 itself stays on (::1, addresses a user adds).
        spec = rt.attr(_IFLA_AF_SPEC, rt.attr(socket.AF_INET6, rt.attr_u8(
            _IFLA_INET6_ADDR_GEN_MODE, _IN6_ADDR_GEN_MODE_NONE)))
        msgs.append((rt.RTM_NEWLINK, 0, rt.ifinfomsg(idx) + spec))
    for iface, fam, flags in ((nic.ipv4, socket.AF_INET, 0),
                              (nic.ipv6, socket.AF_INET6, _IFA_F_NODAD)):
        if iface is None:
            continue
        packed = iface.ip.packed
        msgs.append((rt.RTM_NEWADDR, create,
                     rt.ifaddrmsg(fam, iface.network.prefixlen, idx, flags)
                     + rt.attr(_IFA_LOCAL, packed) + rt.attr(_IFA_ADDRESS, packed)))
    msgs.append((rt.RTM_NEWLINK, 0, rt.ifinfomsg(idx, rt.IFF_UP, rt.IFF_UP)))
    if nic.default_route:
        for gw, fam in ((nic.gateway4, socket.AF_INET), (nic.gateway6, socket.AF_INET6)):
            if gw is None or (fam == socket.AF_INET and nic.ipv4 is None) or \
                    (fam == socket.AF_INET6 and nic.ipv6 is None):
                continue
            # main table, proto boot, scope universe, unicast
            msgs.append((rt.RTM_NEWROUTE, create,
                         rt.rtmsg(fam, table=254, protocol=3, scope=0, rtype=1)
                         + rt.attr(_RTA_GATEWAY, gw.packed) + rt.attr_u32(_RTA_OIF, idx)))
    errs = nl.request(*msgs)
    if errs:
        raise OSError(errs[0], os.strerror(errs[0]))


def _addresses4(nl: rt.Socket) -> list[tuple[int, int, IPv4Address]]:
    """(ifindex, prefixlen, address) of every IPv4 address in the socket's namespace."""
    out: list[tuple[int, int, IPv4Address]] = []
    for _, payload in nl.dump(rt.RTM_GETADDR, rt.ifaddrmsg(socket.AF_INET, 0, 0)):
        family, plen, index, attrs = rt.Socket.addr_fields(payload)
        local = attrs.get(_IFA_LOCAL)
        if family == socket.AF_INET and local is not None and len(local) == 4:
            out.append((index, plen, IPv4Address(local)))
    return out


def _readdress_inside(sock: socket.socket, address: IPv4Address, prefixlen: int) -> bool:
    """Give ``address`` the prefix ``prefixlen`` where it sits: the new one
    is added before the old goes, so the address (and the default route
    through its subnet's gateway) is never missing. True if it changed."""
    nl = rt.Socket(sock)
    found = [(i, p) for i, p, a in _addresses4(nl) if a == address and p != prefixlen]
    if not found:
        return False
    index, old = found[0]
    msgs: list[tuple[int, int, bytes]] = []
    for mtype, plen, flags in ((rt.RTM_NEWADDR, prefixlen, rt.NLM_F_CREATE),
                               (rt.RTM_DELADDR, old, 0)):
        msgs.append((mtype, flags, rt.ifaddrmsg(socket.AF_INET, plen, index)
                     + rt.attr(_IFA_LOCAL, address.packed)
                     + rt.attr(_IFA_ADDRESS, address.packed)))
    errs = [e for e in nl.request(*msgs) if e != errno.EEXIST]
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


def _ip(payload: bytes) -> IPv4Address | IPv6Address | None:
    if len(payload) == 4:
        return IPv4Address(payload)
    if len(payload) == 16:
        return IPv6Address(payload)
    return None


class Netlink:
    """Host-side netlink: a ``_rtnl.Socket`` of its own for each call."""

    def __init__(self) -> None:
        self._bridges: dict[str, int] = {}  # bridge name -> ifindex (checked on use)

    # -- reading the host ---------------------------------------------------------
    def used_networks(self) -> list[IPv4Network | IPv6Network]:
        """Every route destination (all tables) and address subnet on the host."""
        out: list[IPv4Network | IPv6Network] = []
        with rt.Socket() as nl:
            for fam in (socket.AF_INET, socket.AF_INET6):
                for _, payload in nl.dump(rt.RTM_GETROUTE, rt.rtmsg(fam)):
                    _, dst_len, attrs = rt.Socket.route_fields(payload)
                    dst = _ip(attrs.get(_RTA_DST, b""))
                    if dst is not None:
                        with contextlib.suppress(ValueError):
                            out.append(ip_network(f"{dst}/{dst_len}", strict=False))
            for _, payload in nl.dump(rt.RTM_GETADDR, rt.ifaddrmsg(socket.AF_UNSPEC, 0, 0)):
                _, plen, _, attrs = rt.Socket.addr_fields(payload)
                addr = _ip(attrs.get(_IFA_ADDRESS, b""))
                if addr is not None:
                    with contextlib.suppress(ValueError):
                        out.append(ip_network(f"{addr}/{plen}", strict=False))
        return out

    def links(self) -> dict[str, str]:
        """Every link on the host: name -> ifalias ('' when none)."""
        out = {}
        with rt.Socket() as nl:
            for _, payload in nl.dump(rt.RTM_GETLINK, rt.ifinfomsg()):
                attrs = rt.Socket.link_fields(payload)[1]
                out[rt.string_of(attrs.get(_IFLA_IFNAME))] = rt.string_of(
                    attrs.get(_IFLA_IFALIAS))
        return out

    def _addresses(self, nl: rt.Socket, index: int) -> dict[str, tuple[IPv4Address | IPv6Address, int]]:
        """The addresses on link ``index`` as 'addr/prefixlen' -> (addr, prefixlen)."""
        out = {}
        for _, payload in nl.dump(rt.RTM_GETADDR, rt.ifaddrmsg(socket.AF_UNSPEC, 0, 0)):
            _, plen, idx, attrs = rt.Socket.addr_fields(payload)
            addr = _ip(attrs.get(_IFA_ADDRESS, b""))
            if idx == index and addr is not None:
                out[f"{addr}/{plen}"] = (addr, plen)
        return out

    @staticmethod
    def index(name: str) -> int | None:
        """A host link's index, None if there is none (sysfs: a netlink lookup
        by name would dump every link, which grows with the host)."""
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
        idx = self.index(name)
        if idx is not None:
            try:
                with open(f"/sys/class/net/{name}/ifalias") as f:
                    have_alias: str | None = f.read().rstrip("\n")
            except OSError:  # gone meanwhile: made below
                idx = have_alias = None
            if have_alias is not None and have_alias != alias:
                raise LinkExists(f"A link named {name!r} already exists on the host and is "
                                 "not this cove's: choose another network name")
        if idx is None:
            try:
                with rt.Socket() as nl:
                    nl.do(rt.RTM_NEWLINK, rt.NLM_F_CREATE | rt.NLM_F_EXCL,
                          rt.ifinfomsg() + rt.attr_str(_IFLA_IFNAME, name)
                          + rt.attr(_IFLA_LINKINFO, rt.attr_str(_IFLA_INFO_KIND, "bridge")))
            except rt.NetlinkError as e:
                if e.code == errno.EEXIST:
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
        with rt.Socket() as nl:
            nl.do(rt.RTM_NEWLINK, 0, rt.ifinfomsg(idx, rt.IFF_UP, rt.IFF_UP)
                  + rt.attr_str(_IFLA_IFALIAS, alias)
                  + (rt.attr_u32(_IFLA_MTU, mtu) if mtu else b""))
            want = {str(i) for i in (ipv4, ipv6) if i is not None}
            have = {k: v for k, v in self._addresses(nl, idx).items()
                    if not k.startswith("fe80")}  # the kernel's own link-local
            # New addresses first, old ones after: when a subnet grows (10.0.0.1/24
            # -> 10.0.0.1/23) the gateway address is never absent for the
            # instances behind it (the same address with another prefix is a
            # second primary address, not a clash).
            for text in want - set(have):
                iface = ip_interface(text)
                fam = socket.AF_INET6 if iface.version == 6 else socket.AF_INET
                packed = iface.ip.packed
                body = rt.ifaddrmsg(fam, iface.network.prefixlen, idx) \
                    + rt.attr(_IFA_ADDRESS, packed)
                if fam == socket.AF_INET:
                    body += rt.attr(_IFA_LOCAL, packed)
                else:
                    # no duplicate address detection: cove hands the addresses
                    # out, and DAD would keep an address unusable for its first second
                    body += rt.attr_u32(_IFA_FLAGS, _IFA_F_NODAD)
                nl.do(rt.RTM_NEWADDR, rt.NLM_F_CREATE | rt.NLM_F_EXCL, body)
            for text in set(have) - want:
                addr, plen = have[text]
                fam = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
                with contextlib.suppress(OSError):
                    nl.do(rt.RTM_DELADDR, 0, rt.ifaddrmsg(fam, plen, idx)
                          + rt.attr(_IFA_ADDRESS, addr.packed)
                          + (rt.attr(_IFA_LOCAL, addr.packed) if fam == socket.AF_INET
                             else b""))

    def delete_link(self, name: str) -> bool:
        """Remove a link if it exists (idempotent); True if it was there."""
        self._bridges.pop(name, None)
        idx = self.index(name)
        if idx is None:
            return False
        try:
            with rt.Socket() as nl:
                nl.do(rt.RTM_DELLINK, 0, rt.ifinfomsg(idx))
        except rt.NetlinkError as e:
            if e.code == errno.ENODEV:  # gone meanwhile is fine
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
        peer = rt.ifinfomsg() + rt.attr_str(_IFLA_IFNAME, nic.name) \
            + rt.attr_u32(_IFLA_NET_NS_FD, nsfd) + rt.attr(_IFLA_ADDRESS, _mac(nic.hwaddr))
        mtu = rt.attr_u32(_IFLA_MTU, nic.mtu) if nic.mtu else b""
        info = rt.attr(_IFLA_LINKINFO, rt.attr_str(_IFLA_INFO_KIND, "veth") + rt.attr(
            _IFLA_INFO_DATA, rt.attr(_VETH_INFO_PEER, peer + mtu)))

        def add(master: int) -> None:
            with rt.Socket() as nl:
                nl.do(rt.RTM_NEWLINK, rt.NLM_F_CREATE | rt.NLM_F_EXCL,
                      rt.ifinfomsg(0, rt.IFF_UP, rt.IFF_UP)
                      + rt.attr_str(_IFLA_IFNAME, nic.host_name)
                      + rt.attr_u32(_IFLA_MASTER, master) + mtu + info)

        try:
            try:
                add(self._bridge_index(nic.bridge))
            except rt.NetlinkError as e:
                if e.code not in (errno.ENODEV, errno.EINVAL):
                    raise
                self._bridges.pop(nic.bridge, None)  # the bridge was remade: look again
                add(self._bridge_index(nic.bridge))
        except rt.NetlinkError as e:
            if e.code == errno.EXFULL:  # the bridge has no port number left
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
        """Nothing to release (each call closed its socket); kept for the host driver."""
