"""Networks, NICs and published ports as data: names, config keys, device
strings (pure; no I/O).

Design note: everything a client can send about networking is checked here,
before anything is made, so a bad CIDR, an overlapping subnet, a bad proxy
string or a port published twice is a clear 4xx and nothing half-made is
left. Host names follow the kernel's rules (link names at most 15 bytes);
every link and table cove makes is named from a short id of its root
(``root_id``), so two cove roots on one host never touch each other's.

Proxy devices are LXD's ``proxy`` type in both of its modes. With
``nat=true`` a published port is a DNAT entry keyed by (listen address,
protocol, port), so the container sees the client's real address; the
connect address must be the instance's own (or 0.0.0.0 for its first), as
LXD requires. Without it (LXD's default) a forwarder process listens on one
side and connects from the other side's namespaces (``cove.network.forwarder``),
so ``connect=tcp:127.0.0.1:80`` reaches a server bound to the container's
loopback, and unix sockets work on either side.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface
from pathlib import Path

from cove.model.errors import BadRequest, Conflict

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_ROOT_BRIDGE",
    "IFNAMSIZ",
    "NETWORK_TYPES",
    "Nic",
    "PortKey",
    "Proxy",
    "ProxyAddr",
    "default_network_name",
    "nic_from_device",
    "parse_proxy_addr",
    "parse_publish",
    "port_conflicts",
    "proxy_from_device",
    "root_id",
    "table_name",
    "validate_network_config",
    "validate_network_name",
    "validate_network_type",
    "veth_name",
]

IFNAMSIZ = 15  # a link name is at most 15 bytes (16 with the NUL)
DEFAULT_ROOT_BRIDGE = "covebr0"
DEFAULT_DOMAIN = "cove"
DEFAULT_ROOT = Path("/var/lib/cove")
MAX_PORTS = 1024  # per proxy device (ranges expand to one entry per port)

_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_MAC = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")


# -- names ---------------------------------------------------------------------------

def root_id(root: Path | str) -> str:
    """Six hex digits naming a cove root on the host (links, tables, aliases)."""
    return hashlib.sha256(str(Path(root).absolute()).encode()).hexdigest()[:6]


def default_network_name(root: Path | str) -> str:
    """``covebr0`` for the default root, ``cove<root id>`` for any other, so
    test roots and a real cove never fight over one bridge name."""
    if Path(root).absolute() == DEFAULT_ROOT:
        return DEFAULT_ROOT_BRIDGE
    return f"cove{root_id(root)}"


def table_name(rid: str) -> str:
    """cove's own nftables table (family inet) for root ``rid``."""
    return f"cove_{rid}"


def veth_name(rid: str, lease_id: int) -> str:
    """Host end of a NIC's veth pair: ``cv<root id><lease id in hex>``."""
    name = f"cv{rid}{lease_id:x}"
    if len(name) > IFNAMSIZ:
        raise BadRequest(f"Lease id {lease_id} is too large for a link name")
    return name


def validate_network_name(name: object) -> str:
    """A network's name is also its bridge's link name.

    Raises:
        BadRequest: not 1-15 characters of letters, digits, ``_ . -``
            starting with a letter or digit.
    """
    if not isinstance(name, str) or not name:
        raise BadRequest("Network name must be a non-empty string")
    if len(name.encode()) > IFNAMSIZ or not _IFNAME.match(name):
        raise BadRequest(f"Invalid network name {name!r}: it names the bridge on the host, so "
                         "use 1 to 15 letters, digits, '_', '.' or '-', starting with a letter "
                         "or digit")
    if name.startswith("cv") and re.fullmatch(r"cv[0-9a-f]{6}[0-9a-f]+", name):
        raise BadRequest(f"Invalid network name {name!r}: names like cv<hex> are cove's veths")
    return name


def _domain(value: str) -> str:
    labels = value.split(".")
    if not value or len(value) > 253 or not all(_LABEL.match(lb) for lb in labels):
        raise BadRequest(f"Invalid dns.domain {value!r}: use DNS labels like cove or lab.example")
    return value


def _bool(key: str, value: str) -> bool:
    v = value.strip().lower()
    if v not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise BadRequest(f"Invalid {key} {value!r}: use true or false")
    return v in ("true", "1", "yes", "on")


def parse_ipv4_address(value: str) -> IPv4Interface:
    """``10.0.3.1/24``: the bridge's address and the subnet it serves.

    Raises:
        BadRequest: not an IPv4 CIDR, a prefix outside /8-/30, or the address
            is the subnet's network or broadcast address.
    """
    try:
        iface = IPv4Interface(value)
    except ValueError:
        raise BadRequest(f"Invalid ipv4.address {value!r}: use a CIDR like 10.0.3.1/24, "
                         "'auto' or 'none'") from None
    if "/" not in value:
        raise BadRequest(f"Invalid ipv4.address {value!r}: the prefix length is missing "
                         "(like 10.0.3.1/24)")
    net = iface.network
    if not 8 <= net.prefixlen <= 30:
        raise BadRequest(f"Invalid ipv4.address {value!r}: the prefix must be /8 to /30")
    if iface.ip in (net.network_address, net.broadcast_address):
        raise BadRequest(f"Invalid ipv4.address {value!r}: give the bridge's own address "
                         f"(like {net.network_address + 1}/{net.prefixlen}), not the "
                         "network's or broadcast address")
    if iface.ip.is_loopback or iface.ip.is_multicast or iface.ip.is_unspecified \
            or iface.ip.is_link_local:
        raise BadRequest(f"Invalid ipv4.address {value!r}: not a usable unicast subnet")
    return iface


def parse_ipv6_address(value: str) -> IPv6Interface:
    try:
        iface = IPv6Interface(value)
    except ValueError:
        raise BadRequest(f"Invalid ipv6.address {value!r}: use a CIDR like fd42:1::1/64, "
                         "'auto' or 'none'") from None
    if "/" not in value or not 64 <= iface.network.prefixlen <= 120:
        raise BadRequest(f"Invalid ipv6.address {value!r}: the prefix must be /64 to /120")
    if iface.ip == iface.network.network_address or iface.ip.is_link_local \
            or iface.ip.is_multicast or iface.ip.is_loopback:
        raise BadRequest(f"Invalid ipv6.address {value!r}: give the bridge's own address")
    return iface


_NET_KEYS = {"ipv4.address", "ipv4.nat", "ipv6.address", "ipv6.nat", "dns.domain",
             "bridge.mtu"}


NETWORK_TYPES = ("bridge", "cni")


def validate_network_type(value: object) -> str:
    """``bridge`` (cove's own, the default) or ``cni`` (a CNI config list).

    Raises:
        BadRequest: any other type.
    """
    t = value or "bridge"
    if t not in NETWORK_TYPES:
        raise BadRequest(f"Network type {value!r} is not supported: cove makes bridge "
                         "networks and runs CNI config lists (type cni)")
    return str(t)


def validate_network_config(config: Mapping[str, object],
                            type: str = "bridge") -> dict[str, str]:
    """Check a network's config; values come back as strings.

    Keys of a bridge (LXD's names): ``ipv4.address`` (CIDR, ``auto`` or
    ``none``), ``ipv4.nat``, ``ipv6.address`` (CIDR, ``auto`` or ``none``),
    ``ipv6.nat``, ``dns.domain``, ``bridge.mtu``. Keys of a ``cni`` network:
    ``cni.config`` (a config list as JSON text) or ``cni.path`` (a file in
    ``/etc/cni/net.d``). Both take free-form ``user.*``. Whether a cni
    network names exactly one conflist is checked on the merged config
    (``cni.check_keys``).

    Raises:
        BadRequest: naming the first unknown key or bad value.
    """
    if type == "cni":
        return _validate_cni_config(config)
    if not isinstance(config, Mapping):
        raise BadRequest("config must be an object of string keys and values")
    out: dict[str, str] = {}
    for key, raw in config.items():
        if not isinstance(key, str):
            raise BadRequest(f"Invalid config key {key!r}")
        if isinstance(raw, bool):
            value = "true" if raw else "false"
        elif isinstance(raw, (str, int)):
            value = str(raw)
        else:
            raise BadRequest(f"Invalid value for {key!r}: must be a string")
        if key.startswith("user."):
            out[key] = value
            continue
        if key not in _NET_KEYS:
            raise BadRequest(f"Unknown network configuration key: {key} (cove knows "
                             f"{', '.join(sorted(_NET_KEYS))} and user.*)")
        if value == "":
            out[key] = value
            continue
        if key == "ipv4.address" and value not in ("auto", "none"):
            parse_ipv4_address(value)
        elif key == "ipv6.address" and value not in ("auto", "none"):
            parse_ipv6_address(value)
        elif key in ("ipv4.nat", "ipv6.nat"):
            _bool(key, value)
        elif key == "dns.domain":
            _domain(value)
        elif key == "bridge.mtu" and (not value.isdigit() or not 1280 <= int(value) <= 9000):
            raise BadRequest(f"Invalid bridge.mtu {value!r}: a number from 1280 to 9000")
        out[key] = value
    return out


def _validate_cni_config(config: Mapping[str, object]) -> dict[str, str]:
    from cove.network import cni

    if not isinstance(config, Mapping):
        raise BadRequest("config must be an object of string keys and values")
    out: dict[str, str] = {}
    for key, raw in config.items():
        if not isinstance(key, str) or not isinstance(raw, str):
            raise BadRequest(f"Invalid value for {key!r}: must be a string")
        if key.startswith("user."):
            out[key] = raw
            continue
        if key not in cni.CNI_KEYS:
            raise BadRequest(f"Unknown configuration key of a cni network: {key} (cove knows "
                             f"{', '.join(cni.CNI_KEYS)} and user.*)")
        if raw == "":
            out[key] = raw
        elif key == "cni.config":
            cni.parse_conflist(raw)
            out[key] = raw
        else:
            out[key] = cni.validate_cni_path(raw)
    return out


def check_overlap(name: str, subnet: IPv4Network | ipaddress.IPv6Network,
                  others: Iterable[tuple[str, IPv4Network | ipaddress.IPv6Network]]) -> None:
    """Raise Conflict if ``subnet`` overlaps a subnet in ``others`` (``(what, net)``)."""
    for what, net in others:
        if net.version == subnet.version and subnet.overlaps(net):
            raise Conflict(f"Subnet {subnet} of network {name!r} overlaps {net} ({what})")


# -- NIC devices ----------------------------------------------------------------------

@dataclass(frozen=True)
class Nic:
    """A ``nic`` device: an interface ``name`` in the container on ``network``."""

    device: str  # the device's key in the instance's devices
    name: str  # interface name inside the container
    network: str
    ipv4: IPv4Address | None = None  # static address (``ipv4.address``)
    hwaddr: str | None = None
    mtu: int | None = None


_NIC_KEYS = {"type", "network", "parent", "nictype", "name", "ipv4.address", "hwaddr", "mtu",
             "host_name"}


def nic_from_device(key: str, dev: Mapping[str, str]) -> Nic:
    """Validate a ``nic`` device (``network=NAME``; LXD's ``nictype=bridged``
    with ``parent=NAME`` is read the same way).

    Raises:
        BadRequest: unknown keys, no network, bad names or addresses.
    """
    unknown = sorted(set(dev) - _NIC_KEYS)
    if unknown:
        raise BadRequest(f"Device {key!r}: unknown nic option {unknown[0]!r} (cove knows "
                         "network, name, ipv4.address, hwaddr, mtu)")
    nictype = dev.get("nictype", "")
    if nictype not in ("", "bridged"):
        raise BadRequest(f"Device {key!r}: nictype {nictype!r} is not supported "
                         "(use network=NAME)")
    network = dev.get("network") or dev.get("parent") or ""
    if not network:
        raise BadRequest(f"Device {key!r}: a nic needs network=NAME")
    name = dev.get("name") or key
    if len(name.encode()) > IFNAMSIZ or not _IFNAME.match(name) or name == "lo":
        raise BadRequest(f"Device {key!r}: invalid interface name {name!r}")
    ipv4 = None
    if dev.get("ipv4.address"):
        try:
            ipv4 = IPv4Address(dev["ipv4.address"])
        except ValueError:
            raise BadRequest(f"Device {key!r}: invalid ipv4.address "
                             f"{dev['ipv4.address']!r}") from None
    hwaddr = dev.get("hwaddr") or None
    if hwaddr is not None and (not _MAC.match(hwaddr) or int(hwaddr[:2], 16) & 1):
        raise BadRequest(f"Device {key!r}: invalid hwaddr {hwaddr!r} (a unicast MAC address)")
    mtu = None
    if dev.get("mtu"):
        if not dev["mtu"].isdigit() or not 1280 <= int(dev["mtu"]) <= 9000:
            raise BadRequest(f"Device {key!r}: invalid mtu {dev['mtu']!r}")
        mtu = int(dev["mtu"])
    return Nic(device=key, name=name, network=network, ipv4=ipv4, hwaddr=hwaddr, mtu=mtu)


# -- proxy devices -------------------------------------------------------------------

@dataclass(frozen=True)
class ProxyAddr:
    """``tcp:0.0.0.0:8080`` or ``unix:/run/app.sock`` parsed.

    ``proto`` is ``tcp``, ``udp`` or ``unix``. For tcp and udp, ``host`` and
    ``ports`` (ranges expanded) are set; for unix, ``path`` is (an abstract
    socket's starts with ``@``), ``host`` is 0.0.0.0 and ``ports`` is empty.
    """

    proto: str
    host: IPv4Address
    ports: tuple[int, ...]
    path: str = ""

    @property
    def any_host(self) -> bool:
        return self.host == IPv4Address("0.0.0.0")

    @property
    def abstract(self) -> bool:
        return self.path.startswith("@")

    def __str__(self) -> str:
        if self.proto == "unix":
            return f"unix:{self.path}"
        return f"{self.proto}:{self.host}:{','.join(map(str, self.ports))}"


def _ports(text: str, what: str) -> tuple[int, ...]:
    ports: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"(\d{1,5})(?:-(\d{1,5}))?", part.strip())
        if not m:
            raise BadRequest(f"Invalid {what}: bad port {part!r}")
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        if not 1 <= lo <= hi <= 65535:
            raise BadRequest(f"Invalid {what}: port {part!r} out of 1-65535 (or backwards)")
        ports.extend(range(lo, hi + 1))
        if len(ports) > MAX_PORTS:
            raise BadRequest(f"Invalid {what}: more than {MAX_PORTS} ports")
    if len(set(ports)) != len(ports):
        raise BadRequest(f"Invalid {what}: a port is given twice")
    return tuple(ports)


_UNIX_PATH_MAX = 107  # sun_path is 108 bytes with the NUL


def _unix_addr(value: str, path: str, what: str) -> ProxyAddr:
    if "\0" in path or not path or path == "@":
        raise BadRequest(f"Invalid {what} {value!r}: a unix socket needs a path")
    if not path.startswith(("/", "@")):
        raise BadRequest(f"Invalid {what} {value!r}: a unix socket path must be absolute "
                         "(or @name for an abstract socket)")
    if len(path.encode()) > _UNIX_PATH_MAX:
        raise BadRequest(f"Invalid {what} {value!r}: a unix socket path is at most "
                         f"{_UNIX_PATH_MAX} bytes")
    if not path.startswith("@") and path.endswith("/"):
        raise BadRequest(f"Invalid {what} {value!r}: a unix socket path names a file")
    return ProxyAddr("unix", IPv4Address("0.0.0.0"), (), path)


def parse_proxy_addr(value: str, what: str = "address") -> ProxyAddr:
    """Parse LXD's ``<type>:<addr>:<port>[-<port>][,<port>]`` (tcp or udp,
    IPv4) or ``unix:<path>`` (``unix:@name`` for an abstract socket).

    Raises:
        BadRequest: anything else, naming what was wrong.
    """
    if not isinstance(value, str):
        raise BadRequest(f"Invalid {what}: must be a string")
    proto, sep, rest = value.partition(":")
    if not sep:
        raise BadRequest(f"Invalid {what} {value!r}: use tcp:ADDRESS:PORT or udp:ADDRESS:PORT")
    if proto == "unix":
        return _unix_addr(value, rest, what)
    if proto not in ("tcp", "udp"):
        raise BadRequest(f"Invalid {what} {value!r}: protocol {proto!r} is not supported "
                         "(tcp, udp or unix)")
    if rest.startswith("["):
        raise BadRequest(f"Invalid {what} {value!r}: IPv6 addresses are not supported for "
                         "published ports yet")
    host, sep, ports = rest.rpartition(":")
    if not sep or not host:
        raise BadRequest(f"Invalid {what} {value!r}: use {proto}:ADDRESS:PORT")
    try:
        addr = IPv4Address(host)
    except ValueError:
        raise BadRequest(f"Invalid {what} {value!r}: {host!r} is not an IPv4 address") from None
    return ProxyAddr(proto, addr, _ports(ports, f"{what} {value!r}"))


@dataclass(frozen=True)
class Proxy:
    """A validated ``proxy`` device.

    ``nat``: DNAT rules (``cove.engine._net_bridge``); otherwise a forwarder
    process. ``bind`` is ``host`` (listen on the host, connect inside the
    instance) or ``instance`` (the other way round). ``uid``, ``gid`` and
    ``mode`` own a listening unix socket file; ``security_uid`` and
    ``security_gid`` are what the forwarder drops to once its sockets exist.
    """

    device: str
    listen: ProxyAddr
    connect: ProxyAddr
    nat: bool = True
    bind: str = "host"
    proxy_protocol: bool = False
    uid: int = 0
    gid: int = 0
    mode: int = 0o644
    security_uid: int = 0
    security_gid: int = 0

    def mappings(self) -> list[tuple[int, int]]:
        """(listen port, connect port) pairs (none for a unix listen)."""
        c = self.connect.ports
        if len(c) <= 1:
            return [(p, c[0] if c else 0) for p in self.listen.ports]
        return list(zip(self.listen.ports, c, strict=False))

    def port_keys(self) -> list[PortKey]:
        """The host ports this device listens on (none when it listens
        inside the instance or on a unix socket)."""
        if self.bind != "host" or self.listen.proto == "unix":
            return []
        return [PortKey(self.listen.proto, self.listen.host, p) for p, _ in self.mappings()]


_PROXY_KEYS = {"type", "listen", "connect", "nat", "bind", "proxy_protocol", "uid", "gid",
               "mode", "security.uid", "security.gid"}
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


def _flag(key: str, dev: Mapping[str, str], name: str) -> bool:
    value = str(dev.get(name, "")).strip().lower()
    if value not in _TRUE + _FALSE:
        raise BadRequest(f"Device {key!r}: {name} must be true or false, not {dev[name]!r}")
    return value in _TRUE


def _id(key: str, dev: Mapping[str, str], name: str) -> int:
    value = str(dev.get(name, "") or "0")
    if not value.isdigit() or int(value) > 2**32 - 2:
        raise BadRequest(f"Device {key!r}: {name} must be a user or group id, not {value!r}")
    return int(value)


def proxy_from_device(key: str, dev: Mapping[str, str]) -> Proxy:
    """Validate a ``proxy`` device with LXD's rules (``lxd/device/proxy.go``).

    Raises:
        BadRequest: missing or bad listen/connect, unsupported options,
            protocols that NAT or a forwarder cannot join, port counts that
            do not match, a NAT connect address that is not the instance's.
    """
    unknown = sorted(set(dev) - _PROXY_KEYS)
    if unknown:
        raise BadRequest(f"Device {key!r}: proxy option {unknown[0]!r} is not supported "
                         f"(cove knows {', '.join(sorted(_PROXY_KEYS - {'type'}))})")
    bind = dev.get("bind") or "host"
    if bind not in ("host", "instance", "guest", "container"):
        raise BadRequest(f"Device {key!r}: invalid bind {bind!r}: must be \"host\" or "
                         "\"instance\"")
    bind = "host" if bind == "host" else "instance"
    nat = _flag(key, dev, "nat")
    proxy_protocol = _flag(key, dev, "proxy_protocol")
    if not dev.get("listen") or not dev.get("connect"):
        raise BadRequest(f"Device {key!r}: a proxy needs listen=PROTO:ADDR:PORT and "
                         "connect=PROTO:ADDR:PORT")
    listen = parse_proxy_addr(dev["listen"], f"device {key!r} listen")
    connect = parse_proxy_addr(dev["connect"], f"device {key!r} connect")
    if len(connect.ports) > 1 and len(connect.ports) != len(listen.ports):
        raise BadRequest(f"Device {key!r}: connect must give one port or as many as listen")
    if proxy_protocol and (connect.proto != "tcp" or nat):
        raise BadRequest(f"Device {key!r}: the PROXY header can only be sent to tcp servers "
                         "in non-nat mode")
    owner = {k: dev[k] for k in ("uid", "gid", "mode") if dev.get(k)}
    if owner and (listen.proto != "unix" or listen.abstract):
        raise BadRequest(f"Device {key!r}: only proxy devices for non-abstract unix sockets "
                         "can carry uid, gid, or mode properties")
    mode = str(dev.get("mode") or "0644")
    if not re.fullmatch(r"0?[0-7]{3,4}", mode):
        raise BadRequest(f"Device {key!r}: mode must be octal, like 0660, not {mode!r}")
    if nat:
        _check_nat(key, bind, listen, connect)
    elif "udp" in (listen.proto, connect.proto) and listen.proto != connect.proto:
        raise BadRequest(f"Device {key!r}: proxying {listen.proto} <-> {connect.proto} is not "
                         "supported (udp forwards to udp only)")
    elif listen.proto != "unix" and (listen.host.is_multicast or (
            bind == "host" and listen.host.is_loopback
            and listen.host != IPv4Address("127.0.0.1"))):
        raise BadRequest(f"Device {key!r}: listen address {listen.host} is not supported "
                         "(use 0.0.0.0, 127.0.0.1 or a host address)")
    return Proxy(key, listen, connect, nat=nat, bind=bind, proxy_protocol=proxy_protocol,
                 uid=_id(key, dev, "uid"), gid=_id(key, dev, "gid"), mode=int(mode, 8),
                 security_uid=_id(key, dev, "security.uid"),
                 security_gid=_id(key, dev, "security.gid"))


def _check_nat(key: str, bind: str, listen: ProxyAddr, connect: ProxyAddr) -> None:
    if bind != "host":
        raise BadRequest(f"Device {key!r}: only host-bound proxies can use NAT")
    if "unix" in (listen.proto, connect.proto) or listen.proto != connect.proto:
        raise BadRequest(f"Device {key!r}: proxying {listen.proto} <-> {connect.proto} is not "
                         "supported when using NAT")
    if listen.host.is_multicast or (listen.host.is_loopback and listen.host !=
                                    IPv4Address("127.0.0.1")):
        raise BadRequest(f"Device {key!r}: listen address {listen.host} is not supported "
                         "(use 0.0.0.0, 127.0.0.1 or a host address)")
    # LXD's rule (setupNAT): DNAT may only reach the instance's own address,
    # else it would steal other hosts' traffic; 0.0.0.0 means its first one.
    # Whether it is one of the instance's is checked when the rules are made.
    if not connect.any_host and (connect.host.is_loopback or not connect.host.is_private):
        raise BadRequest(f"Device {key!r}: connect IP \"{connect.host}\" must be one of the "
                         "instance's IPv4 addresses (or 0.0.0.0) when using NAT")


@dataclass(frozen=True, order=True)
class PortKey:
    """A published host port: what two devices may not both claim."""

    proto: str
    host: IPv4Address
    port: int

    def clashes(self, other: PortKey) -> bool:
        if self.proto != other.proto or self.port != other.port:
            return False
        any_ = IPv4Address("0.0.0.0")
        return self.host == other.host or any_ in (self.host, other.host)

    def __str__(self) -> str:
        return f"{self.proto}:{self.host}:{self.port}"


def port_conflicts(mine: Iterable[PortKey],
                   taken: Iterable[tuple[str, PortKey]]) -> list[tuple[PortKey, str]]:
    """Which of ``mine`` clash with ``taken`` (``(owner, key)``): ``(key, owner)``."""
    taken = list(taken)
    out = []
    for k in mine:
        for owner, t in taken:
            if k.clashes(t):
                out.append((k, owner))
                break
    return out


def parse_publish(spec: str) -> tuple[str, dict[str, str]]:
    """``-p [ADDR:]HOSTPORT:PORT[/tcp|udp]`` as a proxy device ``(name, device)``,
    checked in full (``cove.model.publish`` is the shape only, for the CLI).

    Raises:
        BadRequest: the shorthand does not parse, or the device is invalid.
    """
    from cove.model.publish import publish_device

    name, dev = publish_device(spec)
    proxy_from_device(name, dev)
    return name, dev
