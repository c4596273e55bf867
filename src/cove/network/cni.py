"""CNI networks as data: config lists, each plugin's stdin, results (pure).

Design note: a network of type ``cni`` runs a CNI config list (a
*conflist*) from any CNI setup, with the plugins of Debian's
``containernetworking-plugins`` (``/usr/lib/cni``), the way libcni does,
for users who already have CNI configs. The conflist comes inline
(``cni.config``, the JSON text) or from a file under ``/etc/cni/net.d``
(``cni.path``, read again at each start). Every check that needs no I/O is
here, so a bad conflist is a 400 before anything runs: JSON, a
``cniVersion`` cove can read results of (0.3.0 to 1.0.0), the network
``name`` the spec allows, a non-empty ``plugins`` list whose ``type`` (and
``ipam.type``) are plain file names. A single plugin config (no
``plugins``) is read as a list of one, as libcni does.

Chaining follows the spec and libcni's ``buildOneConfig``: each plugin's
stdin is its own object with the list's ``name`` and ``cniVersion``
injected; on ADD, ``prevResult`` is the previous plugin's result (none for
the first); on DEL, plugins run in reverse order and, from 0.4.0 on, every
one gets the final ADD result as ``prevResult``. Capabilities
(``runtimeConfig``) are not injected: cove passes none.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_interface
from pathlib import PurePosixPath
from typing import Any

from cove.model.errors import BadRequest

__all__ = [
    "CNI_KEYS",
    "CONFIG_DIR",
    "PLUGIN_DIRS",
    "SUPPORTED_VERSIONS",
    "Attached",
    "ConfList",
    "attached",
    "check_keys",
    "container_id",
    "del_prev_result",
    "parse_conflist",
    "parse_error",
    "parse_result",
    "plugin_stdin",
    "validate_cni_path",
]

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
PLUGIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")  # Debian's, then the upstream default
CONFIG_DIR = PurePosixPath("/etc/cni/net.d")
CNI_KEYS = ("cni.config", "cni.path")
MAX_CONFIG = 64 * 1024

_NET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")  # the spec's network name
_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]*$")  # a plugin's file name


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


@dataclass(frozen=True)
class ConfList:
    """A validated CNI config list."""

    name: str
    cni_version: str
    plugins: tuple[Mapping[str, Any], ...]
    raw: Mapping[str, Any] = field(compare=False)

    def types(self) -> list[str]:
        """Every plugin binary the list runs: each ``type`` and ``ipam.type``."""
        out: list[str] = []
        for p in self.plugins:
            for t in (p["type"], (p.get("ipam") or {}).get("type")):
                if t and t not in out:
                    out.append(t)
        return out

    def to_json(self) -> str:
        return json.dumps(self.raw, sort_keys=True)


def parse_conflist(text: object, what: str = "cni.config") -> ConfList:
    """Parse and check a conflist (or a single plugin config).

    Raises:
        BadRequest: naming what is wrong (JSON, version, name, plugins).
    """
    if not isinstance(text, str) or not text.strip():
        raise BadRequest(f"Invalid {what}: give a CNI config list as JSON text")
    if len(text) > MAX_CONFIG:
        raise BadRequest(f"Invalid {what}: larger than {MAX_CONFIG // 1024} KiB")
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise BadRequest(f"Invalid {what}: not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise BadRequest(f"Invalid {what}: a CNI config list is a JSON object")
    if "plugins" not in doc and "type" in doc:  # a single .conf, as libcni reads it
        single = {k: v for k, v in doc.items() if k not in ("name", "cniVersion")}
        doc = {"cniVersion": doc.get("cniVersion"), "name": doc.get("name"),
               "plugins": [single]}
    version = doc.get("cniVersion")
    if not isinstance(version, str) or version not in SUPPORTED_VERSIONS:
        raise BadRequest(f"Invalid {what}: cniVersion {version!r} is not supported (use one "
                         f"of {', '.join(SUPPORTED_VERSIONS)})")
    name = doc.get("name")
    if not isinstance(name, str) or not _NET_NAME.match(name):
        raise BadRequest(f"Invalid {what}: the list needs a name of letters, digits, "
                         f"'_', '.' or '-' (got {name!r})")
    plugins = doc.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise BadRequest(f"Invalid {what}: 'plugins' must be a non-empty list of plugin "
                         "configs")
    for i, p in enumerate(plugins):
        if not isinstance(p, dict):
            raise BadRequest(f"Invalid {what}: plugins[{i}] is not an object")
        t = p.get("type")
        if not isinstance(t, str) or not _TYPE.match(t):
            raise BadRequest(f"Invalid {what}: plugins[{i}] needs a 'type' naming a plugin "
                             f"binary (got {t!r})")
        ipam = p.get("ipam")
        if ipam is not None:
            it = ipam.get("type") if isinstance(ipam, dict) else None
            if not isinstance(it, str) or not _TYPE.match(it):
                raise BadRequest(f"Invalid {what}: plugins[{i}].ipam needs a 'type' naming an "
                                 f"IPAM plugin binary (got {it!r})")
    return ConfList(name=name, cni_version=version, plugins=tuple(plugins), raw=doc)


def validate_cni_path(value: object) -> str:
    """``cni.path``: an absolute path of a file in ``/etc/cni/net.d``.

    Raises:
        BadRequest: anything else (coved reads no file outside that directory).
    """
    if not isinstance(value, str) or not value.startswith("/"):
        raise BadRequest(f"Invalid cni.path {value!r}: give the absolute path of a config "
                         f"list in {CONFIG_DIR}")
    p = PurePosixPath(value)
    if p.parent != CONFIG_DIR or ".." in p.parts or not p.name or p.name.startswith("."):
        raise BadRequest(f"Invalid cni.path {value!r}: the file must be directly in "
                         f"{CONFIG_DIR}")
    return value


def check_keys(config: Mapping[str, str]) -> None:
    """A cni network's (merged) config names its conflist exactly once.

    Raises:
        BadRequest: neither or both of ``cni.config`` and ``cni.path``.
    """
    given = [k for k in CNI_KEYS if config.get(k)]
    if len(given) != 1:
        raise BadRequest("A network of type cni needs exactly one of cni.config (the config "
                         f"list as JSON) and cni.path (a file in {CONFIG_DIR})")


def container_id(rid: str, instance: str) -> str:
    """``CNI_CONTAINERID`` of an instance: unique per cove root, so two roots'
    instances of one name never share an IPAM reservation."""
    return f"cove-{rid}-{instance}"


def plugin_stdin(conf: ConfList, index: int, prev_result: Mapping[str, Any] | None) -> bytes:
    """The stdin of plugin ``index`` of ``conf``: its config with the list's
    ``name`` and ``cniVersion``, and ``prevResult`` when given."""
    doc = dict(conf.plugins[index])
    doc["name"] = conf.name
    doc["cniVersion"] = conf.cni_version
    if prev_result is not None:
        doc["prevResult"] = prev_result
    else:
        doc.pop("prevResult", None)
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def del_prev_result(conf: ConfList, result: Mapping[str, Any] | None
                    ) -> Mapping[str, Any] | None:
    """What DEL passes as ``prevResult``: the final ADD result from 0.4.0 on
    (libcni's cached result), nothing before."""
    if result is None or _vtuple(conf.cni_version) < (0, 4, 0):
        return None
    return result


def parse_result(data: bytes) -> dict[str, Any]:
    """A plugin's ADD output (a result object).

    Raises:
        ValueError: not JSON, or not an object.
    """
    doc = json.loads(data)
    if not isinstance(doc, dict):
        raise ValueError("a CNI result is a JSON object")  # noqa: TRY004 - bad data, not a bad call
    return doc


def parse_error(data: bytes) -> tuple[int, str]:
    """A failed plugin's structured error (``code``, ``msg``/``details``);
    ``(0, "")`` when it printed none."""
    try:
        doc = json.loads(data)
    except ValueError:
        return 0, ""
    if not isinstance(doc, dict):
        return 0, ""
    code = doc.get("code")
    msg = str(doc.get("msg") or "")
    details = str(doc.get("details") or "")
    text = f"{msg}: {details}" if msg and details else msg or details
    return (code if isinstance(code, int) else 0), text


@dataclass(frozen=True)
class Attached:
    """What a result says about the container's interface ``ifname``."""

    ifname: str
    mac: str = ""
    addresses: tuple[IPv4Interface | IPv6Interface, ...] = ()
    gateways: tuple[IPv4Address | IPv6Address, ...] = ()
    host_peer: str = ""  # the host end (a veth), when the result lists one
    nameservers: tuple[IPv4Address | IPv6Address, ...] = ()
    search: tuple[str, ...] = ()
    domain: str = ""


def attached(result: Mapping[str, Any] | None, ifname: str) -> Attached:
    """Read a (0.3.0 to 1.0.0) result: the addresses, MAC and host peer of
    ``ifname``, and the DNS the result gives. Malformed parts are skipped."""
    if not result:
        return Attached(ifname)
    ifaces = result.get("interfaces") or []
    ifaces = [i if isinstance(i, dict) else {} for i in ifaces] if isinstance(ifaces, list) \
        else []
    mine = next((n for n, i in enumerate(ifaces) if i.get("name") == ifname
                 and i.get("sandbox")), None)
    mac = str(ifaces[mine].get("mac") or "") if mine is not None else ""
    peer = ""
    if mine is not None:  # bridge: [bridge, host veth, eth0]; ptp: [host veth, eth0]
        for i in reversed(ifaces[:mine]):
            if not i.get("sandbox") and i.get("name"):
                peer = str(i["name"])
                break
    addrs: list[IPv4Interface | IPv6Interface] = []
    gws: list[IPv4Address | IPv6Address] = []
    ips = result.get("ips") or []
    for ip in ips if isinstance(ips, list) else []:
        if not isinstance(ip, dict):
            continue
        idx = ip.get("interface")
        if isinstance(idx, int) and idx != mine:
            continue
        try:
            addrs.append(ip_interface(str(ip.get("address"))))
        except ValueError:
            continue
        if ip.get("gateway"):
            try:
                gws.append(ip_interface(str(ip["gateway"])).ip)
            except ValueError:
                pass
    dns = result.get("dns") if isinstance(result.get("dns"), dict) else {}
    servers: list[IPv4Address | IPv6Address] = []
    for s in (dns or {}).get("nameservers") or []:
        try:
            servers.append(ip_interface(str(s)).ip)
        except ValueError:
            continue
    search = tuple(str(s) for s in (dns or {}).get("search") or [] if isinstance(s, str))
    return Attached(ifname=ifname, mac=mac, addresses=tuple(addrs), gateways=tuple(gws),
                    host_peer=peer, nameservers=tuple(servers), search=search,
                    domain=str((dns or {}).get("domain") or ""))
