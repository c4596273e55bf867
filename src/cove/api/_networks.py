"""The network, profile and certificate objects of the LXD API.

Design note: as ``cove.api._instances`` (names from LXD's Go ``shared/api``:
``NetworksPost``, ``NetworkPut``, ``Network``, ``NetworkLease``,
``NetworkState``, ``Profile``, ``CertificatesPost``, ``Certificate``;
``parse`` strict, ``from_wire`` tolerant, ``to_wire`` LXD's JSON).

Standard library only, no ``typing`` at run time: the CLI imports this.
"""

from __future__ import annotations

from cove.api._fields import (
    Wire,
    opt_bool,
    opt_str,
    opt_str_list,
    opt_str_map,
    require_object,
    t_bool,
    t_devices,
    t_dict,
    t_int,
    t_list,
    t_str,
    t_str_list,
    t_str_map,
)
from cove.api._put import ConfigPut
from cove.model.errors import BadRequest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Self

__all__ = [
    "Certificate",
    "CertificatesPost",
    "Network",
    "NetworkLease",
    "NetworkPut",
    "NetworkState",
    "NetworksPost",
    "Profile",
]


# -- networks ----------------------------------------------------------------------------

class NetworksPost(Wire):
    """``POST /1.0/networks``: a new network (LXD ``NetworksPost``)."""

    __slots__ = ("config", "description", "name", "type")

    def __init__(self, *, name: str = "", description: str = "", type: str = "bridge",
                 config: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.description = description
        self.type = type
        self.config: dict[str, str] = dict(config or {})

    @classmethod
    def parse(cls, body: object) -> Self:
        """A missing ``type`` is ``bridge``.

        Raises:
            BadRequest: no name, or a field of the wrong type.
        """
        body = require_object(body)
        name = opt_str(body, "name")
        if not name:
            raise BadRequest("Field 'name' is required")
        return cls(name=name, type=opt_str(body, "type") or "bridge",
                   config=opt_str_map(body, "config"),
                   description=opt_str(body, "description"))

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=t_str(data, "name"), description=t_str(data, "description"),
                   type=t_str(data, "type") or "bridge", config=t_str_map(data, "config"))

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "description": self.description,
                "config": dict(self.config)}


class NetworkPut(ConfigPut):
    """``PUT``/``PATCH /1.0/networks/NAME`` (LXD ``NetworkPut``); None: absent."""

    __slots__ = ()


class Network(Wire):
    """A network as ``GET /1.0/networks/NAME`` reports it (LXD ``Network``)."""

    __slots__ = (
        "config",
        "description",
        "locations",
        "managed",
        "name",
        "project",
        "status",
        "type",
        "used_by",
    )

    def __init__(self, *, name: str = "", description: str = "", type: str = "bridge",
                 managed: bool = True, status: str = "Created",
                 config: Mapping[str, str] | None = None, used_by: list[str] | None = None,
                 locations: list[str] | None = None, project: str = "default") -> None:
        self.name = name
        self.description = description
        self.type = type
        self.managed = managed
        self.status = status
        self.config: dict[str, str] = dict(config or {})
        self.used_by: list[str] = list(used_by or [])
        self.locations = ["none"] if locations is None else list(locations)
        self.project = project

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=t_str(data, "name"), description=t_str(data, "description"),
                   type=t_str(data, "type"), managed=t_bool(data, "managed"),
                   status=t_str(data, "status"), config=t_str_map(data, "config"),
                   used_by=t_str_list(data, "used_by"), locations=t_str_list(data, "locations"),
                   project=t_str(data, "project", "default"))

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "type": self.type,
                "managed": self.managed, "status": self.status, "config": dict(self.config),
                "used_by": list(self.used_by), "locations": list(self.locations),
                "project": self.project}


class NetworkLease(Wire):
    """One entry of ``GET /1.0/networks/NAME/leases`` (LXD ``NetworkLease``)."""

    __slots__ = ("address", "hostname", "hwaddr", "location", "project", "type")

    def __init__(self, *, hostname: str = "", hwaddr: str = "", address: str = "",
                 type: str = "dynamic", location: str = "none",
                 project: str = "default") -> None:
        self.hostname = hostname
        self.hwaddr = hwaddr
        self.address = address
        self.type = type
        self.location = location
        self.project = project

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(hostname=t_str(data, "hostname"), hwaddr=t_str(data, "hwaddr"),
                   address=t_str(data, "address"), type=t_str(data, "type"),
                   location=t_str(data, "location"), project=t_str(data, "project", "default"))

    def to_wire(self) -> dict[str, Any]:
        return {"hostname": self.hostname, "hwaddr": self.hwaddr, "address": self.address,
                "type": self.type, "location": self.location, "project": self.project}


class NetworkState(Wire):
    """``GET /1.0/networks/NAME/state`` (LXD ``NetworkState``).

    ``addresses`` are ``{"family", "address", "netmask", "scope"}`` objects,
    ``counters`` the byte and packet counts; ``bond``, ``bridge``, ``vlan``
    and ``ovn`` are LXD's per-type details (None on cove).
    """

    __slots__ = (
        "addresses",
        "bond",
        "bridge",
        "counters",
        "hwaddr",
        "mtu",
        "ovn",
        "state",
        "type",
        "vlan",
    )

    def __init__(self, *, addresses: list[dict[str, str]] | None = None,
                 counters: Mapping[str, int] | None = None, hwaddr: str = "", mtu: int = 0,
                 state: str = "down", type: str = "broadcast",
                 bond: Mapping[str, Any] | None = None, bridge: Mapping[str, Any] | None = None,
                 vlan: Mapping[str, Any] | None = None,
                 ovn: Mapping[str, Any] | None = None) -> None:
        self.addresses = [dict(a) for a in addresses or []]
        self.counters: dict[str, int] = dict(counters or {})
        self.hwaddr = hwaddr
        self.mtu = mtu
        self.state = state
        self.type = type
        self.bond = None if bond is None else dict(bond)
        self.bridge = None if bridge is None else dict(bridge)
        self.vlan = None if vlan is None else dict(vlan)
        self.ovn = None if ovn is None else dict(ovn)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        def opt(key: str) -> dict[str, Any] | None:
            value = data.get(key)
            return dict(value) if isinstance(value, dict) else None

        counters = t_dict(data, "counters")
        return cls(addresses=[{str(k): str(v) for k, v in a.items()}
                              for a in t_list(data, "addresses") if isinstance(a, dict)],
                   counters={k: t_int(counters, k) for k in counters},
                   hwaddr=t_str(data, "hwaddr"), mtu=t_int(data, "mtu"),
                   state=t_str(data, "state"), type=t_str(data, "type"), bond=opt("bond"),
                   bridge=opt("bridge"), vlan=opt("vlan"), ovn=opt("ovn"))

    def to_wire(self) -> dict[str, Any]:
        def copy(value: dict[str, Any] | None) -> dict[str, Any] | None:
            return None if value is None else dict(value)

        return {"addresses": [dict(a) for a in self.addresses],
                "counters": dict(self.counters), "hwaddr": self.hwaddr, "mtu": self.mtu,
                "state": self.state, "type": self.type, "bond": copy(self.bond),
                "bridge": copy(self.bridge), "vlan": copy(self.vlan), "ovn": copy(self.ovn)}


# -- profiles ----------------------------------------------------------------------------

class Profile(Wire):
    """A profile as ``GET /1.0/profiles/NAME`` reports it (LXD ``Profile``)."""

    __slots__ = ("config", "description", "devices", "name", "project", "used_by")

    def __init__(self, *, name: str = "", description: str = "",
                 config: Mapping[str, str] | None = None,
                 devices: Mapping[str, Mapping[str, str]] | None = None,
                 used_by: list[str] | None = None, project: str = "default") -> None:
        self.name = name
        self.description = description
        self.config: dict[str, str] = dict(config or {})
        self.devices = {k: dict(v) for k, v in (devices or {}).items()}
        self.used_by: list[str] = list(used_by or [])
        self.project = project

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=t_str(data, "name"), description=t_str(data, "description"),
                   config=t_str_map(data, "config"), devices=t_devices(data, "devices"),
                   used_by=t_str_list(data, "used_by"), project=t_str(data, "project", "default"))

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "config": dict(self.config),
                "devices": {k: dict(v) for k, v in self.devices.items()},
                "used_by": list(self.used_by), "project": self.project}


# -- certificates ------------------------------------------------------------------------

class CertificatesPost(Wire):
    """``POST /1.0/certificates``: trust a client certificate (LXD ``CertificatesPost``).

    ``certificate`` is the base64 DER (or a PEM); "" trusts the certificate
    the caller connects with.
    """

    __slots__ = ("certificate", "name", "password", "projects", "restricted", "token", "type")

    def __init__(self, *, name: str = "", type: str = "client", certificate: str = "",
                 restricted: bool = False, projects: list[str] | None = None,
                 password: str = "", token: bool = False) -> None:
        self.name = name
        self.type = type
        self.certificate = certificate
        self.restricted = restricted
        self.projects: list[str] = list(projects or [])
        self.password = password
        self.token = token

    @classmethod
    def parse(cls, body: object) -> Self:
        """A missing ``type`` is ``client``.

        Raises:
            BadRequest: a trust password or token (cove has neither: a
                trusted client adds the certificate), or a field of the
                wrong type.
        """
        body = require_object(body)
        if body.get("password") or body.get("token"):
            raise BadRequest("Trust passwords and tokens are not supported: a trusted client "
                             "adds the certificate (cove config trust add CERT)")
        return cls(certificate=opt_str(body, "certificate"), name=opt_str(body, "name"),
                   type=opt_str(body, "type") or "client",
                   restricted=opt_bool(body, "restricted"),
                   projects=opt_str_list(body, "projects"))

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=t_str(data, "name"), type=t_str(data, "type") or "client",
                   certificate=t_str(data, "certificate"),
                   restricted=t_bool(data, "restricted"), projects=t_str_list(data, "projects"),
                   password=t_str(data, "password"), token=t_bool(data, "token"))

    def to_wire(self) -> dict[str, Any]:
        """The body; fields LXD takes as optional are sent only when set."""
        out: dict[str, Any] = {"type": self.type, "name": self.name}
        if self.certificate:
            out["certificate"] = self.certificate
        if self.restricted:
            out["restricted"] = True
        if self.projects:
            out["projects"] = list(self.projects)
        if self.password:
            out["password"] = self.password
        if self.token:
            out["token"] = True
        return out


class Certificate(Wire):
    """A trusted certificate as ``GET /1.0/certificates/FP`` reports it (LXD ``Certificate``)."""

    __slots__ = (
        "certificate",
        "description",
        "fingerprint",
        "name",
        "projects",
        "restricted",
        "type",
    )

    def __init__(self, *, fingerprint: str = "", certificate: str = "", name: str = "",
                 type: str = "client", restricted: bool = False,
                 projects: list[str] | None = None, description: str = "") -> None:
        self.fingerprint = fingerprint
        self.certificate = certificate
        self.name = name
        self.type = type
        self.restricted = restricted
        self.projects: list[str] = list(projects or [])
        self.description = description

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Self:
        return cls(fingerprint=t_str(data, "fingerprint"), certificate=t_str(data, "certificate"),
                   name=t_str(data, "name"), type=t_str(data, "type", "client"),
                   restricted=t_bool(data, "restricted"), projects=t_str_list(data, "projects"),
                   description=t_str(data, "description"))

    def to_wire(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "certificate": self.certificate,
                "name": self.name, "type": self.type, "restricted": self.restricted,
                "projects": list(self.projects), "description": self.description}
