"""The flows of profiles, the same for every driver (see ``_resources``).

Design note: convergent as the other resources are: creating a profile that
exists leaves it as it is, deleting one that is gone is success, and a
rename that already happened (the old name gone, the new one there) is
success. An update that only sets keys and devices is a PATCH (LXD merges
both); one that removes a key or a device reads the profile and PUTs it
whole, because LXD's PATCH cannot remove a device.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cove import api
from cove.client.drivers._steps import (
    CreateProfile,
    DeleteProfile,
    Flow,
    GetProfile,
    ListProfiles,
    RenameProfile,
    UpdateProfile,
)
from cove.model.errors import BadRequest, CoveError, NotFound

__all__ = [
    "create_profile",
    "delete_profile",
    "profile",
    "profiles",
    "rename_profile",
    "update_profile",
]


def _name(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest("The profile name must be a non-empty string")
    return value


def _config(value: Mapping[str, Any] | None) -> dict[str, str | None]:
    """Config values as LXD's strings (a bool as true/false); None kept (removal)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadRequest("The config must be a mapping of strings")
    return {str(k): None if v is None else ("true" if v else "false") if isinstance(v, bool)
            else str(v) for k, v in value.items()}


def _devices(value: Mapping[str, Any] | None) -> dict[str, dict[str, str] | None]:
    """Devices as ``{name: {key: string}}``; a None device is kept (removal)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadRequest("The devices must be a mapping of device name to device config")
    out: dict[str, dict[str, str] | None] = {}
    for name, dev in value.items():
        if dev is not None and not isinstance(dev, Mapping):
            raise BadRequest(f"Device {name!r} must be a mapping of strings")
        out[str(name)] = None if dev is None else {str(k): str(v) for k, v in dev.items()}
    return out


def profiles() -> Flow[list[api.Profile]]:
    return [api.Profile.from_wire(d) for d in (yield ListProfiles()) if isinstance(d, dict)]


def _profile(name: str) -> Flow[dict[str, Any]]:
    found = yield GetProfile(_name(name))
    if found is None:
        raise NotFound(f"Profile not found: {name}")
    return dict(found)


def profile(name: str) -> Flow[api.Profile]:
    return api.Profile.from_wire((yield from _profile(name)))


def create_profile(name: str, *, config: Mapping[str, Any] | None,
                   devices: Mapping[str, Any] | None, description: str) -> Flow[api.Profile]:
    """Convergent: a profile of that name is left as it is."""
    _name(name)
    conf = {k: v for k, v in _config(config).items() if v is not None}
    devs = {k: v for k, v in _devices(devices).items() if v is not None}
    if (yield GetProfile(name)) is None:
        try:
            yield CreateProfile(name, conf, devs, str(description or ""))
        except CoveError:
            if (yield GetProfile(name)) is None:
                raise
    return (yield from profile(name))


def update_profile(name: str, *, config: Mapping[str, Any] | None,
                   devices: Mapping[str, Any] | None, description: str | None) -> Flow[None]:
    """Set the given keys and devices (a None value removes one; a device is
    replaced whole) and, unless None, the description."""
    conf, devs = _config(config), _devices(devices)
    current = yield from _profile(name)
    if not conf and not devs and description is None:
        return
    if all(v is not None for v in conf.values()) and all(v is not None for v in devs.values()):
        yield UpdateProfile(name, {k: v for k, v in conf.items() if v is not None} or None,
                            {k: v for k, v in devs.items() if v is not None} or None,
                            description, patch=True)
        return
    new_conf = {str(k): str(v) for k, v in (current.get("config") or {}).items()}
    new_devs = {str(k): dict(v) for k, v in (current.get("devices") or {}).items()
                if isinstance(v, dict)}
    for k, v in conf.items():
        if v is None:
            new_conf.pop(k, None)
        else:
            new_conf[k] = v
    for k, dev in devs.items():
        if dev is None:
            new_devs.pop(k, None)
        else:
            new_devs[k] = dev
    yield UpdateProfile(name, new_conf, new_devs,
                        str(current.get("description") or "") if description is None
                        else description, patch=False)


def rename_profile(name: str, new_name: str) -> Flow[None]:
    """Convergent: done already (``name`` gone, ``new_name`` there) is success."""
    _name(name)
    _name(new_name)
    try:
        yield RenameProfile(name, new_name)
    except CoveError:
        if (yield GetProfile(name)) is None and (yield GetProfile(new_name)) is not None:
            return
        raise


def delete_profile(name: str) -> Flow[None]:
    """Convergent: a profile that is gone is success."""
    if (yield GetProfile(_name(name))) is None:
        return
    try:
        yield DeleteProfile(name)
    except CoveError:
        if (yield GetProfile(name)) is None:
            return
        raise
