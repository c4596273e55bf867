"""Networks: create, change, delete and report them; bring them up at
start and down at shutdown. The types (``bridge``, ``cni``) live in a
registry, ``NETWORK_TYPES``; what is the same for all is here.

Design note: at startup the host is made to match the database: networks
up, the nftables table rewritten in one transaction, and every lease,
hosts file, veth, bridge or dnsmasq that nothing owns removed. At shutdown
with nothing running, bridges, dnsmasqs and the table go (the next start
makes them again); with containers running, everything serving them stays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from cove.engine._net_base import COUNTERS, NetContext, NetworkType, short_list
from cove.engine._net_bridge import BridgeType
from cove.engine._net_cni import CniType
from cove.engine._profiles import DefaultNetwork, Profiles
from cove.engine.events import EventBus
from cove.model.errors import BadRequest, Conflict, NotFound
from cove.model.projects import instance_url
from cove.model.records import Lease, Network
from cove.network._host import spec_of
from cove.network.model import (
    default_network_name,
    proxy_from_device,
    validate_network_config,
    validate_network_name,
    validate_network_type,
    veth_name,
)

__all__ = ["NETWORK_TYPES", "Networks"]

log = logging.getLogger("cove.engine")

# Bridges first: an instance's NICs attach in this order (its default route
# and resolver come from its first bridge), and are released in reverse.
NETWORK_TYPES: dict[str, type[NetworkType]] = {"bridge": BridgeType, "cni": CniType}


class Networks:
    """The networks of one root. Thread-safe: changes hold the context's lock."""

    def __init__(self, ctx: NetContext, events: EventBus, default: DefaultNetwork,
                 profiles: Profiles, running: Callable[[], set[str]]) -> None:
        self.ctx = ctx
        self._events = events
        self.default = default
        self._profiles = profiles
        self._running = running
        self.types: dict[str, NetworkType] = {n: t(ctx) for n, t in NETWORK_TYPES.items()}
        self._started = False

    @property
    def bridge(self) -> BridgeType:
        """The ``bridge`` type (the one that publishes ports)."""
        t = self.types["bridge"]
        assert isinstance(t, BridgeType)
        return t

    def type_of(self, net: Network) -> NetworkType:
        """The registered type of ``net``."""
        return self.types[net.type]

    # -- reads --------------------------------------------------------------------------
    def all(self) -> list[Network]:
        """Every network. Never raises."""
        return self.ctx.store.list_networks()

    def get(self, name: str) -> Network:
        """Raises: NotFound."""
        return self.ctx.store.get_network(name)

    def used_by(self, name: str) -> list[str]:
        """LXD's ``used_by``: every profile and every instance with a NIC on it."""
        out = [f"/1.0/profiles/{p.name}" for p in self._profiles.all()
               if any(d.get("type") == "nic" and (d.get("network") or d.get("parent")) == name
                      for d in p.devices.values())]
        for inst in self.ctx.store.list_instances():
            for dev in self._profiles.expanded_devices(inst).values():
                if dev.get("type") == "nic" and (dev.get("network") or dev.get("parent")) == name:
                    out.append(instance_url(inst.name))
                    break
        return out

    def leases(self, name: str) -> list[Lease]:
        """The addresses instances hold on network ``name``. Raises: NotFound."""
        self.ctx.store.get_network(name)
        return self.ctx.store.list_leases(network=name)

    def state(self, name: str) -> dict[str, Any]:
        """LXD's ``NetworkState``: addresses, counters, MTU, state. Raises: NotFound."""
        from cove.network._netlink import Netlink

        net = self.ctx.store.get_network(name)
        spec = spec_of(net)
        link = self.type_of(net).link(net) or ""
        addrs = []
        if spec.ipv4:
            addrs.append({"family": "inet", "address": str(spec.ipv4.ip),
                          "netmask": str(spec.ipv4.network.prefixlen), "scope": "global"})
        if spec.ipv6:
            addrs.append({"family": "inet6", "address": str(spec.ipv6.ip),
                          "netmask": str(spec.ipv6.network.prefixlen), "scope": "global"})
        c = Netlink.counters(link) or dict.fromkeys(COUNTERS, 0)
        # a bridge's own counters are not reversed the way a veth's are
        counters = {"bytes_received": c["bytes_sent"], "bytes_sent": c["bytes_received"],
                    "packets_received": c["packets_sent"], "packets_sent": c["packets_received"]}
        try:
            hwaddr = Path(f"/sys/class/net/{link}/address").read_text().strip()
            mtu = int(Path(f"/sys/class/net/{link}/mtu").read_text())
        except (OSError, ValueError):
            hwaddr, mtu = "", 0
        return {"addresses": addrs, "counters": counters, "hwaddr": hwaddr, "mtu": mtu,
                "state": Netlink.link_state(link) if hwaddr else "down", "type": "broadcast",
                "bond": None, "bridge": None, "vlan": None, "ovn": None}

    # -- changes ------------------------------------------------------------------------
    def create(self, name: str, *, config: dict[str, Any] | None = None,
               description: str = "", type: str = "bridge") -> Network:
        """Make a network (sync, as LXD); ``auto`` addresses are resolved and stored.
        Not idempotent.

        Raises:
            BadRequest: bad name, type, key or value.
            Conflict: the name exists (as a network or a host link), or the
                subnet overlaps another network or a route on the host.
        """
        validate_network_name(name)
        kind = self.types[validate_network_type(type)]
        conf = validate_network_config(config or {}, kind.name)
        with self.ctx.lock:
            try:
                self.ctx.store.get_network(name)
            except NotFound:
                pass
            else:
                raise Conflict(f"Network {name!r} already exists")
            net = Network(name=name, type=kind.name, description=description or "",
                          config=kind.new_config(name, conf, None, False),
                          created_at=self.ctx.clock())
            with ExitStack() as undo:
                self.ctx.store.add_network(net)
                undo.callback(self.ctx.store.delete_network, name)
                undo.callback(kind.take_down, net)
                kind.put_up(net)
                undo.pop_all()
        self._events.lifecycle("network-created", f"/1.0/networks/{name}")
        return net

    def update(self, name: str, *, config: dict[str, Any] | None = None,
               description: str | None = None, patch: bool = False) -> None:
        """Replace (PUT) or merge (PATCH) a network's config; idempotent.
        What may change while instances use it is the type's rule.

        Raises:
            NotFound: no such network.
            BadRequest: bad key or value, or a change not allowed while in use.
            Conflict: the new subnet overlaps another.
        """
        with self.ctx.lock:
            net = self.ctx.store.get_network(name)
            kind = self.type_of(net)
            old = net.config
            if config is not None:
                net.config = kind.new_config(name, config, net, patch)
            if description is not None:
                net.description = str(description)
            self.ctx.store.update_network(net)
            try:
                kind.put_up(net)
            except Exception:
                net.config = old
                self.ctx.store.update_network(net)
                kind.put_up(net)
                raise
        self._events.lifecycle("network-updated", f"/1.0/networks/{name}")

    def delete(self, name: str) -> None:
        """Remove a network and everything of it on the host. Not idempotent.

        Raises:
            NotFound: no such network.
            BadRequest: a profile or an instance uses it.
        """
        with self.ctx.lock:
            net = self.ctx.store.get_network(name)
            used = self.used_by(name)
            if used:
                raise BadRequest(f"The network is currently in use by {short_list(used)}: "
                                 "remove those NICs first")
            if self.ctx.store.list_leases(network=name):
                raise BadRequest(f"Network {name} still has address leases")
            self.ctx.store.delete_network(name)
            self.type_of(net).take_down(net)
            if self.default.get() == name:  # no profile names it now (used_by)
                self._profiles.set_default_network(None)
        self._events.lifecycle("network-deleted", f"/1.0/networks/{name}")

    # -- startup and shutdown -----------------------------------------------------------
    def startup(self) -> None:
        """Make the host match the database (see module note). Never raises:
        one broken network must not keep coved from serving."""
        host = self.ctx.host
        with self.ctx.lock:
            running = self._running()
            for kind in reversed(self.types.values()):
                kind.sweep(running)
            if not self.default.recorded():
                self._make_default()
            nets = self.ctx.store.list_networks()
            for net in nets:
                try:
                    self.type_of(net).start_up(net)
                except Exception:
                    log.exception("network %s could not be brought up", net.name)
            self._restore_ports(running)
            try:
                host.apply_rules()
            except Exception:
                log.exception("the nftables table could not be written")
            self._remove_strays({n.name for n in nets})
            self._started = True

    def _make_default(self) -> None:
        name = default_network_name(self.ctx.paths.root)
        try:
            try:
                self.ctx.store.get_network(name)
            except NotFound:
                self.create(name, description="Default cove network")
            self._profiles.set_default_network(name)  # and eth0 of the default profile
        except Exception:
            log.exception("could not create the default network %s", name)

    def _restore_ports(self, running: set[str]) -> None:
        for name in sorted(running):
            try:
                inst = self.ctx.store.get_instance(name)
                devices = self._profiles.expanded_devices(inst)
                proxies = [proxy_from_device(k, d) for k, d in sorted(devices.items())
                           if d.get("type") == "proxy"]
                self.bridge.set_ports(name, proxies, apply=False)
            except Exception:
                log.exception("ports of %s could not be restored", name)

    def _remove_strays(self, names: set[str]) -> None:
        host = self.ctx.host
        live = self.ctx.store.list_leases()
        veths = {veth_name(host.rid, x.id) for x in live}
        try:
            for link in host.stray_links(names, veths):
                log.info("removing stray link %s", link)
                host.nl.delete_link(link)
        except Exception:
            log.exception("removing stray links failed")
        for pid in host.kill_stray_dnsmasqs(names):
            log.info("stopped dnsmasq %d of a deleted network", pid)
        for d in host.stray_dirs(names):
            log.info("removing files of deleted network %s", d)
            host.take_down_files(d)
        keys = {f"{x.instance}.{x.device}" for x in live}
        for n in names:
            for key in host.dnsmasq(n).host_keys():
                if key not in keys:
                    host.unpublish_dns(n, key)

    def close(self) -> None:
        """At shutdown (see module note). Never raises."""
        if not self._started or self._running():
            return
        with self.ctx.lock:
            try:
                for net in self.ctx.store.list_networks():
                    self.type_of(net).shut_down(net)
                self.ctx.host.remove_rules()
            except Exception:
                log.exception("removing networks at shutdown failed")
            self.ctx.host.close()

