"""What every network type shares: the context it works in, the plan of an
instance's run it contributes to, and the base class of the registry.

Design note: a network type (``bridge``, ``cni``) is a class on
``NetworkType``, found by name in ``NETWORK_TYPES`` (as runtimes are in
``RUNTIMES``). The networks service does what all types share (names,
rows, locks, events, the default network, used-by checks) and asks the
type for the rest: how a config is checked and resolved, what goes on the
host when the network is made, changed, brought up at start or removed,
and, for an instance's run, how each of its NICs is planned, attached,
released and reported.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any, ClassVar

from cove.engine._runs import Paths
from cove.model.records import Instance, Lease, Network
from cove.network import nft
from cove.network.model import Nic, Proxy
from cove.store import Store

if TYPE_CHECKING:
    from cove.network import NetworkHost
    from cove.network._netlink import NicSetup
    from cove.network.cni import ConfList

__all__ = ["COUNTERS", "NetContext", "NetPlan", "NetworkType", "short_list"]

COUNTERS = ("bytes_received", "bytes_sent", "packets_received", "packets_sent")


@dataclass
class NetContext:
    """What the network types work with (one per root)."""

    store: Store
    host: NetworkHost
    paths: Paths
    clock: Callable[[], float]
    lock: threading.RLock = field(default_factory=threading.RLock)  # network changes


@dataclass
class NetPlan:
    """An instance's network for one run: made before ``runc create``
    (leases, files), attached once its namespace exists."""

    nics: list[NicSetup] = field(default_factory=list)
    leases: list[Lease] = field(default_factory=list)
    dns: list[tuple[str, str, str]] = field(default_factory=list)  # network, key, text
    ports: list[nft.PortRule] = field(default_factory=list)
    mounts: tuple[dict[str, Any], ...] = ()
    cni: list[tuple[Nic, ConfList]] = field(default_factory=list)  # NICs on cni networks
    addresses: list[IPv4Address | IPv6Address] = field(default_factory=list)  # on bridges
    servers: list[IPv4Address | IPv6Address] = field(default_factory=list)  # DNS of bridges
    domains: list[str] = field(default_factory=list)  # bridges' dns.domain, in NIC order
    routed: bool = False  # a NIC took the default route
    hairpin: bool = False  # the instance publishes ports
    forwards: list[Proxy] = field(default_factory=list)  # non-NAT proxies (_proxies)

    @property
    def domain(self) -> str:
        return self.domains[0] if self.domains else ""

    @property
    def bridged(self) -> bool:
        """A NIC on a cove bridge (its dnsmasq is the resolver)."""
        return bool(self.nics)


class NetworkType(ABC):
    """One kind of network. Subclasses set ``name``; every method may assume
    the context's lock is held where the networks service says so."""

    name: ClassVar[str]

    def __init__(self, ctx: NetContext) -> None:
        self.ctx = ctx

    # -- the network ------------------------------------------------------------------
    @abstractmethod
    def new_config(self, name: str, config: dict[str, str],
                   old: Network | None, patch: bool) -> dict[str, str]:
        """The config a create (``old`` None) or an update would store:
        checked and resolved (``auto`` made concrete).

        Raises:
            BadRequest: a bad key or value, or a change not allowed now.
            Conflict: the name or the subnet clashes with something.
        """

    def put_up(self, net: Network) -> None:
        """Make the network exist on the host (create, update, startup). Idempotent."""

    def take_down(self, net: Network) -> None:
        """Remove the network from the host. Idempotent."""

    def start_up(self, net: Network) -> None:
        """Bring the network up when coved starts (the nftables table is
        written once afterwards). Idempotent."""

    def shut_down(self, net: Network) -> None:
        """Take the network off the host when coved stops with nothing
        running (the table goes afterwards). Idempotent."""

    def link(self, net: Network) -> str | None:
        """The host link whose state ``GET /1.0/networks/NAME/state`` shows."""
        return net.name

    # -- an instance's NICs -------------------------------------------------------------
    @abstractmethod
    def check_nic(self, nic: Nic, net: Network) -> None:
        """Raises BadRequest for a NIC this network cannot give."""

    @abstractmethod
    def plan_nic(self, inst: Instance, nic: Nic, plan: NetPlan, undo: ExitStack) -> None:
        """Reserve what ``nic`` needs before the container exists."""

    @abstractmethod
    def attach(self, name: str, pid: int, plan: NetPlan, undo: ExitStack) -> None:
        """Attach the planned NICs of this type inside ``pid``'s namespace."""

    @abstractmethod
    def release(self, name: str) -> None:
        """Withdraw all ``name``'s run held on networks of this type. Idempotent."""

    @abstractmethod
    def nic_states(self, inst: Instance, devices: dict[str, dict[str, str]]
                   ) -> dict[str, Any]:
        """LXD's ``state.network`` entries of the instance's NICs of this type."""

    def nic_states_of(self, insts: list[Instance],
                      devices: dict[str, dict[str, dict[str, str]]]
                      ) -> dict[str, dict[str, Any]]:
        """``nic_states`` of many running instances (``devices`` by key), by
        key (one without NICs of this type may be left out); a type that
        reads shared tables overrides it to read them once."""
        return {i.name: self.nic_states(i, devices[i.name]) for i in insts}

    def sweep(self, running: set[str]) -> None:
        """At startup: release what instances no longer running left."""


def short_list(names: list[str], limit: int = 3) -> str:
    """``a, b, c and 7 more``: an error names a few, never a whole host's worth."""
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])} and {len(names) - limit} more"
