"""An instance's network along its life: its NIC and proxy devices checked
when they are set, planned and attached at each start, released at each
stop, changed live, and reported in its state.

Design note: this is the port the instances service holds (``NetworkPort``);
each NIC is handled by the type of its network (``NETWORK_TYPES``), in the
registry's order, so bridges come first (the default route, the resolver
and the instance's domain are its first bridge's). What is common to all
types is here: the container's ``/etc/hosts`` and ``/etc/resolv.conf``
(bind mounts, written before the spec is built), published ports, and the
checks that span devices.
"""

from __future__ import annotations

import copy
import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from cove.api import LOOPBACK_STATE
from cove.engine._net_base import NetPlan, NetworkType
from cove.engine._net_bridge import check_host_ports, port_rules
from cove.engine._networks import Networks
from cove.engine._profiles import Profiles
from cove.engine._proxies import Forwarders
from cove.engine._templates import HOSTS_MARK
from cove.model.errors import BadRequest, Conflict, CoveError, NotFound
from cove.model.projects import display_name, dns_name
from cove.model.records import Instance
from cove.network import dns
from cove.network.model import Nic, Proxy, nic_from_device, proxy_from_device
from cove.storage.safefs import RootFS

__all__ = ["InstanceNetworks"]

log = logging.getLogger("cove.engine")


def _loopback() -> dict[str, Any]:
    """LXD's ``lo`` entry, a copy of its own (``states`` shares one)."""
    return copy.deepcopy(LOOPBACK_STATE)


def devices_of(devices: dict[str, dict[str, str]]) -> tuple[list[Nic], list[Proxy]]:
    """The NIC and proxy devices, by device name."""
    nics, proxies = [], []
    for key in sorted(devices):
        dev = devices[key]
        if dev.get("type") == "nic":
            nics.append(nic_from_device(key, dev))
        elif dev.get("type") == "proxy":
            proxies.append(proxy_from_device(key, dev))
    return nics, proxies


class InstanceNetworks:
    """The networks side of the instance lifecycle (see module note)."""

    def __init__(self, networks: Networks, profiles: Profiles, forwarders: Forwarders) -> None:
        self._networks = networks
        self._ctx = networks.ctx
        self._profiles = profiles
        self._forwarders = forwarders

    def _type_for(self, network: str) -> NetworkType:
        if self._ctx.host.spec(network) is not None:  # a bridge that is up: no store read
            return self._networks.bridge
        try:
            return self._networks.type_of(self._ctx.store.get_network(network))
        except NotFound:
            raise BadRequest(f"Network {network!r} does not exist") from None

    # -- when devices are set -------------------------------------------------------------
    def check_devices(self, name: str, devices: dict[str, dict[str, str]],
                      profiles: list[str]) -> None:
        """Validate an instance's NIC and proxy devices against the host.

        Raises:
            BadRequest: a NIC names a network that does not exist, a static
                address outside its subnet, or a proxy is malformed.
            Conflict: a published host port is another instance's already,
                or a host process listens on it.
        """
        self.check_expanded(name, self._profiles.expand(profiles, devices))

    def check_expanded(self, name: str, expanded: dict[str, dict[str, str]]) -> None:
        """``check_devices`` of devices already expanded with their profiles."""
        nics, proxies = devices_of(expanded)
        bridged = False
        for nic in nics:
            try:
                net = self._ctx.store.get_network(nic.network)
            except NotFound:
                raise BadRequest(f"Device {nic.device!r}: network {nic.network!r} does not "
                                 "exist") from None
            kind = self._networks.type_of(net)
            kind.check_nic(nic, net)
            bridged = bridged or kind is self._networks.bridge
        names = [n.name for n in nics]
        if len(set(names)) != len(names):
            raise BadRequest("Two NICs have the same interface name")
        nat = [p for p in proxies if p.nat]
        if nat and not nics:
            raise BadRequest("A proxy device with nat=true needs the instance to have a NIC")
        if nat and not bridged:
            raise BadRequest("A proxy device with nat=true needs a NIC on a cove bridge "
                             "network: the ports of a cni network are its conflist's "
                             "plugins' (portmap)")
        mine = [k for p in proxies for k in p.port_keys()]
        if len(set(mine)) != len(mine) or any(
                a.clashes(b) for i, a in enumerate(mine) for b in mine[i + 1:]):
            raise Conflict("Two proxy devices of the instance publish the same host port")
        if not mine:
            return
        # Against the ports published now (running instances), as Docker does: a
        # stopped instance holds no port, and finds it taken when it starts.
        # In memory, so the check does not grow with the number of instances.
        # A forwarder's port is the kernel's to refuse when it binds (a 409 then);
        # it is checked against NAT ports here, which bind nothing.
        for key in mine:
            owner = self._ctx.host.port_owner(key, exclude=name)
            if owner is not None:
                raise Conflict(f"Host port {key} is already published by instance "
                               f"{display_name(owner)}")
        check_host_ports([k for p in nat for k in p.port_keys()])

    # -- an instance's run ------------------------------------------------------------------
    def prepare(self, inst: Instance, undo: ExitStack) -> NetPlan:
        """Lease addresses and write /etc/hosts and resolv.conf; each step
        registers its undo on ``undo``.

        Raises:
            BadRequest: a NIC's network is gone or broken, or a proxy cannot work.
        """
        nics, proxies = devices_of(self._profiles.expanded_devices(inst))
        plan = NetPlan(hairpin=any(p.nat for p in proxies),
                       forwards=[p for p in proxies if not p.nat])
        if not nics:
            return plan
        for nic in nics:
            self._type_for(nic.network).plan_nic(inst, nic, plan, undo)
        plan.addresses.sort(key=lambda a: a.version)  # IPv4 first (stable)
        plan.ports = port_rules(proxies, [a for a in plan.addresses if a.version == 4])
        d = self._ctx.paths.instance_dir(inst.name)
        hosts, resolv = d / "hosts", d / "resolv.conf"
        self._write_hosts(inst, plan, None)
        if plan.bridged:
            resolv.write_text(dns.container_resolv(plan.servers, plan.domains))
        else:  # no cove bridge: the host's resolvers until a CNI result names others
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

    def rebase_hosts(self, inst: Instance, plan: NetPlan, rootfs: Path) -> None:
        """When the instance's templates write ``/etc/hosts`` (``_templates``'
        mark), base the ``/etc/hosts`` cove bind-mounts for its NICs on the
        one rendered into ``rootfs`` (the mounted root, read inside it), so it
        sees what its image's template wrote, as under LXD (which mounts no
        /etc/hosts). Called once the start's templates are applied; nothing
        to do without NICs or the mark."""
        if plan.mounts and (self._ctx.paths.instance_dir(inst.name) / HOSTS_MARK).exists():
            self._write_hosts(inst, plan, _templated_hosts(rootfs))

    def _write_hosts(self, inst: Instance, plan: NetPlan, base: str | None) -> None:
        # its own name, and its FQDN as the network's DNS has it (web.PROJECT.domain)
        host, _, sub = dns_name(inst.name).partition(".")
        host = self._profiles.expanded_config(inst).get("cove.hostname") or host
        domain = f"{sub}.{plan.domain}" if sub and plan.domain else plan.domain
        hosts = self._ctx.paths.instance_dir(inst.name) / "hosts"
        hosts.write_text(dns.container_hosts(host, domain, plan.addresses) if base is None
                         else dns.hosts_on_base(base, host, domain, plan.addresses))

    def attach(self, name: str, pid: int, plan: NetPlan, undo: ExitStack) -> None:
        """Attach the planned NICs inside ``pid``'s namespace, type by type."""
        for kind in self._networks.types.values():
            kind.attach(name, pid, plan, undo)
        if plan.forwards:  # after the NICs: a forwarder may listen on their addresses
            self._forwarders.start(name, pid, plan.forwards, undo)

    def release(self, name: str) -> None:
        """Withdraw everything ``name``'s run held on networks. Idempotent."""
        self._forwarders.stop(name)
        for kind in reversed(self._networks.types.values()):
            kind.release(name)

    def apply_devices(self, inst: Instance, new_devices: dict[str, dict[str, str]]) -> None:
        """Apply changed proxy devices to a running instance at once.

        Raises:
            BadRequest: NICs changed (they need a restart).
            Conflict: a new host port is taken.
        """
        self.apply_expanded(inst, self._profiles.expand(inst.profiles, new_devices,
                                                        inst.project))

    def apply_expanded(self, inst: Instance, new: dict[str, dict[str, str]]) -> None:
        """``apply_devices`` of devices already expanded with their profiles
        (``inst`` as it runs now)."""
        previous = devices_of(self._profiles.expanded_devices(inst))[1]
        self.check_nics_unchanged(inst, new)
        _, proxies = devices_of(new)
        self._forwarders.sync(inst.name, proxies, previous=previous)
        self._networks.bridge.set_ports(inst.name, proxies)

    def check_nics_unchanged(self, inst: Instance, new: dict[str, dict[str, str]]) -> None:
        """Raises BadRequest if the NICs of running ``inst`` would change."""
        old = self._profiles.expanded_devices(inst)
        nic_old = {k: v for k, v in old.items() if v.get("type") == "nic"}
        nic_new = {k: v for k, v in new.items() if v.get("type") == "nic"}
        if nic_old != nic_new:
            raise BadRequest("NICs of a running instance cannot change: stop it first")

    def resume(self, running: set[str]) -> None:
        """At startup: adopt or restart the forwarders of the ``running``
        instances, stop stray ones (``Forwarders.resume``)."""
        wanted = {}
        for name in sorted(running):
            try:
                devices = self._profiles.expanded_devices(self._ctx.store.get_instance(name))
                wanted[name] = devices_of(devices)[1]
            except Exception:
                log.exception("proxy devices of %s could not be read", name)
        self._forwarders.resume(wanted)

    def states(self, insts: list[Instance]) -> dict[str, dict[str, Any]]:
        """``state`` of many running instances, by key: each network type is
        asked once for all of them (a listing)."""
        # the listing's rows come expanded (``Instances.all``, ``listed``)
        devices = {i.name: i.expanded_devices if i.expanded_devices is not None
                   else self._profiles.expanded_devices(i) for i in insts}
        # one loopback entry for all (not a copy each): the listing encodes it once
        out: dict[str, dict[str, Any]] = {i.name: {"lo": LOOPBACK_STATE} for i in insts}
        for kind in reversed(self._networks.types.values()):  # cni first, then bridges
            for key, nics in kind.nic_states_of(insts, devices).items():
                out[key].update(nics)
        return out

    def state(self, inst: Instance) -> dict[str, Any]:
        """LXD's ``state.network`` of a running instance."""
        out: dict[str, Any] = {"lo": _loopback()}
        devices = self._profiles.expanded_devices(inst)
        for kind in reversed(self._networks.types.values()):  # cni first, then bridges
            out.update(kind.nic_states(inst, devices))
        return out


def _templated_hosts(rootfs: Path) -> str | None:
    """The ``/etc/hosts`` the image's template rendered into the mounted
    ``rootfs`` (read inside that root: the container may have made it a
    symlink); None when there is none to read (cove's own file is used then)."""
    try:
        with RootFS(rootfs) as root:
            data = root.read_bytes("/etc/hosts", 64 << 10)
    except (CoveError, OSError):
        return None
    return data.decode("utf-8", "replace")
