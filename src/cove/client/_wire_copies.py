"""Requests of copies (``POST /1.0/instances`` with ``source.type: copy``)
and rebuilds (``POST /1.0/instances/NAME/rebuild``), built from the same
``cove.api`` classes coved parses. Standard library only, no ``typing`` at
run time: the CLI imports it.
"""

from __future__ import annotations

from cove import api
from cove.client._wire import Request, q

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["copy_instance", "copy_post", "rebuild_instance", "rebuild_source"]


def copy_post(source: str, name: str, *, instance_only: bool = False,
              profiles: list[str] | None = None,
              config: Mapping[str, str] | None = None,
              devices: Mapping[str, Mapping[str, str]] | None = None,
              description: str = "") -> api.InstancesPost:
    """A copy of ``source`` (an instance, or ``INSTANCE/SNAPSHOT``) named
    ``name``: the body ``lxc copy`` sends for a copy on one server (it sends
    the source's own config, devices, profiles and description; LXD 5.0
    merges the source's config and devices under the request's, later LXDs
    take the request's only). ``container_only`` is sent beside
    ``instance_only``, as LXD's client does for older servers."""
    source_obj = api.InstanceSource(type="copy", source=source, instance_only=instance_only,
                                    container_only=instance_only)
    return api.InstancesPost(name=name, source=source_obj, profiles=profiles,
                             config=dict(config or {}), devices=devices or {},
                             description=description)


def copy_instance(source: str, name: str, *, instance_only: bool = False,
                  profiles: list[str] | None = None,
                  config: Mapping[str, str] | None = None,
                  devices: Mapping[str, Mapping[str, str]] | None = None,
                  description: str = "") -> Request:
    """``copy_post``'s request."""
    post = copy_post(source, name, instance_only=instance_only, profiles=profiles,
                     config=config, devices=devices, description=description)
    return Request("POST", "/1.0/instances", post.to_wire())


def rebuild_source(image: str = "") -> api.InstanceSource:
    """The image ``image`` (an alias or a fingerprint); "": none (an empty
    root filesystem)."""
    return api.InstanceSource(type="image", alias=image) if image else \
        api.InstanceSource(type="none")


def rebuild_instance(name: str, image: str = "") -> Request:
    return Request("POST", f"/1.0/instances/{q(name)}/rebuild",
                   api.InstanceRebuildPost(source=rebuild_source(image)).to_wire())
