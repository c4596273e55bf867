"""The LXD wire objects cove sends and reads: instance, image, alias, profile.

Design note: these are the shapes pylxd and the Go client (``lxc``) decode.
Go is strict about types (a string where it wants a bool fails the whole
command), so every field has the type LXD gives it, and fields a client
reads unconditionally are always present (``expanded_devices``,
``profiles``, ``aliases``...). The server renders with these; the client
and CLI read the same field names.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from cove.model.records import Alias, Image, Instance, Lease, Network

__all__ = [
    "ZERO_TIME",
    "alias",
    "etag",
    "image",
    "instance",
    "instance_full",
    "network",
    "network_lease",
    "profile",
    "rfc3339",
]

# Go's zero time, which LXD sends for "never".
ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(t: float) -> str:
    """Unix time as RFC 3339 in UTC, with microseconds when there are some."""
    secs, micros = divmod(round(t * 1_000_000), 1_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{base}.{micros:06d}Z" if micros else base + "Z"


def instance(inst: Instance) -> dict[str, Any]:
    """The LXD ``Instance`` object."""
    return {
        "name": inst.name,
        "description": inst.description,
        "status": inst.status.value,
        "status_code": inst.status.code,
        "type": "container",
        "architecture": inst.architecture,
        "config": dict(inst.config),
        "devices": {k: dict(v) for k, v in inst.devices.items()},
        # the default profile adds eth0 (engine-filled expanded_devices); no config
        "expanded_config": dict(inst.config),
        "expanded_devices": {k: dict(v) for k, v in (
            inst.expanded_devices if inst.expanded_devices is not None else inst.devices).items()},
        "ephemeral": inst.ephemeral,
        "stateful": False,
        "profiles": list(inst.profiles),
        "project": "default",
        "created_at": rfc3339(inst.created_at),
        "last_used_at": rfc3339(inst.last_used_at),
        "location": "none",
    }


def instance_full(inst: Instance, state: dict[str, Any] | None) -> dict[str, Any]:
    """The LXD ``InstanceFull`` object (``recursion=2`` lists, ``recursion=1`` GET)."""
    out = instance(inst)
    out["state"] = state
    out["snapshots"] = []
    out["backups"] = []
    return out


def image(img: Image) -> dict[str, Any]:
    """The LXD ``Image`` object."""
    return {
        "fingerprint": img.fingerprint,
        "filename": img.filename,
        "size": img.size,
        "architecture": img.architecture,
        "type": "container",
        "public": img.public,
        "properties": dict(img.properties),
        "aliases": [{"name": a.name, "description": a.description} for a in img.aliases],
        "auto_update": False,
        "cached": False,
        "profiles": ["default"],
        "project": "default",
        "created_at": rfc3339(img.created_at),
        "uploaded_at": rfc3339(img.uploaded_at),
        "last_used_at": rfc3339(img.last_used_at) if img.last_used_at else ZERO_TIME,
        "expires_at": ZERO_TIME,
    }


def alias(a: Alias) -> dict[str, Any]:
    """The LXD ``ImageAliasesEntry`` object."""
    return {"name": a.name, "description": a.description, "target": a.target,
            "type": "container"}


def profile(name: str, used_by: list[str],
            devices: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """A profile; cove has only ``default`` (its devices: eth0 on the default network)."""
    return {"name": name, "description": "Default cove profile", "config": {},
            "devices": {k: dict(v) for k, v in (devices or {}).items()}, "used_by": used_by,
            "project": "default"}


def network(net: Network, used_by: list[str]) -> dict[str, Any]:
    """The LXD ``Network`` object (cove lists its managed bridges only)."""
    return {"name": net.name, "description": net.description, "type": net.type,
            "managed": True, "status": "Created", "config": dict(net.config),
            "used_by": list(used_by), "locations": ["none"], "project": "default"}


def network_lease(lease: Lease, hostname: str) -> dict[str, Any]:
    """One entry of ``GET /1.0/networks/NAME/leases``."""
    return {"hostname": hostname, "hwaddr": lease.hwaddr, "address": lease.address,
            "type": "dynamic", "location": "none", "project": "default"}


def etag(obj: dict[str, Any], keys: tuple[str, ...] = (
        "architecture", "config", "devices", "ephemeral", "profiles", "description")) -> str:
    """A hash of the writable fields, sent as ``ETag`` and checked on ``If-Match``."""
    data = json.dumps([obj.get(k) for k in keys], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()
