"""The devices of an instance or profile, checked when they are set: each
device has a type cove supports and a config its type accepts (pure: no
host access; what the host can give is checked by the network and storage
services)."""

from __future__ import annotations

from typing import Any

from cove.model.disks import disk_from_device
from cove.model.errors import BadRequest
from cove.network.model import nic_from_device, proxy_from_device

__all__ = ["validate_devices"]

_KNOWN_DEVICE_TYPES = {"none", "disk", "nic", "proxy"}


def validate_devices(devices: Any) -> dict[str, dict[str, str]]:
    """The devices as strings, by name. Raises BadRequest naming the bad device."""
    if devices is None:
        return {}
    if not isinstance(devices, dict):
        raise BadRequest("devices must be an object of device name to device config")
    out: dict[str, dict[str, str]] = {}
    for name, dev in devices.items():
        if not isinstance(dev, dict) or not isinstance(dev.get("type"), str):
            raise BadRequest(f"Device {name!r} needs a 'type'")
        if dev["type"] not in _KNOWN_DEVICE_TYPES:
            raise BadRequest(f"Device {name!r}: type {dev['type']!r} is not supported")
        out[str(name)] = {str(k): str(v) for k, v in dev.items()}
        if dev["type"] == "disk":
            disk_from_device(str(name), out[str(name)])
        elif dev["type"] == "nic":
            nic_from_device(str(name), out[str(name)])
        elif dev["type"] == "proxy":
            proxy_from_device(str(name), out[str(name)])
    return out
