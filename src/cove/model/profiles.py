"""Profiles as plain data: the record, LXD's name rule and LXD's expansion.

Design note: expansion is LXD's (``db.ExpandInstanceConfig`` and
``ExpandInstanceDevices``): the profiles apply in the instance's list order,
a later profile's key wins over an earlier one's, and the instance's own
config goes on top. Devices merge by device name and a device is replaced
whole, never merged key by key. cove keeps one difference it always had: a
device of ``type: none`` hides the device of that name (it is dropped from
the expanded devices instead of shown as a device that does nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cove.model.errors import BadRequest

__all__ = [
    "DEFAULT_PROFILE",
    "Profile",
    "expand_config",
    "expand_devices",
    "validate_profile_config",
    "validate_profile_name",
]

DEFAULT_PROFILE = "default"


@dataclass
class Profile:
    """One profile as stored (``project`` is the project it lives in)."""

    name: str
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)
    devices: dict[str, dict[str, str]] = field(default_factory=dict)
    project: str = "default"


def validate_profile_name(name: object) -> str:
    """Return ``name`` if LXD accepts it as a profile name.

    LXD's rule (``profilesPost``): not empty, no ``/``, not ``.`` or ``..``.

    Raises:
        BadRequest: with LXD's message.
    """
    if not isinstance(name, str) or not name:
        raise BadRequest("No name provided")
    if "/" in name:
        raise BadRequest("Profile names may not contain slashes")
    if name in (".", ".."):
        raise BadRequest(f'Invalid profile name "{name}"')
    return name


def validate_profile_config(config: Mapping[str, str]) -> None:
    """LXD's extra rule for a profile's (already validated) config: no
    ``volatile.*`` or ``image.*`` keys, which only an instance has.

    Raises:
        BadRequest: with LXD's message.
    """
    for key in config:
        if key.startswith("volatile."):
            raise BadRequest("Volatile keys can only be set on instances")
        if key.startswith("image."):
            raise BadRequest("Image keys can only be set on instances")


def expand_config(profiles: Iterable[Profile], config: Mapping[str, str]) -> dict[str, str]:
    """The config an instance runs with: ``profiles`` in order, then ``config``."""
    out: dict[str, str] = {}
    for p in profiles:
        out.update(p.config)
    out.update(config)
    return out


def expand_devices(profiles: Iterable[Profile], devices: Mapping[str, Mapping[str, str]]
                   ) -> dict[str, dict[str, str]]:
    """The devices an instance runs with: by device name, later wins whole;
    ``type: none`` hides (see module note)."""
    out: dict[str, Mapping[str, str]] = {}
    for p in profiles:
        out.update(p.devices)
    out.update(devices)
    return {k: dict(v) for k, v in out.items() if v.get("type") != "none"}
