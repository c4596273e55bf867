"""Networks of type ``cni``: the instance side (see ``cove.network.cni`` and
``cove.network._cni`` for the conflist rules and how plugins run).

Design note: a NIC on a cni network is attached between ``runc create`` and
``runc start``, after the NICs on cove's bridges: the namespace is pinned,
the conflist's plugins ADD in order, and the addresses of the result go
into the container's ``/etc/hosts`` (and its ``/etc/resolv.conf`` when the
instance is on no cove bridge: the result's DNS, else the host's resolvers
without loopback ones). A cni network holds no lease in cove's store: the
IPAM plugin of the conflist owns its addresses. At stop, at a failed start
and in the startup sweep (instances that ended while coved was down) the
plugins DEL in reverse order with the recorded result, then the pin goes.
cove's proxy devices need a NIC on a cove bridge: ports of a CNI network
are its own plugins' business. Nothing of a cni network is on the host
until a NIC attaches.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from cove.engine._net_base import COUNTERS, NetPlan, NetworkType
from cove.model.errors import BadRequest, NotFound
from cove.model.records import Instance, Network
from cove.network import cni, dns
from cove.network.model import Nic, validate_network_config

__all__ = ["CniType"]

log = logging.getLogger("cove.engine")


class CniType(NetworkType):
    name = "cni"

    def new_config(self, name: str, config: dict[str, str],
                   old: Network | None, patch: bool) -> dict[str, str]:
        """A conflist may change while instances use it: each attachment
        keeps the conflist it was ADDed with for its DEL, and the new one
        applies from the next start."""
        new = dict(old.config) if old is not None and patch else {}
        new.update(validate_network_config(config, "cni"))
        new = {k: v for k, v in new.items() if v != ""}
        self.ctx.host.cni.load(new, f"Network {name}")  # one good conflist, plugins there
        return new

    def link(self, net: Network) -> str | None:
        """The bridge the first plugin names, if it is ``bridge`` (the
        plugin's default is ``cni0``)."""
        try:
            first = self.ctx.host.cni.load(net.config, f"Network {net.name}").plugins[0]
        except BadRequest:
            return None
        if first["type"] != "bridge":
            return None
        return str(first.get("bridge") or "cni0")

    # -- an instance's NICs -------------------------------------------------------------
    def check_nic(self, nic: Nic, net: Network) -> None:
        for key, value in (("ipv4.address", nic.ipv4), ("hwaddr", nic.hwaddr),
                           ("mtu", nic.mtu)):
            if value is not None:
                raise BadRequest(f"Device {nic.device!r}: {key} cannot be set on a NIC of "
                                 f"cni network {nic.network} (its conflist's plugins decide "
                                 "addresses and links)")

    def plan_nic(self, inst: Instance, nic: Nic, plan: NetPlan, undo: ExitStack) -> None:
        """Raises BadRequest: the conflist is bad now (a ``cni.path`` file
        changed) or names a missing plugin."""
        try:
            net = self.ctx.store.get_network(nic.network)
        except NotFound:
            raise BadRequest(f"Network {nic.network!r} does not exist") from None
        plan.cni.append((nic, self.ctx.host.cni.load(net.config, f"Network {net.name}")))

    def attach(self, name: str, pid: int, plan: NetPlan, undo: ExitStack) -> None:
        """ADD the instance's cni NICs in ``pid``'s namespace; rewrite its
        hosts (and resolv.conf) with what the results gave."""
        if not plan.cni:
            return
        c = self.ctx.host.cni
        if c.attachments(name):  # a DEL that failed last time: once more first
            self.release(name)
        undo.callback(self.release, name)
        netns = c.pin(name, pid)
        addrs: list[IPv4Address | IPv6Address] = []
        servers: list[IPv4Address | IPv6Address] = []
        search: list[str] = []
        for nic, conf in plan.cni:
            att = c.add(name, nic.device, nic.network, nic.name, conf, netns)
            got = cni.attached(att.result, nic.name)
            addrs += [a.ip for a in got.addresses]
            servers += list(got.nameservers)
            search += [*got.search, *([got.domain] if got.domain else [])]
        d = self.ctx.paths.instance_dir(name)
        (d / "hosts").write_text(dns.container_hosts(name, plan.domain,
                                                     [*plan.addresses, *addrs]))
        if not plan.bridged and servers:  # in place: the file is bind-mounted
            (d / "resolv.conf").write_text(dns.container_resolv(servers, search))

    def release(self, name: str) -> None:
        """DEL the instance's cni NICs and unpin its namespace (idempotent)."""
        for err in self.ctx.host.cni.release(name):
            log.error("%s", err)

    def sweep(self, running: set[str]) -> None:
        for name in self.ctx.host.cni.instances():
            if name not in running:
                log.info("releasing CNI attachments of %s", name)
                try:
                    self.release(name)
                except Exception:
                    log.exception("releasing CNI attachments of %s failed", name)

    def nic_states_of(self, insts: list[Instance],
                      devices: dict[str, dict[str, dict[str, str]]]
                      ) -> dict[str, dict[str, Any]]:
        """Only the instances with CNI state are looked at (one listing), the
        others left out."""
        have = self.ctx.host.cni.with_state()
        return {i.name: self.nic_states(i, devices[i.name]) for i in insts if i.name in have}

    def nic_states(self, inst: Instance, devices: dict[str, dict[str, str]]
                   ) -> dict[str, Any]:
        from cove.network._netlink import Netlink

        out: dict[str, Any] = {}
        for att in self.ctx.host.cni.attachments(inst.name):
            got = cni.attached(att.result, att.ifname)
            counters = Netlink.counters(got.host_peer) if got.host_peer else None
            try:
                mtu = int(Path(f"/sys/class/net/{got.host_peer}/mtu").read_text()) \
                    if got.host_peer else 1500
            except (OSError, ValueError):
                mtu = 1500
            out[att.ifname] = {
                "addresses": [{"family": "inet" if a.version == 4 else "inet6",
                               "address": str(a.ip), "netmask": str(a.network.prefixlen),
                               "scope": "global"} for a in got.addresses],
                "counters": counters or dict.fromkeys(COUNTERS, 0),
                "hwaddr": got.mac, "host_name": got.host_peer, "mtu": mtu,
                "state": "up" if counters is not None or not got.host_peer else "down",
                "type": "broadcast"}
        return out
