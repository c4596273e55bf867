"""The flows of copies and rebuilds, as ``drivers._resources``: one
generator of steps per call, run by every driver. A copy whose target
exists already is left as it is (convergent, as a create); a rebuild is not
convergent (every call starts the root filesystem afresh).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cove import api
from cove.client.drivers._flows import flows, status_of
from cove.client.drivers._steps import Flow, GetInstance
from cove.client.drivers._steps_copies import CopyInstance, RebuildInstance
from cove.client.drivers._steps_snapshots import GetSnapshot
from cove.model.errors import BadRequest, CoveError, NotFound
from cove.model.names import validate_instance_name, validate_snapshot_name

__all__ = ["copy_instance", "rebuild_instance"]


def _carried(config: Mapping[str, Any]) -> dict[str, str]:
    """The source's config a copy gets (LXD's ``InstanceRemoteCopyConfigKeyPolicy``,
    as ``lxc copy``): no ``volatile.*`` key but ``volatile.base_image``."""
    return {str(k): str(v) for k, v in config.items()
            if not str(k).startswith("volatile.") or k == "volatile.base_image"}


def copy_instance(source: str, name: str, *, instance_only: bool = False,
                  profiles: list[str] | None = None,
                  config: Mapping[str, str] | None = None) -> Flow[api.Instance]:
    """Convergent: an instance ``name`` that exists is left as it is.

    Sends what ``lxc copy`` sends: the source's own config (``config`` laid
    over it), devices, profiles (unless ``profiles``) and description, so
    every LXD makes the same copy (LXD 5.0.2 gives a copy whose request
    names no profiles none at all).
    """
    owner, _, snap = source.partition("/")
    validate_instance_name(owner)
    if snap:
        validate_snapshot_name(snap)
    validate_instance_name(name)
    if (yield GetInstance(name)) is None:
        # what is missing is named the same on every driver (a command line's
        # error is only text)
        found = yield GetInstance(owner)
        if found is None:
            raise NotFound(f"Instance not found: {owner}")
        if snap:
            found = yield GetSnapshot(owner, snap)
            if found is None:
                raise NotFound(f"Snapshot not found: {source}")
        src: dict[str, Any] = dict(found)
        own_config = {**_carried(src.get("config") or {}), **(config or {})}
        devices = src.get("devices") or {}
        step = CopyInstance(
            source, name, instance_only,
            tuple(src.get("profiles") or []) if profiles is None else tuple(profiles),
            tuple(sorted(own_config.items())),
            tuple(sorted((str(k), tuple(sorted((str(a), str(b)) for a, b in v.items())))
                         for k, v in devices.items() if isinstance(v, dict))),
            str(src.get("description") or ""))
        try:
            yield step
        except CoveError:
            if (yield GetInstance(name)) is None:
                raise
    return api.Instance.from_wire((yield from flows.get(name)))


def rebuild_instance(name: str, image: str = "") -> Flow[None]:
    """Not convergent. Raises BadRequest for a running instance (as LXD)."""
    if status_of((yield from flows.get(name))) != "stopped":
        raise BadRequest("Instance must be stopped to be rebuilt")
    yield from flows._retry_busy(RebuildInstance(name, image))
