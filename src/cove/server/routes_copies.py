"""``POST /1.0/instances/NAME/rebuild`` (LXD's ``instances_rebuild``). A copy
is ``POST /1.0/instances`` with ``source.type: copy``, which
``routes_instances`` hands to the same engine service (``engine.copies``)."""

from __future__ import annotations

from aiohttp import web

from cove import api
from cove.server import render
from cove.server.routes_common import call, check_project, engine_of, json_body

__all__ = ["add_routes"]

_BASES = ("/1.0/instances", "/1.0/containers")


async def _rebuild(request: web.Request) -> web.Response:
    project = await check_project(request)
    req = api.InstanceRebuildPost.parse(await json_body(request))
    op = await call(request, engine_of(request).copies.rebuild, request.match_info["name"],
                    req.source, project=project)
    return render.async_op(op)


def add_routes(app: web.Application) -> None:
    for base in _BASES:
        app.router.add_post(base + "/{name}/rebuild", _rebuild)
