"""``/1.0/networks``: list, create, get, update, delete, state and leases.

LXD answers these synchronously (no operation), and so does cove. A
network's name is its bridge's name on the host; deleting one that the
default profile or an instance uses is refused with 400, as LXD does.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cove import api
from cove.model.errors import BadRequest
from cove.server import render
from cove.server.routes_common import (
    call,
    check_project,
    engine_of,
    json_body,
    recursion,
)

__all__ = ["add_routes"]

BASE = "/1.0/networks"


async def _object(request: web.Request, name: str) -> dict[str, Any]:
    engine = engine_of(request)
    net = await call(request, engine.networks.get, name)
    used_by = await call(request, engine.networks.used_by, name)
    return render.network(net, used_by)


async def _list(request: web.Request) -> web.Response:
    await check_project(request)
    nets = await call(request, engine_of(request).networks.all)
    if recursion(request) == 0:
        return render.sync([f"{BASE}/{n.name}" for n in nets])
    return render.sync([await _object(request, n.name) for n in nets])


async def _create(request: web.Request) -> web.Response:
    await check_project(request)
    post = api.NetworksPost.parse(await json_body(request))
    await call(request, engine_of(request).networks.create, post.name, config=post.config,
               description=post.description, type=post.type)
    return render.sync({}, status=201, headers={"Location": f"{BASE}/{post.name}"})


async def _get(request: web.Request) -> web.Response:
    await check_project(request)
    obj = await _object(request, request.match_info["name"])
    return render.sync(obj, headers={"ETag": render.etag(obj, ("config", "description"))})


async def _update(request: web.Request, patch: bool) -> web.Response:
    await check_project(request)
    name = request.match_info["name"]
    put = api.NetworkPut.parse(await json_body(request))
    config = put.config if put.config is not None or patch else {}  # PUT replaces it all
    await call(request, engine_of(request).networks.update, name, patch=patch, config=config,
               description=put.description)
    return render.sync({})


async def _put(request: web.Request) -> web.Response:
    return await _update(request, patch=False)


async def _patch(request: web.Request) -> web.Response:
    return await _update(request, patch=True)


async def _delete(request: web.Request) -> web.Response:
    await check_project(request)
    await call(request, engine_of(request).networks.delete, request.match_info["name"])
    return render.sync({})


async def _rename(request: web.Request) -> web.Response:
    await check_project(request)
    raise BadRequest("Renaming a network is not supported: create a new one and move the "
                     "NICs to it")


async def _state(request: web.Request) -> web.Response:
    await check_project(request)
    state = await call(request, engine_of(request).networks.state, request.match_info["name"])
    return render.sync(api.NetworkState.from_wire(state).to_wire())


async def _leases(request: web.Request) -> web.Response:
    await check_project(request)
    leases = await call(request, engine_of(request).networks.leases,
                        request.match_info["name"])
    return render.sync([render.network_lease(lease, lease.instance) for lease in leases])


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(BASE, _list)
    r.add_post(BASE, _create)
    r.add_get(BASE + "/{name}", _get)
    r.add_put(BASE + "/{name}", _put)
    r.add_patch(BASE + "/{name}", _patch)
    r.add_delete(BASE + "/{name}", _delete)
    r.add_post(BASE + "/{name}", _rename)
    r.add_get(BASE + "/{name}/state", _state)
    r.add_get(BASE + "/{name}/leases", _leases)
