"""Images and instances from remote image servers: the dispatch of
``POST /1.0/images`` and ``POST /1.0/instances`` whose source names a
``server`` (LXD's ``mode: pull`` with ``protocol: simplestreams|lxd``) to
``engine.image_pulls``. What LXD sends: ``ImagesPost`` (``source``,
``aliases`` [{name, description}], ``public``, ``auto_update``) and
``InstancesPost`` with ``source {type: image, server, protocol, alias |
fingerprint, certificate, secret, mode}``. The OCI protocol is not handled
here (``is_remote`` leaves it to its own dispatch).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cove import api
from cove.server import render
from cove.server.routes_common import body_aliases, body_flag, call, engine_of

__all__ = ["create_instance", "is_remote", "pull_image"]


def is_remote(source: api.InstanceSource) -> bool:
    """An image source on a server, but an OCI registry's: this module's (an
    unknown protocol too, which ``image_pulls`` refuses naming the field)."""
    return source.type == "image" and bool(source.server) and source.protocol != "oci"


async def pull_image(request: web.Request, body: dict[str, Any],
                     project: str) -> web.Response | None:
    """``POST /1.0/images`` from a remote server; None when the body is not one."""
    raw = body.get("source")
    if not isinstance(raw, dict):
        return None
    src = api.InstanceSource.parse(raw)
    if not is_remote(src):
        return None
    op = await call(request, engine_of(request).image_pulls.pull, src,
                    aliases=body_aliases(body), public=body_flag(body, "public"),
                    auto_update=body_flag(body, "auto_update"), project=project)
    return render.async_op(op)


async def create_instance(request: web.Request, req: api.InstancesPost,
                          project: str) -> web.Response:
    """``POST /1.0/instances`` whose image is on a remote server."""
    op = await call(request, engine_of(request).image_pulls.create_instance, req,
                    project=project)
    return render.async_op(op)
