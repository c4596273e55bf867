"""``/1.0/instances/NAME/state``: read the live state, start/stop/restart/
freeze/unfreeze."""

from __future__ import annotations

from aiohttp import web

from cove import api
from cove.server import render
from cove.server.routes_common import (
    call,
    check_project,
    engine_of,
    json_body,
    wait_for_lock,
)
from cove.server.routes_instances import BASES

__all__ = ["add_routes"]


async def _get(request: web.Request) -> web.Response:
    project = await check_project(request)
    state = await call(request, engine_of(request).instances.state, request.match_info["name"],
                       project=project)
    return render.sync(api.InstanceState.from_wire(state).to_wire())


async def _put(request: web.Request) -> web.Response:
    project = await check_project(request)
    put = api.InstanceStatePut.parse(await json_body(request))
    if put.command:  # cove's: start once with another command
        op = await call(request, engine_of(request).apps.start_once, request.match_info["name"],
                        put.command, project=project, wait_for_lock=wait_for_lock(request))
        return render.async_op(op)
    op = await call(request, engine_of(request).instances.change_state, request.match_info["name"],
                    put.action, project=project, timeout=put.timeout, force=put.force,
                    wait_for_lock=wait_for_lock(request))
    return render.async_op(op)


def add_routes(app: web.Application) -> None:
    for base in BASES:
        app.router.add_get(base + "/{name}/state", _get)
        app.router.add_put(base + "/{name}/state", _put)
