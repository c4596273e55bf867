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
import os
import socket
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

from cove.model.errors import Conflict, InternalError

__all__ = ["LinkExists", "Netlink", "NicSetup", "br_netfilter_active"]

_CLONE_NEWNET = 0x40000000
_IFA_F_NODAD = 0x02
_local = threading.local()
_libc: Any = None


class LinkExists(Conflict):
    """A link of that name exists and is not cove's."""


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
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


def _sysctl(path: str, value: str) -> None:
    try:
        with open(f"/proc/sys/{path}", "w") as f:
            f.write(value)
    except FileNotFoundError:
        pass


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


class Netlink:
    """Host-side netlink: one pyroute2 socket per thread."""

    def _ipr(self) -> Any:
        ipr = getattr(_local, "ipr", None)
        if ipr is None:
            from pyroute2 import IPRoute

            ipr = IPRoute()
            _local.ipr = ipr
        return ipr

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

    def index(self, name: str) -> int | None:
        found = self._ipr().link_lookup(ifname=name)
        return found[0] if found else None

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
        for text in set(have) - want:
            addr, plen = text.split("/")
            with contextlib.suppress(Exception):
                ipr.addr("del", index=idx, address=addr, prefixlen=int(plen))
        for text in want - set(have):
            addr, plen = text.split("/")
            # no duplicate address detection: cove hands the addresses out, and
            # DAD would keep an address unusable for its first second
            ipr.addr("add", index=idx, address=addr, prefixlen=int(plen),
                     **({"flags": _IFA_F_NODAD} if ":" in addr else {}))

    def delete_link(self, name: str) -> bool:
        """Remove a link if it exists (idempotent); True if it was there."""
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
            InternalError: netlink refused a step (the caller undoes).
        """
        ipr = self._ipr()
        br = self.index(nic.bridge)
        if br is None:
            raise InternalError(f"Bridge {nic.bridge} is missing (restart coved to repair it)")
        try:
            peer: dict[str, Any] = {"ifname": nic.name, "net_ns_fd": nsfd,
                                    "address": nic.hwaddr}
            extra: dict[str, Any] = {}
            if nic.mtu:
                peer["mtu"] = extra["mtu"] = nic.mtu
            ipr.link("add", ifname=nic.host_name, kind="veth", master=br, state="up",
                     peer=peer, **extra)
            if nic.hairpin:
                self.set_hairpin(nic.host_name, True)
        except Exception as e:  # noqa: BLE001 - NetlinkError and friends
            raise InternalError(f"Cannot create veth {nic.host_name}: {e}") from None
        from pyroute2 import IPRoute

        with _netlink_socket_in(nsfd) as sock:
            ns = IPRoute(use_socket=sock)
            try:
                idx = ns.link_lookup(ifname=nic.name)[0]
                ns.link("set", index=1, state="up")  # lo is always 1 in a new netns
                if nic.ipv4 is not None:
                    ns.addr("add", index=idx, address=str(nic.ipv4.ip),
                            prefixlen=nic.ipv4.network.prefixlen)
                if nic.ipv6 is not None:
                    ns.addr("add", index=idx, address=str(nic.ipv6.ip),
                            prefixlen=nic.ipv6.network.prefixlen, flags=_IFA_F_NODAD)
                ns.link("set", index=idx, state="up")
                if nic.default_route and nic.gateway4 is not None:
                    ns.route("add", dst="0.0.0.0/0", gateway=str(nic.gateway4), oif=idx)
                if nic.default_route and nic.gateway6 is not None:
                    ns.route("add", family=socket.AF_INET6, dst="::/0",
                             gateway=str(nic.gateway6), oif=idx)
            except Exception as e:  # noqa: BLE001
                raise InternalError(f"Cannot configure {nic.name} in the container: {e}") \
                    from None
            finally:
                ns.close()

    @staticmethod
    def set_hairpin(host_name: str, on: bool) -> None:
        """Let the bridge send a frame back out of the port it came in on (an
        instance reaching its own published port)."""
        with contextlib.suppress(OSError):
            Path(f"/sys/class/net/{host_name}/brport/hairpin_mode").write_text("1" if on else "0")

    @staticmethod
    def counters(host_name: str) -> dict[str, int]:
        """The NIC's counters as the container sees them (host end reversed)."""
        base = Path("/sys/class/net") / host_name / "statistics"

        def read(key: str) -> int:
            try:
                return int((base / key).read_text())
            except (OSError, ValueError):
                return 0

        return {"bytes_received": read("tx_bytes"), "bytes_sent": read("rx_bytes"),
                "packets_received": read("tx_packets"), "packets_sent": read("rx_packets"),
                "errors_received": read("tx_errors"), "errors_sent": read("rx_errors"),
                "packets_dropped_outbound": read("rx_dropped"),
                "packets_dropped_inbound": read("tx_dropped")}

    @staticmethod
    def link_state(host_name: str) -> str:
        try:
            return "up" if Path(f"/sys/class/net/{host_name}/operstate").read_text().strip() \
                in ("up", "unknown") else "down"
        except OSError:
            return "down"

    def close(self) -> None:
        ipr = getattr(_local, "ipr", None)
        if ipr is not None:
            with contextlib.suppress(Exception):
                ipr.close()
            _local.ipr = None
