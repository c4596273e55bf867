"""The flows of storage: pools, custom volumes, and disk devices on instances.

Design note: as ``drivers._resources`` (one generator of steps per call, run
by every driver; creating what exists and deleting what is gone succeed and
do nothing; reports are ``cove.api`` classes). A pool is named by the
caller: cove's is ``default``, an LXD host's whatever it was made with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cove import api
from cove.client.drivers._resources import _str_map, _text
from cove.client.drivers._steps import Flow, GetInstance, Update
from cove.client.drivers._steps_storage import (
    CreateVolume,
    DeleteVolume,
    GetVolume,
    ListStoragePools,
    ListVolumes,
    RenameVolume,
    UpdateVolume,
)
from cove.model.errors import BadRequest, Conflict, CoveError, NotFound

__all__ = [
    "attach_disk",
    "create_volume",
    "delete_volume",
    "detach_disk",
    "rename_volume",
    "storage_pools",
    "update_volume",
    "volume",
    "volumes",
]


def storage_pools() -> Flow[list[api.StoragePool]]:
    return [api.StoragePool.from_wire(d) for d in (yield ListStoragePools())
            if isinstance(d, dict)]


def _report(pool: str, data: dict[str, Any]) -> api.StorageVolume:
    # LXD 5.0 has no ``pool`` in a volume object (newer LXD and cove do):
    # the caller named it, so every driver reports it
    return api.StorageVolume.from_wire({**data, "pool": data.get("pool") or pool})


def volumes(pool: str) -> Flow[list[api.StorageVolume]]:
    found = yield ListVolumes(_text("pool name", pool))
    return [_report(pool, d) for d in found or [] if isinstance(d, dict)
            and d.get("type", "custom") == "custom"]


def _volume(pool: str, name: str) -> Flow[dict[str, Any]]:
    found = yield GetVolume(_text("pool name", pool), _text("volume name", name))
    if found is None:
        raise NotFound(f"Storage volume not found: {name}")
    return dict(found)


def volume(pool: str, name: str) -> Flow[api.StorageVolume]:
    return _report(pool, (yield from _volume(pool, name)))


def create_volume(pool: str, name: str, *, config: Mapping[str, Any] | None,
                  description: str) -> Flow[api.StorageVolume]:
    """Convergent: a volume of that name is left as it is."""
    _text("pool name", pool)
    _text("volume name", name)
    conf = _str_map("config", config)
    existing = yield GetVolume(pool, name)
    if existing is None:
        try:
            yield CreateVolume(pool, name, conf, str(description or ""))
        except CoveError:
            if (yield GetVolume(pool, name)) is None:
                raise
    return (yield from volume(pool, name))


def update_volume(pool: str, name: str, *, config: Mapping[str, Any] | None,
                  description: str | None) -> Flow[None]:
    """Set the given keys (a None value removes one) and the description."""
    if config is not None and not isinstance(config, Mapping):
        raise BadRequest("The config must be a mapping of strings")
    current = yield from _volume(pool, name)
    changes = dict(config or {})
    if not changes and description is None:
        return
    if not any(v is None for v in changes.values()):
        yield UpdateVolume(pool, name, _str_map("config", changes), description, patch=True)
        return
    new = dict(current.get("config") or {})
    for k, v in changes.items():
        if v is None:
            new.pop(str(k), None)
        else:
            new.update(_str_map("config", {k: v}))
    desc = description if description is not None else str(current.get("description") or "")
    yield UpdateVolume(pool, name, new, desc, patch=False)


def rename_volume(pool: str, name: str, new_name: str) -> Flow[None]:
    """``name`` gone and ``new_name`` there: nothing (a rename that happened)."""
    _text("volume name", new_name)
    if (yield GetVolume(_text("pool name", pool), _text("volume name", name))) is None:
        if (yield GetVolume(pool, new_name)) is not None:
            return
        raise NotFound(f"Storage volume not found: {name}")
    yield RenameVolume(pool, name, new_name)


def delete_volume(pool: str, name: str) -> Flow[None]:
    """Gone already: nothing."""
    if (yield GetVolume(_text("pool name", pool), _text("volume name", name))) is None:
        return
    try:
        yield DeleteVolume(pool, name)
    except NotFound:
        pass


def attach_disk(instance: str, device: str, disk: Mapping[str, Any]) -> Flow[None]:
    """Give ``instance`` the disk device ``device`` (``disk``: its keys but
    ``type``). The same device there already: nothing.

    Raises:
        Conflict: a device of that name with other keys.
    """
    _text("device name", device)
    want = {"type": "disk", **_str_map("disk", disk)}
    inst = yield GetInstance(_text("instance name", instance))
    if inst is None:
        raise NotFound(f"Instance not found: {instance}")
    have = (inst.get("devices") or {}).get(device)
    if have == want:
        return
    if have is not None:
        raise Conflict(f"Device {device} of {instance} exists with other keys: {have}")
    yield Update(instance, {"devices": {device: want}}, patch=True)


def detach_disk(instance: str, device: str) -> Flow[None]:
    """Remove the device ``device`` of ``instance``. Gone already: nothing."""
    inst = yield GetInstance(_text("instance name", instance))
    if inst is None:
        raise NotFound(f"Instance not found: {instance}")
    devices = dict(inst.get("devices") or {})
    if devices.pop(_text("device name", device), None) is None:
        return
    put = api.InstancePut.from_wire(inst).to_wire()
    put["devices"] = devices
    yield Update(instance, put, patch=False)
