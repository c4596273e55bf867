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
are its own plugins' business.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cove.engine._core import EngineCore
from cove.model.errors import BadRequest, NotFound
from cove.model.records import Network
from cove.network import cni, dns

if TYPE_CHECKING:
    from cove.engine._network import NetPlan
    from cove.network.model import Nic

__all__ = ["CniMixin"]

log = logging.getLogger("cove.engine")

_COUNTERS = ("bytes_received", "bytes_sent", "packets_received", "packets_sent")


class CniMixin(EngineCore):
    def _cni_conf_of(self, network: str) -> cni.ConfList | None:
        """The conflist of ``network`` if it is a cni network, else None
        (cove's bridges that are up are known without asking the store).

        Raises:
            BadRequest: no such network, or its conflist is bad now (a
                ``cni.path`` file changed) or names a missing plugin.
        """
        if self.net.spec(network) is not None:
            return None
        try:
            net = self.store.get_network(network)
        except NotFound:
            raise BadRequest(f"Network {network!r} does not exist") from None
        if net.type != "cni":
            return None
        return self.net.cni.load(net.config, f"Network {network}")

    def _cni_check_config(self, name: str, config: dict[str, str]) -> None:
        """Raises BadRequest unless ``config`` names one good conflist whose
        plugins are installed."""
        self.net.cni.load(config, f"Network {name}")

    @staticmethod
    def _cni_check_nic(nic: Nic) -> None:
        for key, value in (("ipv4.address", nic.ipv4), ("hwaddr", nic.hwaddr),
                           ("mtu", nic.mtu)):
            if value is not None:
                raise BadRequest(f"Device {nic.device!r}: {key} cannot be set on a NIC of "
                                 f"cni network {nic.network} (its conflist's plugins decide "
                                 "addresses and links)")

    def _cni_attach(self, name: str, pid: int, plan: NetPlan, undo: ExitStack) -> None:
        """ADD the instance's cni NICs in ``pid``'s namespace; rewrite its
        hosts (and resolv.conf) with what the results gave."""
        c = self.net.cni
        if c.attachments(name):  # a DEL that failed last time: once more first
            self._cni_release(name)
        undo.callback(self._cni_release, name)
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
        d = self.instance_dir(name)
        (d / "hosts").write_text(dns.container_hosts(name, plan.domain,
                                                     [*plan.addresses, *addrs]))
        if not plan.bridged and servers:  # in place: the file is bind-mounted
            (d / "resolv.conf").write_text(dns.container_resolv(servers, search))

    def _cni_release(self, name: str) -> None:
        """DEL the instance's cni NICs and unpin its namespace (idempotent)."""
        for err in self.net.cni.release(name):
            log.error("%s", err)

    def _cni_startup(self, running: set[str]) -> None:
        """DEL what instances that no longer run left attached."""
        for name in self.net.cni.instances():
            if name not in running:
                log.info("releasing CNI attachments of %s", name)
                try:
                    self._cni_release(name)
                except Exception:
                    log.exception("releasing CNI attachments of %s failed", name)

    def _cni_state(self, name: str) -> dict[str, Any]:
        """LXD's ``state.network`` entries of the instance's cni NICs."""
        from cove.network._netlink import Netlink

        out: dict[str, Any] = {}
        for att in self.net.cni.attachments(name):
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
                "counters": counters or dict.fromkeys(_COUNTERS, 0),
                "hwaddr": got.mac, "host_name": got.host_peer, "mtu": mtu,
                "state": "up" if counters is not None or not got.host_peer else "down",
                "type": "broadcast"}
        return out

    def _cni_bridge(self, net: Network) -> str | None:
        """The bridge a cni network's first plugin names, if it is ``bridge``
        (its ``state``: the plugin's default is ``cni0``)."""
        try:
            first = self.net.cni.load(net.config, f"Network {net.name}").plugins[0]
        except BadRequest:
            return None
        if first["type"] != "bridge":
            return None
        return str(first.get("bridge") or "cni0")
