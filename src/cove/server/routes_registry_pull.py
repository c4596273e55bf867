"""Images and instances from OCI registries: the dispatch of ``POST
/1.0/images`` (``source {type: image, mode: pull, protocol: oci, server,
alias}``) and ``POST /1.0/instances`` (``source {type: image, protocol:
oci, server, alias}``, Incus' ``instance_oci``) to
``engine.registry_pulls``; and ``POST /1.0/images/{fingerprint}/push``
(cove's own: an image pushed to a registry as OCI layers).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cove import api
from cove.model.errors import BadRequest
from cove.server import render
from cove.server.routes_common import (
    body_aliases,
    body_flag,
    call,
    check_project,
    engine_of,
    json_body,
)

__all__ = ["add_routes", "create_instance", "is_oci", "pull_image"]


def is_oci(source: api.InstanceSource) -> bool:
    """An image source on an OCI registry: this module's."""
    return source.type == "image" and source.protocol == "oci"


async def pull_image(request: web.Request, body: dict[str, Any],
                     project: str) -> web.Response | None:
    """``POST /1.0/images`` from a registry; None when the body is not one."""
    raw = body.get("source")
    if not isinstance(raw, dict):
        return None
    src = api.InstanceSource.parse(raw)
    if not is_oci(src):
        return None
    public = body_flag(body, "public")
    op = await call(request, engine_of(request).registry_pulls.pull, src,
                    aliases=body_aliases(body), public=public, project=project)
    return render.async_op(op)


async def create_instance(request: web.Request, req: api.InstancesPost,
                          project: str) -> web.Response:
    """``POST /1.0/instances`` whose image is on a registry."""
    op = await call(request, engine_of(request).registry_pulls.create_instance, req,
                    project=project)
    return render.async_op(op)


async def _push(request: web.Request) -> web.Response:
    """``POST /1.0/images/{fingerprint}/push`` with ``{"target": {server,
    alias, certificate, secret}}`` (cove's own; LXD has no push to OCI)."""
    project = await check_project(request)
    body = await json_body(request)
    target = body.get("target") if isinstance(body, dict) else None
    if not isinstance(target, dict):
        raise BadRequest("Field 'target' must be an object: {\"server\": URL, "
                         "\"alias\": \"REPO:TAG\"}")
    dest = api.InstanceSource.parse({**target, "type": "image", "protocol": "oci"})
    op = await call(request, engine_of(request).registry_pulls.push,
                    request.match_info["fingerprint"], dest, project=project)
    return render.async_op(op)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/1.0/images/{fingerprint}/push", _push)
