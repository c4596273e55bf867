"""Disk devices and custom storage volumes: names, keys and values (pure).

Design note: LXD's ``disk`` device is three things. ``path=/`` is the root
disk (cove's rootfs is the overlay of the image's layers, so only ``pool``
may be named, and only ``default``); ``source=/host/path`` bind-mounts a host
file or directory; ``pool=P source=VOL`` bind-mounts a custom volume. Keys
LXD knows but cove cannot honour (``shift``, ``limits.*``, ``propagation``,
``raw.mount.options``, ...) are refused with the key named, never ignored:
a caller who asked for a quota or an idmap must not get a silent plain bind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cove.model.config import truthy
from cove.model.errors import BadRequest

__all__ = [
    "DEFAULT_POOL",
    "Disk",
    "Volume",
    "disk_from_device",
    "parse_size",
    "validate_volume_config",
    "validate_volume_name",
]

DEFAULT_POOL = "default"

_ROOT_KEYS = {"type", "path", "pool"}
_DISK_KEYS = {"type", "path", "source", "pool", "readonly", "required", "recursive"}
_BOOLS = ("1", "0", "true", "false", "yes", "no", "on", "off", "")
# LXD's rules for a volume name (lxd/storage/drivers: ValidVolumeName), kept
# narrower: it becomes a directory name under the root and a URL segment.
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,62}$")
_UNITS = {
    "": 1, "B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50,
}
_SIZE = re.compile(r"^(\d+)\s*([A-Za-z]*)$")
_VOLUME_KEYS = {"size"}


@dataclass(frozen=True)
class Disk:
    """A non-root disk device: what to mount where inside the instance."""

    name: str
    path: str  # inside the instance, absolute
    source: str  # a host path (pool == "") or a custom volume's name
    pool: str = ""
    readonly: bool = False
    required: bool = True
    recursive: bool = False

    @property
    def is_volume(self) -> bool:
        return bool(self.pool)


@dataclass
class Volume:
    """A custom storage volume as stored."""

    name: str
    project: str = "default"
    pool: str = DEFAULT_POOL
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)
    content_type: str = "filesystem"
    created_at: float = 0.0
    dir: str = ""  # its directory's name under storage/custom (see the storage service)


def _bool(dev_name: str, key: str, value: str) -> bool:
    if value.strip().lower() not in _BOOLS:
        raise BadRequest(f"Device {dev_name!r}: invalid {key} {value!r}: use true or false")
    return truthy(value)


def disk_from_device(name: str, dev: dict[str, str]) -> Disk | None:
    """Check a ``type: disk`` device; None for the root disk (``path=/``).

    Raises:
        BadRequest: a missing or bad key, naming the device and the key.
    """
    path = dev.get("path", "")
    if path == "/":
        extra = sorted(set(dev) - _ROOT_KEYS)
        if extra:
            raise BadRequest(f"Device {name!r}: the root disk takes only pool; "
                             f"unsupported key {extra[0]!r}")
        pool = dev.get("pool", "")
        if pool not in ("", DEFAULT_POOL):
            raise BadRequest(f"Device {name!r}: storage pool {pool!r} not found "
                             f"(cove has one pool, {DEFAULT_POOL!r})")
        return None
    extra = sorted(set(dev) - _DISK_KEYS)
    if extra:
        raise BadRequest(f"Device {name!r}: disk key {extra[0]!r} is not supported")
    if not path:
        raise BadRequest(f"Device {name!r}: a disk needs a path (where to mount it)")
    if not path.startswith("/") or "\x00" in path:
        raise BadRequest(f"Device {name!r}: path {path!r} must be absolute")
    source = dev.get("source", "")
    if not source:
        raise BadRequest(f"Device {name!r}: a disk needs a source (a host path, or a "
                         "custom volume with pool)")
    pool = dev.get("pool", "")
    if pool:
        if pool != DEFAULT_POOL:
            raise BadRequest(f"Device {name!r}: storage pool {pool!r} not found "
                             f"(cove has one pool, {DEFAULT_POOL!r})")
        vol = source.removeprefix("custom/")
        if not _VOLUME_NAME.match(vol):
            raise BadRequest(f"Device {name!r}: invalid volume name {source!r}")
        source = vol
    elif not source.startswith("/") or "\x00" in source:
        raise BadRequest(f"Device {name!r}: source {source!r} must be an absolute host path "
                         "(or set pool for a custom volume)")
    return Disk(name=name, path=path, source=source, pool=pool,
                readonly=_bool(name, "readonly", dev.get("readonly", "")),
                required=_bool(name, "required", dev.get("required", "true")),
                recursive=_bool(name, "recursive", dev.get("recursive", "")))


def validate_volume_name(name: object) -> str:
    """Raises: BadRequest for a name that cannot be a volume's."""
    if not isinstance(name, str) or not name:
        raise BadRequest("Field 'name' is required")
    if not _VOLUME_NAME.match(name) or ".." in name:
        raise BadRequest(f"Invalid volume name {name!r}: 1-63 letters, digits, and . _ + - "
                         "(not first)")
    return name


def parse_size(value: str) -> int:
    """``10GiB``, ``500MB``, bytes. Raises: BadRequest."""
    m = _SIZE.match(value.strip())
    if not m or m.group(2) not in _UNITS:
        raise BadRequest(f"Invalid size {value!r}: use a size like 500MB or 10GiB")
    return int(m.group(1)) * _UNITS[m.group(2)]


def validate_volume_config(config: dict[str, Any]) -> dict[str, str]:
    """A custom volume's config: only ``size`` (recorded; see the storage service).

    Raises:
        BadRequest: an unknown key or a bad value, naming the key.
    """
    out: dict[str, str] = {}
    for key, value in config.items():
        if key not in _VOLUME_KEYS and not key.startswith("user."):
            raise BadRequest(f"Invalid volume config key {key!r}: cove's dir pool takes "
                             "size and user.*")
        if not isinstance(value, str):
            raise BadRequest(f"Invalid value for volume config key {key!r}: a string")
        if key == "size" and value:
            parse_size(value)
        out[key] = value
    return out
