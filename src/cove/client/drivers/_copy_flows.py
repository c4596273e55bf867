"""The flows of copies and rebuilds, as ``drivers._resources``: one
generator of steps per call, run by every driver. A copy whose target
exists already is left as it is (convergent, as a create); a rebuild is not
convergent (every call starts the root filesystem afresh).
"""

from __future__ import annotations

from collections.abc import Mapping

from cove import api
from cove.client.drivers._flows import flows
from cove.client.drivers._steps import Flow, GetInstance
from cove.client.drivers._steps_copies import CopyInstance, RebuildInstance
from cove.model.errors import CoveError
from cove.model.names import validate_instance_name, validate_snapshot_name

__all__ = ["copy_instance", "rebuild_instance"]


def copy_instance(source: str, name: str, *, instance_only: bool = False,
                  profiles: list[str] | None = None,
                  config: Mapping[str, str] | None = None) -> Flow[api.Instance]:
    """Convergent: an instance ``name`` that exists is left as it is."""
    owner, _, snap = source.partition("/")
    validate_instance_name(owner)
    if snap:
        validate_snapshot_name(snap)
    validate_instance_name(name)
    if (yield GetInstance(name)) is None:
        step = CopyInstance(source, name, instance_only,
                            None if profiles is None else tuple(profiles),
                            tuple(sorted((config or {}).items())))
        try:
            yield step
        except CoveError:
            if (yield GetInstance(name)) is None:
                raise
    return api.Instance.from_wire((yield from flows.get(name)))


def rebuild_instance(name: str, image: str = "") -> Flow[None]:
    """Not convergent. Raises BadRequest for a running instance (as LXD)."""
    yield from flows.get(name)
    yield from flows._retry_busy(RebuildInstance(name, image))
