"""The flows of publishing an instance and exporting an image, as
``drivers._resources``: one generator of steps per call, run by every driver.

Neither is convergent: each publish makes a new image (LXD's too: its
``creation_date`` differs), and each export writes its files again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from cove import api
from cove.client.drivers._steps import Flow, GetAlias, GetImage, GetInstance
from cove.client.drivers._steps_publish import ExportImage, PublishImage
from cove.client.drivers._steps_snapshots import GetSnapshot
from cove.model.errors import BadRequest, Conflict, NotFound
from cove.model.names import validate_alias_name, validate_instance_name, validate_snapshot_name

__all__ = ["export_image", "publish"]


def publish(source: str, *, aliases: Sequence[str] = (),
            properties: Mapping[str, str] | None = None,
            public: bool = False) -> Flow[api.Image]:
    if not isinstance(source, str) or not source:
        raise BadRequest("Publish needs an instance (NAME or NAME/SNAPSHOT)")
    inst, _, snap = source.partition("/")
    validate_instance_name(inst)
    if snap:
        validate_snapshot_name(snap)
    if isinstance(aliases, str):
        aliases = (aliases,)
    names = tuple(validate_alias_name(a) for a in aliases)
    for name in names:  # refused before anything is made
        taken = yield GetAlias(name)
        if taken is not None:
            raise Conflict(f"Alias already exists: {name}")
    if (yield GetInstance(inst)) is None:  # a NotFound on every driver, before anything
        raise NotFound(f"Instance not found: {inst}")
    if snap and (yield GetSnapshot(inst, snap)) is None:
        raise NotFound(f"Snapshot not found: {source}")
    props = {str(k): str(v) for k, v in (properties or {}).items()}
    fp = yield PublishImage(source, names, props, bool(public))
    found = yield GetImage(str(fp))
    if found is None:
        raise NotFound(f"Image not found: {fp}")
    return api.Image.from_wire(found)


def export_image(ref: str, directory: str | os.PathLike[str]) -> Flow[list[str]]:
    """``ref``: an alias, a fingerprint or a unique prefix of one."""
    target = os.fspath(directory)
    if not os.path.isdir(target):
        raise NotFound(f"No local directory {target!r}")
    if not isinstance(ref, str) or not ref:
        raise BadRequest("Export needs an image (an alias or a fingerprint)")
    found = None
    if "/" not in ref:
        alias = yield GetAlias(ref)
        if alias is not None:
            found = yield GetImage(str(alias.get("target")))
    if found is None:
        found = yield GetImage(ref)
    if found is None:
        raise NotFound(f"Image not found: {ref}")
    written = yield ExportImage(str(found["fingerprint"]), target)
    return [str(p) for p in written]
