"""The wire objects built from cove's model records, for the server and the
local driver: ``Instance.from``-style renderers that know ``cove.model.records``.

Design note: the classes themselves (``cove.api.Instance``...) are standard
library only, because the CLI imports them; this module imports the records
(dataclasses), so it is loaded only when a name from it is first used (see
``cove.api.__getattr__``). Go is strict about types (a string where it wants
a bool fails the whole command), so every field has the type LXD gives it,
and fields a client reads unconditionally are always present
(``expanded_devices``, ``profiles``, ``aliases``...). Each renderer comes in
two forms: ``*_object`` gives the class, the older name gives its wire dict.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from cove.api._images import Image, ImageAlias, ImageAliasesEntry
from cove.api._instances import ZERO_TIME, Instance, InstanceState
from cove.api._networks import Certificate, Network, NetworkLease, Profile
from cove.model import profiles, records
from cove.model.projects import split_key
from cove.model.trust import Certificate as CertificateRecord

__all__ = [
    "ZERO_TIME",
    "alias",
    "alias_object",
    "certificate",
    "certificate_object",
    "etag",
    "image",
    "image_object",
    "instance",
    "instance_full",
    "instance_object",
    "network",
    "network_lease",
    "network_lease_object",
    "network_object",
    "profile",
    "profile_object",
    "rfc3339",
]


def rfc3339(t: float) -> str:
    """Unix time as RFC 3339 in UTC, with microseconds when there are some."""
    secs, micros = divmod(round(t * 1_000_000), 1_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{base}.{micros:06d}Z" if micros else base + "Z"


def instance_object(inst: records.Instance, state: dict[str, Any] | None = None, *,
                    full: bool = False) -> Instance:
    """The LXD ``Instance`` (with ``full``: ``InstanceFull``, its ``state`` the
    engine's state dict) of a record."""
    devices = inst.expanded_devices if inst.expanded_devices is not None else inst.devices
    return Instance(
        name=split_key(inst.name)[1], description=inst.description, status=inst.status.value,
        status_code=inst.status.code, type="container", architecture=inst.architecture,
        config=inst.config, devices=inst.devices,
        # profiles add config and devices (the engine fills the expanded fields)
        expanded_config=inst.expanded_config if inst.expanded_config is not None
        else inst.config, expanded_devices=devices, ephemeral=inst.ephemeral,
        stateful=False, profiles=list(inst.profiles), project=inst.project,
        created_at=rfc3339(inst.created_at), last_used_at=rfc3339(inst.last_used_at),
        location="none", full=full,
        state=InstanceState.from_wire(state) if state is not None else None)


def instance(inst: records.Instance) -> dict[str, Any]:
    """The LXD ``Instance`` object."""
    return instance_object(inst).to_wire()


def instance_full(inst: records.Instance, state: dict[str, Any] | None) -> dict[str, Any]:
    """The LXD ``InstanceFull`` object (``recursion=2`` lists, ``recursion=1`` GET)."""
    return instance_object(inst, state, full=True).to_wire()


def image_object(img: records.Image) -> Image:
    """The LXD ``Image`` of a record."""
    return Image(
        fingerprint=img.fingerprint, filename=img.filename, size=img.size,
        architecture=img.architecture, type="container", public=img.public,
        properties=img.properties,
        aliases=[ImageAlias(name=a.name, description=a.description) for a in img.aliases],
        auto_update=img.auto_update, cached=img.cached, profiles=["default"],
        project="default",
        created_at=rfc3339(img.created_at), uploaded_at=rfc3339(img.uploaded_at),
        last_used_at=rfc3339(img.last_used_at) if img.last_used_at else ZERO_TIME,
        expires_at=ZERO_TIME, update_source=img.update_source)


def image(img: records.Image) -> dict[str, Any]:
    """The LXD ``Image`` object."""
    return image_object(img).to_wire()


def alias_object(a: records.Alias) -> ImageAliasesEntry:
    """The LXD ``ImageAliasesEntry`` of a record."""
    return ImageAliasesEntry(name=a.name, description=a.description, target=a.target,
                             type="container")


def alias(a: records.Alias) -> dict[str, Any]:
    """The LXD ``ImageAliasesEntry`` object."""
    return alias_object(a).to_wire()


def profile_object(p: profiles.Profile, used_by: list[str]) -> Profile:
    """The LXD ``Profile`` of a record."""
    return Profile(name=p.name, description=p.description, config=p.config,
                   devices=p.devices, used_by=used_by, project=p.project)


def profile(p: profiles.Profile, used_by: list[str]) -> dict[str, Any]:
    """The LXD ``Profile`` object (see ``profile_object``)."""
    return profile_object(p, used_by).to_wire()


def network_object(net: records.Network, used_by: list[str]) -> Network:
    """The LXD ``Network`` of a record (cove lists its managed bridges only)."""
    return Network(name=net.name, description=net.description, type=net.type, managed=True,
                   status="Created", config=net.config, used_by=list(used_by),
                   locations=["none"], project="default")


def network(net: records.Network, used_by: list[str]) -> dict[str, Any]:
    """The LXD ``Network`` object."""
    return network_object(net, used_by).to_wire()


def network_lease_object(lease: records.Lease, hostname: str) -> NetworkLease:
    """One ``NetworkLease`` of ``GET /1.0/networks/NAME/leases``."""
    project, host = split_key(hostname)  # an instance's key: its plain name and project
    return NetworkLease(hostname=host, hwaddr=lease.hwaddr, address=lease.address,
                        type="dynamic", location="none", project=project)


def network_lease(lease: records.Lease, hostname: str) -> dict[str, Any]:
    """One entry of ``GET /1.0/networks/NAME/leases``."""
    return network_lease_object(lease, hostname).to_wire()


def certificate_object(c: CertificateRecord) -> Certificate:
    """The LXD ``Certificate`` of a trust-store entry."""
    return Certificate(fingerprint=c.fingerprint, certificate=c.certificate, name=c.name,
                       type=c.type, restricted=c.restricted, projects=list(c.projects),
                       description="")


def certificate(c: CertificateRecord) -> dict[str, Any]:
    """The LXD ``Certificate`` object."""
    return certificate_object(c).to_wire()


def etag(obj: dict[str, Any], keys: tuple[str, ...] = (
        "architecture", "config", "devices", "ephemeral", "profiles", "description")) -> str:
    """A hash of the writable fields, sent as ``ETag`` and checked on ``If-Match``."""
    data = json.dumps([obj.get(k) for k in keys], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()
