"""``/1.0/instances/NAME/state``: read the live state, start/stop/restart/
freeze/unfreeze."""

from __future__ import annotations

from aiohttp import web

from cove.model.errors import BadRequest
from cove.server import render
from cove.server.routes_common import (
    call,
    check_project,
    engine_of,
    json_body,
    opt_bool,
    opt_number,
    opt_str,
    wait_for_lock,
)
from cove.server.routes_instances import BASES

__all__ = ["add_routes"]


async def _get(request: web.Request) -> web.Response:
    check_project(request)
    state = await call(request, engine_of(request).instances.state, request.match_info["name"])
    return render.sync(state)


async def _put(request: web.Request) -> web.Response:
    check_project(request)
    body = await json_body(request)
    action = opt_str(body, "action")
    if not action:
        raise BadRequest("Field 'action' is required: start, stop, restart, freeze or unfreeze")
    if opt_bool(body, "stateful"):
        raise BadRequest("Stateful start and stop (checkpoints) are not supported")
    op = await call(request, engine_of(request).instances.change_state, request.match_info["name"],
                    action, timeout=opt_number(body, "timeout", -1), force=opt_bool(body, "force"),
                    wait_for_lock=wait_for_lock(request))
    return render.async_op(op)


def add_routes(app: web.Application) -> None:
    for base in BASES:
        app.router.add_get(base + "/{name}/state", _get)
        app.router.add_put(base + "/{name}/state", _put)
