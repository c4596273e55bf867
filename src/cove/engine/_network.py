"""Networks and the instances on them: network CRUD, the default profile's
NIC, leases, NICs, names and published ports along an instance's life.

Design note: an instance's network namespace is the one runc makes for it
(no named namespace that could outlive it). ``_start`` leases addresses
and writes the container's ``/etc/hosts`` and ``/etc/resolv.conf`` before
the spec is built (they are bind mounts), then, between ``runc create`` and
``runc start``, puts the veths into the new namespace, publishes the names
and the ports. When the container ends its namespace goes with it and the
kernel removes both veth ends; ``_finalize`` withdraws ports and names and
frees the leases. Everything registers an undo, so a failed start leaves
no lease, file, element or link. At startup the host is made to match the
database: networks up, the table rewritten in one transaction, and every
lease, hosts file, veth, bridge or dnsmasq that nothing owns removed.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cove.engine._network_cni import CniMixin
from cove.model.errors import BadRequest, Conflict, NotFound
from cove.model.records import Instance, Lease, Network
from cove.network import dns, nft
from cove.network._host import NetSpec, spec_of
from cove.network.model import (
    Nic,
    PortKey,
    Proxy,
    check_overlap,
    default_network_name,
    nic_from_device,
    parse_ipv4_address,
    proxy_from_device,
    validate_network_config,
    validate_network_name,
    validate_network_type,
    veth_name,
)
from cove.network.subnets import free_address, free_address6, pick_subnet

if TYPE_CHECKING:
    from cove.network._netlink import NicSetup
    from cove.network.cni import ConfList

__all__ = ["NetPlan", "NetworkMixin"]

log = logging.getLogger("cove.engine")

_META_DEFAULT = "network.default"
_COUNTERS = ("bytes_received", "bytes_sent", "packets_received", "packets_sent")
_net_lock = threading.RLock()  # network create/update/delete and startup


@dataclass
class NetPlan:
    """What ``_start`` attaches once the container's namespace exists."""

    nics: list[NicSetup] = field(default_factory=list)
    leases: list[Lease] = field(default_factory=list)
    dns: list[tuple[str, str, str]] = field(default_factory=list)  # network, key, text
    ports: list[nft.PortRule] = field(default_factory=list)
    mounts: tuple[dict[str, Any], ...] = ()
    cni: list[tuple[Nic, ConfList]] = field(default_factory=list)  # NICs on cni networks
    addresses: list[IPv4Address | IPv6Address] = field(default_factory=list)  # on bridges
    domain: str = ""  # the first bridge's dns.domain
    bridged: bool = False  # a NIC on a cove bridge (its dnsmasq is the resolver)


def _mac(rid: str, instance: str, device: str) -> str:
    h = hashlib.sha256(f"{rid}/{instance}/{device}".encode()).digest()
    return f"00:16:3e:{h[0] & 0x7F:02x}:{h[1]:02x}:{h[2]:02x}"


def _devices_of(devices: dict[str, dict[str, str]]) -> tuple[list[Nic], list[Proxy]]:
    nics, proxies = [], []
    for key in sorted(devices):
        dev = devices[key]
        if dev.get("type") == "nic":
            nics.append(nic_from_device(key, dev))
        elif dev.get("type") == "proxy":
            proxies.append(proxy_from_device(key, dev))
    return nics, proxies


class NetworkMixin(CniMixin):
    # -- profiles ---------------------------------------------------------------------
    def default_network(self) -> str | None:
        """The network of the default profile's eth0 (cached: only this file
        writes it)."""
        cached = getattr(self, "_net_default", False)
        if cached is False:
            cached = self.store.get_meta(_META_DEFAULT) or None
            self._net_default = cached
        return cached  # type: ignore[return-value]

    def profile_devices(self, profile: str) -> dict[str, dict[str, str]]:
        """The ``default`` profile's devices: ``eth0`` on the default network."""
        if profile != "default":
            return {}
        net = self.default_network()
        if not net:
            return {}
        return {"eth0": {"type": "nic", "network": net, "name": "eth0"}}

    def expanded_devices(self, inst: Instance) -> dict[str, dict[str, str]]:
        """Profile devices overlaid by the instance's own (``type: none`` hides one)."""
        out: dict[str, dict[str, str]] = {}
        for p in inst.profiles:
            out.update(self.profile_devices(p))
        out.update(inst.devices)
        return {k: dict(v) for k, v in out.items() if v.get("type") != "none"}

    # -- networks ----------------------------------------------------------------------
    def list_networks(self) -> list[Network]:
        return self.store.list_networks()

    def get_network(self, name: str) -> Network:
        return self.store.get_network(name)

    def network_used_by(self, name: str) -> list[str]:
        """LXD's ``used_by``: the default profile and every instance with a NIC on it."""
        out = []
        if self.default_network() == name:
            out.append("/1.0/profiles/default")
        for inst in self.store.list_instances():
            for dev in self.expanded_devices(inst).values():
                if dev.get("type") == "nic" and (dev.get("network") or dev.get("parent")) == name:
                    out.append(f"/1.0/instances/{inst.name}")
                    break
        return out

    def network_leases(self, name: str) -> list[Lease]:
        """The addresses instances hold on network ``name`` (NotFound if none such)."""
        self.store.get_network(name)
        return self.store.list_leases(network=name)

    def network_state(self, name: str) -> dict[str, Any]:
        """LXD's ``NetworkState`` of a bridge: addresses, counters, MTU, state."""
        from cove.network._netlink import Netlink

        net = self.store.get_network(name)
        spec = spec_of(net)
        if net.type == "cni":
            name = self._cni_bridge(net) or ""
        addrs = []
        if spec.ipv4:
            addrs.append({"family": "inet", "address": str(spec.ipv4.ip),
                          "netmask": str(spec.ipv4.network.prefixlen), "scope": "global"})
        if spec.ipv6:
            addrs.append({"family": "inet6", "address": str(spec.ipv6.ip),
                          "netmask": str(spec.ipv6.network.prefixlen), "scope": "global"})
        c = Netlink.counters(name) or dict.fromkeys(_COUNTERS, 0)
        # a bridge's own counters are not reversed the way a veth's are
        counters = {"bytes_received": c["bytes_sent"], "bytes_sent": c["bytes_received"],
                    "packets_received": c["packets_sent"], "packets_sent": c["packets_received"]}
        try:
            hwaddr = Path(f"/sys/class/net/{name}/address").read_text().strip()
            mtu = int(Path(f"/sys/class/net/{name}/mtu").read_text())
        except (OSError, ValueError):
            hwaddr, mtu = "", 0
        return {"addresses": addrs, "counters": counters, "hwaddr": hwaddr, "mtu": mtu,
                "state": Netlink.link_state(name) if hwaddr else "down", "type": "broadcast",
                "bond": None, "bridge": None, "vlan": None, "ovn": None}

    def _resolve_network_config(self, name: str, config: dict[str, str],
                                old: dict[str, str] | None = None) -> dict[str, str]:
        """``auto`` -> a free subnet; defaults filled in; overlaps refused."""
        out = dict(config)
        out.setdefault("ipv4.address", "auto")
        out.setdefault("ipv4.nat", "true")
        out.setdefault("ipv6.address", "none")
        out.setdefault("dns.domain", "cove")
        others = [(f"network {n.name}", spec_of(n)) for n in self.store.list_networks()
                  if n.name != name]
        used4 = [(w, s.ipv4.network) for w, s in others if s.ipv4]
        used6 = [(w, s.ipv6.network) for w, s in others if s.ipv6]
        keep_host = name if name in {s.name for s in self.net.specs()} else None
        host = self.net.host_subnets(exclude_bridge=keep_host)
        if out["ipv4.address"] == "auto":
            if old and old.get("ipv4.address") not in (None, "", "auto", "none"):
                out["ipv4.address"] = old["ipv4.address"]
            else:
                subnet = pick_subnet([n for _, n in used4] + [h for h in host if h.version == 4],
                                     seed=f"{self.root}:{name}")
                out["ipv4.address"] = f"{subnet.network_address + 1}/{subnet.prefixlen}"
        if out["ipv4.address"] not in ("none", ""):
            iface = parse_ipv4_address(out["ipv4.address"])
            check_overlap(name, iface.network, used4)
            check_overlap(name, iface.network,
                          [("a route or address on the host", h) for h in host
                           if h.version == 4 and h.prefixlen > 0])
        if out["ipv6.address"] == "auto":
            if old and old.get("ipv6.address") not in (None, "", "auto", "none"):
                out["ipv6.address"] = old["ipv6.address"]
            else:
                h = hashlib.sha256(f"{self.root}:{name}:v6".encode()).digest()
                out["ipv6.address"] = "fd{:02x}:{:02x}{:02x}:{:02x}{:02x}::1/64".format(*tuple(h[:5]))
        if out["ipv6.address"] not in ("none", ""):
            from cove.network.model import parse_ipv6_address

            iface6 = parse_ipv6_address(out["ipv6.address"])
            check_overlap(name, iface6.network, used6)
        return out

    def create_network(self, name: str, *, config: dict[str, Any] | None = None,
                       description: str = "", type: str = "bridge") -> Network:
        """Make a bridge network (sync, as LXD). ``auto`` addresses are resolved
        and stored.

        Raises:
            BadRequest: bad name, type, key or value.
            Conflict: the name exists (as a network or a host link), or the
                subnet overlaps another network or a route on the host.
        """
        validate_network_name(name)
        ntype = validate_network_type(type)
        conf = validate_network_config(config or {}, ntype)
        if ntype == "cni":
            self._cni_check_config(name, conf)
        with _net_lock:
            try:
                self.store.get_network(name)
            except NotFound:
                pass
            else:
                raise Conflict(f"Network {name!r} already exists")
            if ntype == "cni":  # nothing on the host until a NIC attaches
                net = Network(name=name, type="cni", description=description or "",
                              config=conf, created_at=self._now())
                self.store.add_network(net)
                self.events.lifecycle("network-created", f"/1.0/networks/{name}")
                return net
            if name in self.net.nl.links():
                raise Conflict(f"A link named {name!r} already exists on the host: choose "
                               "another network name")
            net = Network(name=name, type="bridge", description=description or "",
                          config=self._resolve_network_config(name, conf),
                          created_at=self._now())
            with ExitStack() as undo:
                self.store.add_network(net)
                undo.callback(self.store.delete_network, name)
                undo.callback(self.net.take_down, name)
                self.net.bring_up(spec_of(net))
                self.net.apply_rules()
                undo.pop_all()
        self.events.lifecycle("network-created", f"/1.0/networks/{name}")
        return net

    def update_network(self, name: str, *, config: dict[str, Any] | None = None,
                       description: str | None = None, patch: bool = False) -> None:
        """Replace (PUT) or merge (PATCH) a network's config.

        Addresses, domain and MTU can change only while no instance holds a
        lease on it; NAT and ``user.*`` change live.

        Raises:
            BadRequest: bad key or value, or an address change while in use.
            Conflict: the new subnet overlaps another.
        """
        with _net_lock:
            net = self.store.get_network(name)
            if net.type == "cni":
                self._cni_update(net, config, description, patch)
                return
            if config is not None:
                new = dict(net.config) if patch else {}
                new.update(validate_network_config(config))
                new = {k: v for k, v in new.items() if v != "" or k not in config}
                new = self._resolve_network_config(name, new, old=net.config)
                changed = {k for k in set(new) | set(net.config)
                           if new.get(k) != net.config.get(k)}
                live = {"ipv4.nat", "ipv6.nat"}
                if changed - live - {k for k in changed if k.startswith("user.")}:
                    holders = sorted({lease.instance for lease in
                                      self.store.list_leases(network=name)})
                    if holders:
                        raise BadRequest(f"Network {name} is in use by running instances "
                                         f"({', '.join(holders)}): stop them to change "
                                         f"{', '.join(sorted(changed - live))}")
                old = net.config
                net.config = new
            else:
                old = net.config
            if description is not None:
                net.description = str(description)
            self.store.update_network(net)
            try:
                self.net.bring_up(spec_of(net))
                self.net.apply_rules()
            except Exception:
                net.config = old
                self.store.update_network(net)
                self.net.bring_up(spec_of(net))
                self.net.apply_rules()
                raise
        self.events.lifecycle("network-updated", f"/1.0/networks/{name}")

    def _cni_update(self, net: Network, config: dict[str, Any] | None,
                    description: str | None, patch: bool) -> None:
        """A cni network's conflist may change while instances use it: each
        attachment keeps the conflist it was ADDed with for its DEL, and the
        new one applies from the next start."""
        if config is not None:
            new = dict(net.config) if patch else {}
            new.update(validate_network_config(config, "cni"))
            new = {k: v for k, v in new.items() if v != ""}
            self._cni_check_config(net.name, new)
            net.config = new
        if description is not None:
            net.description = str(description)
        self.store.update_network(net)
        self.events.lifecycle("network-updated", f"/1.0/networks/{net.name}")

    def delete_network(self, name: str) -> None:
        """Remove a network and everything of it on the host.

        Raises:
            BadRequest: the default profile or an instance uses it.
        """
        with _net_lock:
            self.store.get_network(name)
            used = self.network_used_by(name)
            if used:
                raise BadRequest(f"The network is currently in use by {', '.join(used)}: "
                                 "remove those NICs first")
            if self.store.list_leases(network=name):
                raise BadRequest(f"Network {name} still has address leases")
            cni_type = self.store.get_network(name).type == "cni"
            self.store.delete_network(name)
            if not cni_type:
                self.net.take_down(name)
                self.net.apply_rules()
            if self.default_network() == name:  # pragma: no cover - guarded by used_by
                self.store.set_meta(_META_DEFAULT, "")
                self._net_default = None
        self.events.lifecycle("network-deleted", f"/1.0/networks/{name}")

    # -- devices -------------------------------------------------------------------------
    def _net_check_devices(self, name: str, devices: dict[str, dict[str, str]],
                           profiles: list[str]) -> None:
        """Validate an instance's NIC and proxy devices against the host.

        Raises:
            BadRequest: a NIC names a network that does not exist, a static
                address outside its subnet, or a proxy is malformed.
            Conflict: a published host port is another instance's already,
                or a host process listens on it.
        """
        expanded: dict[str, dict[str, str]] = {}
        for p in profiles:
            expanded.update(self.profile_devices(p))
        expanded.update(devices)
        expanded = {k: v for k, v in expanded.items() if v.get("type") != "none"}
        nics, proxies = _devices_of(expanded)
        bridged = False
        for nic in nics:
            try:
                net = self.store.get_network(nic.network)
            except NotFound:
                raise BadRequest(f"Device {nic.device!r}: network {nic.network!r} does not "
                                 "exist") from None
            if net.type == "cni":
                self._cni_check_nic(nic)
                continue
            bridged = True
            spec = spec_of(net)
            if nic.ipv4 is not None and (
                    spec.ipv4 is None or nic.ipv4 not in spec.ipv4.network
                    or nic.ipv4 in (spec.ipv4.ip, spec.ipv4.network.network_address,
                                    spec.ipv4.network.broadcast_address)):
                raise BadRequest(f"Device {nic.device!r}: ipv4.address {nic.ipv4} is not a "
                                 f"free host address of network {nic.network} "
                                 f"({spec.ipv4.network if spec.ipv4 else 'no IPv4'})")
        names = [n.name for n in nics]
        if len(set(names)) != len(names):
            raise BadRequest("Two NICs have the same interface name")
        if proxies and not nics:
            raise BadRequest("A proxy device needs the instance to have a NIC")
        if proxies and not bridged:
            raise BadRequest("A proxy device needs a NIC on a cove bridge network: the ports "
                             "of a cni network are its conflist's plugins' (portmap)")
        mine = [k for p in proxies for k in p.port_keys()]
        if len(set(mine)) != len(mine) or any(
                a.clashes(b) for i, a in enumerate(mine) for b in mine[i + 1:]):
            raise Conflict("Two proxy devices of the instance publish the same host port")
        if not mine:
            return
        # Against the ports published now (running instances), as Docker does: a
        # stopped instance holds no port, and finds it taken when it starts.
        # In memory, so the check does not grow with the number of instances.
        for key in mine:
            owner = self.net.port_owner(key, exclude=name)
            if owner is not None:
                raise Conflict(f"Host port {key} is already published by instance {owner}")
        self._net_check_host_ports(mine)

    @staticmethod
    def _net_check_host_ports(keys: list[PortKey]) -> None:
        """Refuse ports a host process listens on (DNAT would hijack them)."""
        listening = _host_listeners()
        for k in keys:
            for proto, addr, port in listening:
                if proto == k.proto and port == k.port and (
                        k.host == IPv4Address("0.0.0.0") or addr in (k.host, IPv4Address("0.0.0.0"))):
                    raise Conflict(f"Host port {k} is reserved: a host process listens on "
                                   f"{proto}:{addr}:{port}")

    # -- an instance's run -----------------------------------------------------------------
    def _net_prepare(self, inst: Instance, undo: ExitStack) -> NetPlan:
        """Lease addresses and write /etc/hosts and resolv.conf (see module note)."""
        devices = self.expanded_devices(inst)
        all_nics, proxies = _devices_of(devices)
        plan = NetPlan()
        if not all_nics:
            return plan
        nics = []
        for nic in all_nics:
            conf = self._cni_conf_of(nic.network)
            if conf is None:
                nics.append(nic)
            else:
                plan.cni.append((nic, conf))
        rid = self.net.rid
        own4: list[IPv4Address] = []
        own6: list[IPv6Address] = []
        servers: list[IPv4Address | IPv6Address] = []
        domains: list[str] = []
        first_domain = ""
        routed = False
        for nic in nics:
            spec = self._net_ensure_up(nic.network)
            hw = nic.hwaddr or _mac(rid, inst.name, nic.device)
            lease = self.store.add_lease(spec.name, inst.name, nic.device, hw,
                                         _chooser(spec, nic))
            undo.callback(self.store.delete_lease, lease.id)
            plan.leases.append(lease)
            a4 = IPv4Interface(f"{lease.address}/{spec.ipv4.network.prefixlen}") \
                if lease.address and spec.ipv4 else None
            a6 = IPv6Interface(f"{lease.address6}/{spec.ipv6.network.prefixlen}") \
                if lease.address6 and spec.ipv6 else None
            from cove.network._netlink import NicSetup

            plan.nics.append(NicSetup(
                host_name=veth_name(rid, lease.id), bridge=spec.bridge, name=nic.name,
                hwaddr=hw, mtu=nic.mtu or spec.mtu, ipv4=a4,
                gateway4=spec.ipv4.ip if spec.ipv4 else None, ipv6=a6,
                gateway6=spec.ipv6.ip if spec.ipv6 else None,
                default_route=not routed, hairpin=bool(proxies)))
            routed = routed or a4 is not None
            addrs = [a.ip for a in (a4, a6) if a is not None]
            own4 += [a4.ip] if a4 else []
            own6 += [a6.ip] if a6 else []
            if addrs:
                plan.dns.append((spec.name, f"{inst.name}.{nic.device}",
                                 dns.hosts_entry(addrs, inst.name, spec.domain)))
            servers += [i.ip for i in (spec.ipv4, spec.ipv6) if i is not None]
            domains.append(spec.domain)
            first_domain = first_domain or spec.domain
        plan.ports = _port_rules(proxies, own4)
        plan.addresses, plan.domain, plan.bridged = [*own4, *own6], first_domain, bool(nics)
        d = self.instance_dir(inst.name)
        hosts, resolv = d / "hosts", d / "resolv.conf"
        hosts.write_text(dns.container_hosts(inst.name, first_domain, [*own4, *own6]))
        if nics:
            resolv.write_text(dns.container_resolv(servers, domains))
        else:  # only cni NICs: the host's resolvers until a result names others
            try:
                host_resolv = Path("/etc/resolv.conf").read_text()
            except OSError:
                host_resolv = ""
            resolv.write_text(dns.resolv_from_host(host_resolv))
        plan.mounts = tuple(
            {"destination": dst, "type": "bind", "source": str(src),
             "options": ["rbind", "rprivate"]}
            for dst, src in (("/etc/hosts", hosts), ("/etc/resolv.conf", resolv)))
        return plan

    def _net_attach(self, name: str, pid: int, plan: NetPlan, undo: ExitStack) -> None:
        """Veths into ``pid``'s namespace, names into dnsmasq, ports into
        nftables; then the NICs on cni networks."""
        if plan.nics:
            undo.callback(self.net.detach, [n.host_name for n in plan.nics])
            self.net.attach(pid, plan.nics)
            for network, key, text in plan.dns:
                undo.callback(self.net.unpublish_dns, network, key)
                self.net.publish_dns(network, key, text)
            if plan.ports:
                undo.callback(self.net.forget_ports, name)
                self.net.set_ports(name, plan.ports, plan.ports[0].target)
        if plan.cni:
            self._cni_attach(name, pid, plan, undo)

    def _net_release(self, name: str) -> None:
        """Withdraw everything ``name``'s run held on the network (idempotent)."""
        self._cni_release(name)
        leases = self.store.list_leases(instance=name)
        if self.net.has_ports(name):
            self.net.forget_ports(name)
        if not leases:
            return
        for lease in leases:
            self.net.unpublish_dns(lease.network, f"{name}.{lease.device}")
        self.net.detach_later([veth_name(self.net.rid, lease.id) for lease in leases])
        for lease in leases:
            self.store.delete_lease(lease.id)

    def _net_apply_devices(self, inst: Instance,
                           new_devices: dict[str, dict[str, str]]) -> None:
        """Apply changed proxy devices to a running instance at once.

        Raises:
            BadRequest: NICs changed (they need a restart).
            Conflict: a new host port is taken.
        """
        old = self.expanded_devices(inst)
        probe = Instance(name=inst.name, image=inst.image, devices=new_devices,
                         profiles=inst.profiles)
        new = self.expanded_devices(probe)
        nic_old = {k: v for k, v in old.items() if v.get("type") == "nic"}
        nic_new = {k: v for k, v in new.items() if v.get("type") == "nic"}
        if nic_old != nic_new:
            raise BadRequest("NICs of a running instance cannot change: stop it first")
        _, proxies = _devices_of(new)
        leases = self.store.list_leases(instance=inst.name)
        own4 = [IPv4Address(lease.address) for lease in leases if lease.address]
        ports = _port_rules(proxies, own4)
        self.net.set_hairpin_all([veth_name(self.net.rid, lease.id) for lease in leases],
                                 bool(ports))
        self.net.set_ports(inst.name, ports, ports[0].target if ports else None)

    def _net_state(self, inst: Instance) -> dict[str, Any]:
        """LXD's ``state.network`` of a running instance."""
        from cove.network._netlink import Netlink

        out: dict[str, Any] = {"lo": {
            "addresses": [
                {"family": "inet", "address": "127.0.0.1", "netmask": "8", "scope": "local"},
                {"family": "inet6", "address": "::1", "netmask": "128", "scope": "local"}],
            "counters": {"bytes_received": 0, "bytes_sent": 0, "packets_received": 0,
                         "packets_sent": 0},
            "hwaddr": "", "host_name": "", "mtu": 65536, "state": "up", "type": "loopback"}}
        out.update(self._cni_state(inst.name))
        leases = self.store.list_leases(instance=inst.name)
        if not leases:
            return out
        devices = self.expanded_devices(inst)
        for lease in leases:
            spec = self.net.spec(lease.network)
            dev = devices.get(lease.device, {})
            ifname = dev.get("name") or lease.device
            host = veth_name(self.net.rid, lease.id)
            addrs = []
            if lease.address and spec and spec.ipv4:
                addrs.append({"family": "inet", "address": lease.address,
                              "netmask": str(spec.ipv4.network.prefixlen), "scope": "global"})
            if lease.address6 and spec and spec.ipv6:
                addrs.append({"family": "inet6", "address": lease.address6,
                              "netmask": str(spec.ipv6.network.prefixlen), "scope": "global"})
            counters = Netlink.counters(host)
            out[ifname] = {
                "addresses": addrs,
                "counters": counters or dict.fromkeys(_COUNTERS, 0),
                "hwaddr": lease.hwaddr, "host_name": host,
                "mtu": int(dev.get("mtu") or (spec.mtu if spec and spec.mtu else 1500)),
                "state": "up" if counters is not None else "down", "type": "broadcast"}
        return out

    def _net_ensure_up(self, network: str) -> NetSpec:
        spec = self.net.spec(network)
        if spec is not None:
            return spec
        with _net_lock:
            try:
                net = self.store.get_network(network)
            except NotFound:
                raise BadRequest(f"Network {network!r} does not exist") from None
            spec = spec_of(net)
            self.net.bring_up(spec)
            self.net.apply_rules()
            return spec

    # -- startup and shutdown ---------------------------------------------------------------
    def _net_startup(self) -> None:
        """Make the host match the database (see module note). Never raises:
        one broken network must not keep coved from serving."""
        with _net_lock:
            running = set(self._running)
            self._cni_startup(running)
            for lease in self.store.list_leases():
                if lease.instance not in running:
                    log.info("releasing stale lease %s of %s", lease.address, lease.instance)
                    self._net_release(lease.instance)
            if self.store.get_meta(_META_DEFAULT) is None:
                name = default_network_name(self.root)
                try:
                    try:
                        self.store.get_network(name)
                    except NotFound:
                        self.create_network(name, description="Default cove network")
                    self.store.set_meta(_META_DEFAULT, name)
                    self._net_default = name
                except Exception:
                    log.exception("could not create the default network %s", name)
            nets = self.store.list_networks()
            for net in nets:
                if net.type == "cni":
                    continue
                try:
                    self.net.bring_up(spec_of(net))
                except Exception:
                    log.exception("network %s could not be brought up", net.name)
            for name in sorted(running):
                try:
                    inst = self.store.get_instance(name)
                    _, proxies = _devices_of(self.expanded_devices(inst))
                    leases = self.store.list_leases(instance=name)
                    own4 = [IPv4Address(x.address) for x in leases if x.address]
                    ports = _port_rules(proxies, own4)
                    if ports:
                        self.net.set_ports(name, ports, ports[0].target, apply=False)
                except Exception:
                    log.exception("ports of %s could not be restored", name)
            try:
                self.net.apply_rules()
            except Exception:
                log.exception("the nftables table could not be written")
            live = self.store.list_leases()
            veths = {veth_name(self.net.rid, x.id) for x in live}
            names = {n.name for n in nets}
            try:
                for link in self.net.stray_links(names, veths):
                    log.info("removing stray link %s", link)
                    self.net.nl.delete_link(link)
            except Exception:
                log.exception("removing stray links failed")
            for pid in self.net.kill_stray_dnsmasqs(names):
                log.info("stopped dnsmasq %d of a deleted network", pid)
            for d in self.net.stray_dirs(names):
                log.info("removing files of deleted network %s", d)
                self.net.take_down_files(d)
            keys = {f"{x.instance}.{x.device}" for x in live}
            for n in names:
                for key in self.net.dnsmasq(n).host_keys():
                    if key not in keys:
                        self.net.unpublish_dns(n, key)
            self._net_started = True

    def _net_close(self) -> None:
        """At shutdown with nothing running, remove the bridges, dnsmasqs and
        table (the next start makes them again); with containers running,
        leave everything serving them."""
        if not getattr(self, "_net_started", False) or self._running:
            return
        with _net_lock:
            try:
                for net in self.store.list_networks():
                    if net.type != "cni":
                        self.net.take_down(net.name)
                self.net.remove_rules()
            except Exception:
                log.exception("removing networks at shutdown failed")
            self.net.close()


def _chooser(spec: NetSpec, nic: Nic):  # type: ignore[no-untyped-def]
    def choose(taken4: set[str], taken6: set[str]) -> tuple[str, str]:
        a4 = a6 = ""
        if spec.ipv4 is not None:
            if nic.ipv4 is not None:
                a4 = str(nic.ipv4)
            else:
                a4 = str(free_address(spec.ipv4.network,
                                      [spec.ipv4.ip, *map(IPv4Address, taken4)]))
        if spec.ipv6 is not None:
            a6 = str(free_address6(spec.ipv6.network,
                                   [spec.ipv6.ip, *map(IPv6Address, taken6)]))
        return a4, a6
    return choose


def _port_rules(proxies: list[Proxy], own4: list[IPv4Address]) -> list[nft.PortRule]:
    """Published ports of an instance whose addresses are ``own4``."""
    if not proxies:
        return []
    if not own4:
        raise BadRequest("Proxy devices need an IPv4 address on the instance")
    rules = []
    for p in proxies:
        target = own4[0]
        h = p.connect.host
        if not (p.connect.any_host or h.is_loopback):
            if h not in own4:
                raise BadRequest(f"Device {p.device!r}: connect address {h} is not one of the "
                                 f"instance's ({', '.join(map(str, own4))})")
            target = h
        listen = None if p.listen.any_host else p.listen.host
        for hport, cport in p.mappings():
            rules.append(nft.PortRule(p.listen.proto, listen, hport, target, cport))
    return rules


def _host_listeners() -> list[tuple[str, IPv4Address, int]]:
    """IPv4 TCP listeners and bound UDP sockets of the host's namespace."""
    out = []
    for proto, path, want in (("tcp", "/proc/net/tcp", "0A"), ("udp", "/proc/net/udp", "07")):
        try:
            lines = Path(path).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 4 or parts[3] != want:
                continue
            hexaddr, hexport = parts[1].split(":")
            addr = IPv4Address(int.from_bytes(bytes.fromhex(hexaddr), "little"))
            out.append((proto, addr, int(hexport, 16)))
    return out
