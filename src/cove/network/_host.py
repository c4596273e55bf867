"""The host side of cove's networks: bridges, dnsmasqs, the nftables table,
published ports and NICs, for one cove root.

Design note: the engine decides *what* (which instance holds which lease,
which ports it publishes); this object makes the host match and knows how
to find and remove whatever this root made, and nothing else: bridges by
their ``ifalias``, veths by their ``cv<root id>`` prefix, dnsmasqs by their
pid file and command line, rules by their table. Live published ports are
kept in memory (rebuilt by the engine at startup from the running
instances), so the whole table can be rewritten in one transaction after a
network change while a port change is only an element change.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from pathlib import Path
from typing import TYPE_CHECKING

from cove.model.errors import Conflict
from cove.model.projects import display_name
from cove.model.records import Network
from cove.network import dns, nft
from cove.network.model import (
    DEFAULT_DOMAIN,
    PortKey,
    parse_ipv4_address,
    parse_ipv6_address,
    root_id,
    table_name,
)

if TYPE_CHECKING:
    from cove.network._cni import Cni
    from cove.network._dnsmasq import Dnsmasq
    from cove.network._netlink import Netlink, NicSetup
    from cove.network._nftables import Nft

__all__ = ["NetSpec", "NetworkHost", "spec_of"]

log = logging.getLogger("cove.network")

_ANY = IPv4Address("0.0.0.0")


@dataclass(frozen=True)
class NetSpec:
    """A network's config, resolved (no ``auto`` left)."""

    name: str
    ipv4: IPv4Interface | None
    nat4: bool
    ipv6: IPv6Interface | None
    nat6: bool
    domain: str
    mtu: int | None

    @property
    def bridge(self) -> str:
        return self.name

    def rules(self) -> nft.NetRules:
        return nft.NetRules(self.name, self.ipv4.network if self.ipv4 else None, self.nat4,
                            self.ipv6.network if self.ipv6 else None, self.nat6)


def spec_of(net: Network) -> NetSpec:
    """Resolve a stored network's config (its addresses are concrete)."""
    c = net.config
    a4 = c.get("ipv4.address", "none") or "none"
    a6 = c.get("ipv6.address", "none") or "none"
    return NetSpec(
        name=net.name,
        ipv4=parse_ipv4_address(a4) if a4 not in ("none", "auto") else None,
        nat4=(c.get("ipv4.nat") or "true").lower() in ("true", "1", "yes", "on"),
        ipv6=parse_ipv6_address(a6) if a6 not in ("none", "auto") else None,
        nat6=(c.get("ipv6.nat") or "true").lower() in ("true", "1", "yes", "on"),
        domain=c.get("dns.domain") or DEFAULT_DOMAIN,
        mtu=int(c["bridge.mtu"]) if c.get("bridge.mtu") else None,
    )


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


class NetworkHost:
    """Host resources of one cove root's networks. Thread-safe."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.rid = root_id(self.root)
        self.table = table_name(self.rid)
        self.dir = self.root / "networks"
        self._lock = threading.RLock()
        self._nl: Netlink | None = None
        self._nft: Nft | None = None
        self._cni: Cni | None = None
        self._specs: dict[str, NetSpec] = {}  # networks that are up
        self._ports: dict[str, list[nft.PortRule]] = {}  # instance -> its live ports
        self._hairpins: dict[str, IPv4Address] = {}
        # (proto, port) -> {listen address (None: all) -> instance}: conflict lookups
        self._by_port: dict[tuple[str, int], dict[IPv4Address | None, str]] = {}
        self._warned_forwarding = False
        self._doomed: list[tuple[float, str]] = []  # (when, veth) to remove if still there
        self._reaper: threading.Thread | None = None

    # -- lazily loaded drivers (coved only; never on the CLI's import path) -------------
    @property
    def nl(self) -> Netlink:
        if self._nl is None:
            from cove.network._netlink import Netlink

            self._nl = Netlink()
        return self._nl

    @property
    def nftables(self) -> Nft:
        if self._nft is None:
            from cove.network._nftables import Nft

            self._nft = Nft()
        return self._nft

    @property
    def cni(self) -> Cni:
        """CNI attachments (networks of type ``cni``)."""
        if self._cni is None:
            from cove.network._cni import Cni

            self._cni = Cni(self.root, self.rid)
        return self._cni

    def dnsmasq(self, name: str) -> Dnsmasq:
        from cove.network._dnsmasq import Dnsmasq

        return Dnsmasq(self.dir / name)

    def alias(self, name: str) -> str:
        return f"cove:{self.rid}:{name}"

    @property
    def veth_prefix(self) -> str:
        return f"cv{self.rid}"

    # -- what is in use -------------------------------------------------------------------
    def host_subnets(self, exclude_bridge: str | None = None
                     ) -> list[IPv4Network | IPv6Network]:
        """Routes and addresses on the host, minus those of ``exclude_bridge``
        (a bridge of ours being re-made keeps its own subnet)."""
        nets = self.nl.used_networks()
        if exclude_bridge is not None and exclude_bridge in self._specs:
            own = self._specs[exclude_bridge]
            mine = {n for n in (own.ipv4.network if own.ipv4 else None,
                                own.ipv6.network if own.ipv6 else None) if n is not None}
            nets = [n for n in nets if not any(n.subnet_of(m) for m in mine  # type: ignore
                                               if n.version == m.version)]
        return nets

    # -- networks ------------------------------------------------------------------------
    def bring_up(self, spec: NetSpec) -> None:
        """Make the bridge and its dnsmasq match ``spec`` (idempotent); the
        ruleset is the caller's next step (``apply_rules``)."""
        with self._lock:
            self.nl.ensure_bridge(spec.name, self.alias(spec.name), spec.ipv4, spec.ipv6,
                                  spec.mtu)
            d = self.dnsmasq(spec.name)
            d.prepare()
            listen = tuple(i.ip for i in (spec.ipv4, spec.ipv6) if i is not None)
            conf = dns.dnsmasq_conf(dns.DnsmasqConfig(
                network=spec.name, bridge=spec.name, listen=listen, domain=spec.domain,
                hosts_dir=str(d.hosts_dir), pid_file=str(d.pid_file), log_file=str(d.log_file)))
            current = d.conf.read_text() if d.conf.exists() else None
            if listen and (current != conf or d.pid() is None):
                d.start(conf)
            elif not listen:
                d.stop()
            self._specs[spec.name] = spec
            if spec.nat4 and spec.ipv4 and not self._warned_forwarding and \
                    _read("/proc/sys/net/ipv4/ip_forward") == "0":
                self._warned_forwarding = True
                log.warning("net.ipv4.ip_forward is 0: instances on %s reach the host and each "
                            "other, but not beyond the host; cove does not change that "
                            "host-wide setting (sysctl -w net.ipv4.ip_forward=1 does)",
                            spec.name)

    def take_down_files(self, name: str) -> None:
        """Stop the dnsmasq and remove the files of a network no longer recorded."""
        self.dnsmasq(name).stop()
        shutil.rmtree(self.dir / name, ignore_errors=True)

    def take_down(self, name: str) -> None:
        """Remove a network's bridge, dnsmasq and files (idempotent)."""
        with self._lock:
            self._specs.pop(name, None)
            d = self.dnsmasq(name)
            d.stop()
            if self.nl.links().get(name) == self.alias(name):
                self.nl.delete_link(name)
            shutil.rmtree(d.dir, ignore_errors=True)

    def specs(self) -> list[NetSpec]:
        with self._lock:
            return list(self._specs.values())

    def spec(self, name: str) -> NetSpec | None:
        with self._lock:
            return self._specs.get(name)

    def apply_rules(self) -> None:
        """Rewrite cove's table from the networks that are up and the live ports
        (one transaction)."""
        from cove.network._netlink import br_netfilter_active

        with self._lock:
            ports = [p for ps in self._ports.values() for p in ps]
            text = nft.ruleset(self.table, [s.rules() for s in self._specs.values()], ports,
                               self._hairpins.values(), hairpin_all=not br_netfilter_active())
            self.nftables.run(text)

    def remove_rules(self) -> None:
        with self._lock:
            self.nftables.run(nft.delete_table(self.table))

    def has_table(self) -> bool:
        return ("inet", self.table) in self.nftables.tables()

    # -- NICs ----------------------------------------------------------------------------
    def attach(self, pid: int, nics: list[NicSetup]) -> None:
        """Put ``nics`` into the network namespace of process ``pid``."""
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            for nic in nics:
                self.nl.attach(fd, nic)
        finally:
            os.close(fd)

    def readdress(self, pid: int, address: IPv4Address, prefixlen: int) -> bool:
        """Give ``address`` in ``pid``'s network namespace the prefix ``prefixlen``.

        Raises:
            InternalError: netlink refused it.  OSError: the process is gone.
        """
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            return self.nl.readdress(fd, address, prefixlen)
        finally:
            os.close(fd)

    def detach(self, host_names: list[str]) -> None:
        """Remove veths still there (an undo: the namespace may still live)."""
        for name in host_names:
            if self.nl.index(name) is not None:
                self.nl.delete_link(name)

    def detach_later(self, host_names: list[str], delay: float = 1.0) -> None:
        """After a container ended: the kernel removes its veths with its
        namespace, asynchronously; remove any still there ``delay`` seconds
        later (deleting a veth takes ~20 ms of RCU waiting, which the stop
        path need not pay). A coved that exits first leaves them to the
        next startup's sweep."""
        with self._lock:
            self._doomed.extend((time.monotonic() + delay, n) for n in host_names)
            if self._reaper is None or not self._reaper.is_alive():
                self._reaper = threading.Thread(target=self._reap_veths, name="veth-reaper",
                                                daemon=True)
                self._reaper.start()

    def _reap_veths(self) -> None:
        while True:
            with self._lock:
                if not self._doomed:
                    self._reaper = None
                    return
                due, name = self._doomed[0]
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
                continue
            with self._lock:
                self._doomed.pop(0)
            try:
                self.detach([name])
            except Exception:  # noqa: BLE001 - the startup sweep removes it
                log.warning("removing veth %s failed", name)

    def set_hairpin_all(self, host_names: list[str], on: bool) -> None:
        for name in host_names:
            self.nl.set_hairpin(name, on)

    def publish_dns(self, network: str, key: str, text: str) -> None:
        self.dnsmasq(network).write_host(key, text)

    def unpublish_dns(self, network: str, key: str) -> None:
        self.dnsmasq(network).remove_host(key)

    # -- published ports ---------------------------------------------------------------------
    def has_ports(self, instance: str) -> bool:
        with self._lock:
            return instance in self._ports or instance in self._hairpins

    def port_owner(self, key: PortKey, exclude: str | None = None) -> str | None:
        """The instance that publishes a port clashing with ``key`` now, if any
        (an index lookup: the same cost with 1 or 1,000 ports)."""
        with self._lock:
            holders = self._by_port.get((key.proto, key.port), {})
            for host, inst in holders.items():
                if inst != exclude and (host is None or key.host in (_ANY, host)):
                    return inst
            return None

    def set_ports(self, instance: str, ports: list[nft.PortRule],
                  hairpin: IPv4Address | None, *, apply: bool = True) -> None:
        """Make ``instance``'s live ports exactly ``ports`` (element changes in
        one transaction).

        Raises:
            Conflict: another instance holds one of the host ports.
        """
        with self._lock:
            old = self._ports.get(instance, [])
            old_hp = self._hairpins.get(instance)
            for p in ports:
                k = PortKey(p.proto, p.listen or _ANY, p.port)
                owner = self.port_owner(k, exclude=instance)
                if owner is not None:
                    raise Conflict(f"Host port {k} is already published by instance "
                                   f"{display_name(owner)}")
            gone = [p for p in old if p not in ports]
            new = [p for p in ports if p not in old]
            text = ""
            if gone or (old_hp is not None and old_hp != hairpin):
                text += nft.ports_command(self.table, "delete", gone,
                                          [old_hp] if old_hp and old_hp != hairpin else [])
            if new or (hairpin is not None and hairpin != old_hp):
                text += nft.ports_command(self.table, "add", new,
                                          [hairpin] if hairpin and hairpin != old_hp else [])
            if apply and text:
                self.nftables.run(text)
            for p in old:
                holders = self._by_port.get((p.proto, p.port), {})
                if holders.get(p.listen) == instance:
                    del holders[p.listen]
                if not holders:
                    self._by_port.pop((p.proto, p.port), None)
            for p in ports:
                self._by_port.setdefault((p.proto, p.port), {})[p.listen] = instance
            if ports:
                self._ports[instance] = list(ports)
            else:
                self._ports.pop(instance, None)
            if hairpin is not None:
                self._hairpins[instance] = hairpin
            else:
                self._hairpins.pop(instance, None)

    def forget_ports(self, instance: str) -> None:
        """Withdraw ``instance``'s ports (idempotent; a table that is gone or
        rebuilt meanwhile is fine)."""
        try:
            self.set_ports(instance, [], None)
        except Exception:  # noqa: BLE001 - the next full rewrite is exact anyway
            log.warning("withdrawing ports of %s failed; rewriting the table", instance)
            with self._lock:
                for p in self._ports.pop(instance, []):
                    holders = self._by_port.get((p.proto, p.port), {})
                    if holders.get(p.listen) == instance:
                        del holders[p.listen]
                self._hairpins.pop(instance, None)
                with contextlib.suppress(Exception):
                    self.apply_rules()

    # -- leftovers -------------------------------------------------------------------------------
    def stray_links(self, networks: set[str], veths: set[str]) -> list[str]:
        """Links this root made that nothing recorded owns."""
        out = []
        prefix = f"cove:{self.rid}:"
        for name, alias in self.nl.links().items():
            if alias.startswith(prefix):
                if alias[len(prefix):] not in networks:
                    out.append(name)
            elif name.startswith(self.veth_prefix) and name not in veths:
                out.append(name)
        return out

    def kill_stray_dnsmasqs(self, networks: set[str]) -> list[int]:
        """Kill dnsmasqs of this root serving no recorded network."""
        from cove.network._dnsmasq import kill, stray_pids

        pids = stray_pids(self.dir, networks)
        for pid in pids:
            kill(pid)
        return pids

    def stray_dirs(self, networks: set[str]) -> list[str]:
        try:
            return sorted(d for d in os.listdir(self.dir) if d not in networks)
        except OSError:
            return []

    def close(self) -> None:
        if self._nft is not None:
            self._nft.close()
        if self._nl is not None:
            self._nl.close()
