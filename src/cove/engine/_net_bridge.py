"""Networks of type ``bridge``: cove's own bridges with a subnet, NAT, DNS
(dnsmasq) and published ports (nftables), and the NICs on them.

Design note: an instance's network namespace is the one runc makes for it
(no named namespace that could outlive it). Before the spec is built,
``plan_nic`` leases addresses (in the store, so two launches never get the
same one); between ``runc create`` and ``runc start`` ``attach`` puts the
veths into the new namespace and publishes the names and the ports. When
the container ends its namespace goes with it and the kernel removes both
veth ends; ``release`` withdraws ports and names and frees the leases.
Every step registers an undo, so a failed start leaves no lease, file,
element or link.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from contextlib import ExitStack
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface
from pathlib import Path
from typing import Any

from cove.engine._net_base import COUNTERS, NetPlan, NetworkType, short_list
from cove.model.errors import BadRequest, Conflict, CoveError, InternalError, NotFound
from cove.model.projects import dns_name, split_key
from cove.model.records import Instance, Lease, Network
from cove.network import dns, nft
from cove.network._host import NetSpec, spec_of
from cove.network.model import (
    Nic,
    PortKey,
    Proxy,
    check_overlap,
    default_network_name,
    parse_ipv4_address,
    parse_ipv6_address,
    validate_network_config,
    veth_name,
)
from cove.network.subnets import (
    DEFAULT_NETWORK_PREFIX,
    NETWORK_PREFIX,
    address_int,
    free_address,
    free_address6,
    pick_subnet,
)
from cove.runtime.cgroups import procs

__all__ = ["BridgeType", "host_listeners", "port_rules"]

log = logging.getLogger("cove.engine")

_LIVE_KEYS = {"ipv4.nat", "ipv6.nat"}  # change while instances hold leases


class BridgeType(NetworkType):
    name = "bridge"

    # -- the network ------------------------------------------------------------------
    def new_config(self, name: str, config: dict[str, str],
                   old: Network | None, patch: bool) -> dict[str, str]:
        """Addresses, domain and MTU change only while no instance holds a
        lease on the network; NAT and ``user.*`` change live."""
        if old is None:
            if name in self.ctx.host.nl.links():
                raise Conflict(f"A link named {name!r} already exists on the host: choose "
                               "another network name")
            return self._resolve(name, config)
        new = dict(old.config) if patch else {}
        new.update(validate_network_config(config))
        new = {k: v for k, v in new.items() if v != "" or k not in config}
        new = self._resolve(name, new, old=old.config)
        changed = {k for k in set(new) | set(old.config) if new.get(k) != old.config.get(k)}
        fixed = changed - _LIVE_KEYS - {k for k in changed if k.startswith("user.")}
        if fixed:
            leases = self.ctx.store.list_leases(network=name)
            if fixed == {"ipv4.address"} and _grows(old.config, new):
                return new  # every lease and the gateway stay where they are
            holders = sorted({lease.instance for lease in leases})
            if holders:
                raise BadRequest(f"Network {name} is in use by running instances "
                                 f"({short_list(holders)}): stop them to change "
                                 f"{', '.join(sorted(fixed))} (a subnet may grow live: "
                                 "the same ipv4.address with a shorter prefix)")
        return new

    def _resolve(self, name: str, config: dict[str, str],
                 old: dict[str, str] | None = None) -> dict[str, str]:
        """``auto`` -> a free subnet; defaults filled in; overlaps refused."""
        out = dict(config)
        out.setdefault("ipv4.address", "auto")
        out.setdefault("ipv4.nat", "true")
        out.setdefault("ipv6.address", "none")
        out.setdefault("dns.domain", "cove")
        host_net = self.ctx.host
        others = [(f"network {n.name}", spec_of(n)) for n in self.ctx.store.list_networks()
                  if n.name != name and n.type == self.name]
        used4 = [(w, s.ipv4.network) for w, s in others if s.ipv4]
        used6 = [(w, s.ipv6.network) for w, s in others if s.ipv6]
        keep_host = name if name in {s.name for s in host_net.specs()} else None
        host = host_net.host_subnets(exclude_bridge=keep_host)
        if out["ipv4.address"] == "auto":
            if old and old.get("ipv4.address") not in (None, "", "auto", "none"):
                out["ipv4.address"] = old["ipv4.address"]
            else:
                # the root's default network holds every instance by default; on a
                # host whose routes leave no /22 free it still gets a /24
                taken = [n for _, n in used4] + [h for h in host if h.version == 4]
                seed = f"{self.ctx.paths.root}:{name}"
                subnet = None
                if name == default_network_name(self.ctx.paths.root):
                    with contextlib.suppress(InternalError):
                        subnet = pick_subnet(taken, seed=seed, prefix=DEFAULT_NETWORK_PREFIX)
                if subnet is None:
                    subnet = pick_subnet(taken, seed=seed, prefix=NETWORK_PREFIX)
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
                h = hashlib.sha256(f"{self.ctx.paths.root}:{name}:v6".encode()).digest()
                out["ipv6.address"] = "fd{:02x}:{:02x}{:02x}:{:02x}{:02x}::1/64".format(*h[:5])
        if out["ipv6.address"] not in ("none", ""):
            iface6 = parse_ipv6_address(out["ipv6.address"])
            check_overlap(name, iface6.network, used6)
        return out

    def put_up(self, net: Network) -> None:
        before = self.ctx.host.spec(net.name)
        spec = spec_of(net)
        self.ctx.host.bring_up(spec)
        self.ctx.host.apply_rules()
        if before is not None and before.ipv4 is not None and spec.ipv4 is not None \
                and before.ipv4.ip == spec.ipv4.ip \
                and before.ipv4.network.prefixlen != spec.ipv4.network.prefixlen:
            self._readdress(net.name, spec.ipv4.network.prefixlen)

    def _readdress(self, network: str, prefixlen: int) -> None:
        """The subnet grew: each running instance's address on it gets the
        new prefix in place, as a DHCP renewal would under LXD, so it reaches
        its new neighbours directly. Best effort: an instance missed keeps
        working through the gateway, and has the new prefix at its next start."""
        for lease in self.ctx.store.list_leases(network=network):
            if not lease.address:
                continue
            pids = procs(self.ctx.paths.cgroups_path(lease.instance))
            if not pids:
                continue
            try:
                self.ctx.host.readdress(pids[0], IPv4Address(lease.address), prefixlen)
            except (CoveError, OSError) as e:
                log.warning("%s keeps %s with its old prefix until it restarts: %s",
                            lease.instance, lease.address, e)

    def take_down(self, net: Network) -> None:
        self.ctx.host.take_down(net.name)
        self.ctx.host.apply_rules()

    def start_up(self, net: Network) -> None:
        self.ctx.host.bring_up(spec_of(net))

    def shut_down(self, net: Network) -> None:
        self.ctx.host.take_down(net.name)

    def ensure_up(self, network: str) -> NetSpec:
        """The spec of a bridge that is up, bringing it up if it is not.

        Raises:
            BadRequest: no such network.
        """
        spec = self.ctx.host.spec(network)
        if spec is not None:
            return spec
        with self.ctx.lock:
            try:
                net = self.ctx.store.get_network(network)
            except NotFound:
                raise BadRequest(f"Network {network!r} does not exist") from None
            spec = spec_of(net)
            self.ctx.host.bring_up(spec)
            self.ctx.host.apply_rules()
            return spec

    # -- an instance's NICs -------------------------------------------------------------
    def check_nic(self, nic: Nic, net: Network) -> None:
        spec = spec_of(net)
        if nic.ipv4 is not None and (
                spec.ipv4 is None or nic.ipv4 not in spec.ipv4.network
                or nic.ipv4 in (spec.ipv4.ip, spec.ipv4.network.network_address,
                                spec.ipv4.network.broadcast_address)):
            raise BadRequest(f"Device {nic.device!r}: ipv4.address {nic.ipv4} is not a "
                             f"free host address of network {nic.network} "
                             f"({spec.ipv4.network if spec.ipv4 else 'no IPv4'})")

    def plan_nic(self, inst: Instance, nic: Nic, plan: NetPlan, undo: ExitStack) -> None:
        from cove.network._netlink import NicSetup

        rid = self.ctx.host.rid
        spec = self.ensure_up(nic.network)
        hw = nic.hwaddr or _mac(rid, inst.name, nic.device)
        lease = self.ctx.store.add_lease(spec.name, inst.name, nic.device, hw,
                                         _chooser(spec, nic))
        undo.callback(self.ctx.store.delete_lease, lease.id)
        plan.leases.append(lease)
        a4 = IPv4Interface(f"{lease.address}/{spec.ipv4.network.prefixlen}") \
            if lease.address and spec.ipv4 else None
        a6 = IPv6Interface(f"{lease.address6}/{spec.ipv6.network.prefixlen}") \
            if lease.address6 and spec.ipv6 else None
        plan.nics.append(NicSetup(
            host_name=veth_name(rid, lease.id), bridge=spec.bridge, name=nic.name,
            hwaddr=hw, mtu=nic.mtu or spec.mtu, ipv4=a4,
            gateway4=spec.ipv4.ip if spec.ipv4 else None, ipv6=a6,
            gateway6=spec.ipv6.ip if spec.ipv6 else None,
            default_route=not plan.routed, hairpin=plan.hairpin))
        plan.routed = plan.routed or a4 is not None
        addrs = [a.ip for a in (a4, a6) if a is not None]
        plan.addresses += addrs
        if addrs:
            plan.dns.append((spec.name, f"{inst.name}.{nic.device}",
                             dns.hosts_entry(addrs, dns_name(inst.name), spec.domain,
                                             _aliases(inst))))
        plan.servers += [i.ip for i in (spec.ipv4, spec.ipv6) if i is not None]
        plan.domains.append(spec.domain)

    def attach(self, name: str, pid: int, plan: NetPlan, undo: ExitStack) -> None:
        """Veths into ``pid``'s namespace, names into dnsmasq, ports into nftables."""
        if not plan.nics:
            return
        host = self.ctx.host
        undo.callback(host.detach, [n.host_name for n in plan.nics])
        host.attach(pid, plan.nics)
        for network, key, text in plan.dns:
            undo.callback(host.unpublish_dns, network, key)
            host.publish_dns(network, key, text)
        if plan.ports:
            undo.callback(host.forget_ports, name)
            host.set_ports(name, plan.ports, plan.ports[0].target)

    def release(self, name: str) -> None:
        host = self.ctx.host
        leases = self.ctx.store.list_leases(instance=name)
        if host.has_ports(name):
            host.forget_ports(name)
        if not leases:
            return
        for lease in leases:
            host.unpublish_dns(lease.network, f"{name}.{lease.device}")
        host.detach_later([veth_name(host.rid, lease.id) for lease in leases])
        for lease in leases:
            self.ctx.store.delete_lease(lease.id)

    def sweep(self, running: set[str]) -> None:
        for lease in self.ctx.store.list_leases():
            if lease.instance not in running:
                log.info("releasing stale lease %s of %s", lease.address, lease.instance)
                self.release(lease.instance)

    def own_ipv4(self, name: str) -> list[IPv4Address]:
        """The IPv4 addresses ``name`` holds on bridges."""
        return [IPv4Address(x.address) for x in self.ctx.store.list_leases(instance=name)
                if x.address]

    def set_ports(self, name: str, proxies: list[Proxy], *, apply: bool = True) -> None:
        """Publish exactly ``proxies`` for the running ``name`` (hairpin to match).

        Raises:
            BadRequest: a proxy needs an address the instance lacks.
        """
        host = self.ctx.host
        leases = self.ctx.store.list_leases(instance=name)
        ports = port_rules(proxies, [IPv4Address(x.address) for x in leases if x.address])
        if apply:
            host.set_hairpin_all([veth_name(host.rid, x.id) for x in leases], bool(ports))
            host.set_ports(name, ports, ports[0].target if ports else None)
        elif ports:
            host.set_ports(name, ports, ports[0].target, apply=False)

    def nic_states(self, inst: Instance, devices: dict[str, dict[str, str]]
                   ) -> dict[str, Any]:
        from cove.network._netlink import Netlink

        return self._nic_states(devices, self.ctx.store.list_leases(instance=inst.name),
                                Netlink.counters)

    def nic_states_of(self, insts: list[Instance],
                      devices: dict[str, dict[str, dict[str, str]]]
                      ) -> dict[str, dict[str, Any]]:
        """One lease query and one read of every link's counters for all;
        instances without a lease are left out (and with none, no counters
        are read)."""
        from cove.network._netlink import Netlink

        leases: dict[str, list[Lease]] = {i.name: [] for i in insts}
        for lease in self.ctx.store.list_leases():
            if lease.instance in leases:
                leases[lease.instance].append(lease)
        leased = [i.name for i in insts if leases[i.name]]
        if not leased:
            return {}
        table = Netlink.all_counters()
        return {key: self._nic_states(devices[key], leases[key], table.get) for key in leased}

    def _nic_states(self, devices: dict[str, dict[str, str]], leases: list[Lease],
                    counters_of: Callable[[str], dict[str, int] | None]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        host = self.ctx.host
        for lease in leases:
            spec = host.spec(lease.network)
            dev = devices.get(lease.device, {})
            ifname = dev.get("name") or lease.device
            host_name = veth_name(host.rid, lease.id)
            addrs = []
            if lease.address and spec and spec.ipv4:
                addrs.append({"family": "inet", "address": lease.address,
                              "netmask": str(spec.ipv4.network.prefixlen), "scope": "global"})
            if lease.address6 and spec and spec.ipv6:
                addrs.append({"family": "inet6", "address": lease.address6,
                              "netmask": str(spec.ipv6.network.prefixlen), "scope": "global"})
            counters = counters_of(host_name)
            out[ifname] = {
                "addresses": addrs,
                "counters": counters or dict.fromkeys(COUNTERS, 0),
                "hwaddr": lease.hwaddr, "host_name": host_name,
                "mtu": int(dev.get("mtu") or (spec.mtu if spec and spec.mtu else 1500)),
                "state": "up" if counters is not None else "down", "type": "broadcast"}
        return out


def _mac(rid: str, instance: str, device: str) -> str:
    h = hashlib.sha256(f"{rid}/{instance}/{device}".encode()).digest()
    return f"00:16:3e:{h[0] & 0x7F:02x}:{h[1]:02x}:{h[2]:02x}"


def _grows(old: dict[str, str], new: dict[str, str]) -> bool:
    """True if ``new``'s IPv4 subnet is ``old``'s grown: the same gateway
    address with a shorter prefix, so it holds every address ``old`` did."""
    a, b = old.get("ipv4.address", "none"), new.get("ipv4.address", "none")
    if "none" in (a, b) or "" in (a, b) or "auto" in (a, b):
        return False
    was, now = parse_ipv4_address(a), parse_ipv4_address(b)
    return (was.ip == now.ip and now.network.prefixlen < was.network.prefixlen
            and was.network.subnet_of(now.network))


def _chooser(spec: NetSpec, nic: Nic):  # type: ignore[no-untyped-def]
    def choose(taken4: set[str], taken6: set[str]) -> tuple[str, str]:
        a4 = a6 = ""
        if spec.ipv4 is not None:
            if nic.ipv4 is not None:
                a4 = str(nic.ipv4)
            else:
                a4 = str(free_address(spec.ipv4.network, map(address_int, taken4),
                                      gateway=spec.ipv4.ip))
        if spec.ipv6 is not None:
            a6 = str(free_address6(spec.ipv6.network,
                                   [int(spec.ipv6.ip), *map(address_int, taken6)]))
        return a4, a6
    return choose


def port_rules(proxies: list[Proxy], own4: list[IPv4Address]) -> list[nft.PortRule]:
    """Published ports (the ``nat=true`` proxies) of an instance whose
    addresses are ``own4``; other proxies are forwarders' (``_proxies``).

    Raises:
        BadRequest: proxies but no address, or a connect address not the instance's.
    """
    proxies = [p for p in proxies if p.nat]
    if not proxies:
        return []
    if not own4:
        raise BadRequest("Proxy devices need an IPv4 address on the instance")
    rules = []
    for p in proxies:
        target = own4[0]
        h = p.connect.host
        if not p.connect.any_host:
            if h not in own4:
                raise BadRequest(f"Device {p.device!r}: connect address {h} is not one of the "
                                 f"instance's ({', '.join(map(str, own4))})")
            target = h
        listen = None if p.listen.any_host else p.listen.host
        for hport, cport in p.mappings():
            rules.append(nft.PortRule(p.listen.proto, listen, hport, target, cport))
    return rules


def check_host_ports(keys: list[PortKey]) -> None:
    """Refuse ports a host process listens on (DNAT would hijack them).

    Raises:
        Conflict: naming the listener.
    """
    listening = host_listeners()
    for k in keys:
        for proto, addr, port in listening:
            if proto == k.proto and port == k.port and (
                    k.host == IPv4Address("0.0.0.0") or addr in (k.host, IPv4Address("0.0.0.0"))):
                raise Conflict(f"Host port {k} is reserved: a host process listens on "
                               f"{proto}:{addr}:{port}")


def host_listeners() -> list[tuple[str, IPv4Address, int]]:
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


def _aliases(inst: Instance) -> list[str]:
    """The instance's ``cove.dns.aliases`` as DNS names: each as given (a
    network alias, as Docker's: a stack's services find each other by the
    bare name in any project) and, in project ``dev``, also ``web.dev`` (as
    ``dns_name`` qualifies the instance's own name)."""
    project = dns_name(inst.name)[len(split_key(inst.name)[1]):]
    names = [a.strip() for a in inst.config.get("cove.dns.aliases", "").split(",") if a.strip()]
    return names + [n + project for n in names if project]
