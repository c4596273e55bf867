"""``/1.0/instances/NAME/snapshots``: take, list, get, change, rename, delete
(LXD's endpoints and bodies). Restoring is ``PUT /1.0/instances/NAME
{"restore": "SNAP"}`` (``routes_instances``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from cove import api
from cove.model.projects import instance_key, instance_url
from cove.server import render
from cove.server.routes_common import (
    call,
    check_project,
    engine_of,
    instances_base,
    json_body,
    recursion,
)

__all__ = ["add_routes"]

_BASES = ("/1.0/instances", "/1.0/containers")


def _url(request: web.Request, project: str, name: str, snap: str) -> str:
    return instance_url(instance_key(project, name), f"/snapshots/{quote(snap, safe='')}",
                        base=instances_base(request))


async def _object(request: web.Request, project: str, name: str, snap: str
                  ) -> dict[str, Any]:
    engine = engine_of(request)
    inst = await call(request, engine.instances.get, name, project=project)
    record = await call(request, engine.snapshots.get, name, snap, project=project)
    return api.snapshot(record, inst)


async def _list(request: web.Request) -> web.Response:
    project = await check_project(request)
    engine = engine_of(request)
    name = request.match_info["name"]
    snaps = await call(request, engine.snapshots.all, name, project=project)
    if recursion(request) == 0:
        return render.sync([_url(request, project, name, s.name) for s in snaps])
    inst = await call(request, engine.instances.get, name, project=project)
    return render.sync([api.snapshot(s, inst) for s in snaps])


async def _create(request: web.Request) -> web.Response:
    project = await check_project(request)
    req = api.InstanceSnapshotsPost.parse(await json_body(request, required=False))
    op = await call(request, engine_of(request).snapshots.create, request.match_info["name"],
                    req.name or None, project=project, stateful=req.stateful,
                    expires_at=req.expires_at)
    return render.async_op(op)


async def _get(request: web.Request) -> web.Response:
    project = await check_project(request)
    obj = await _object(request, project, request.match_info["name"],
                        request.match_info["snap"])
    return render.sync(obj, headers={"ETag": render.etag(obj, ("expires_at",))})


async def _put(request: web.Request) -> web.Response:
    project = await check_project(request)
    req = api.InstanceSnapshotPut.parse(await json_body(request))
    name, snap = request.match_info["name"], request.match_info["snap"]
    engine = engine_of(request)
    await call(request, engine.snapshots.update, name, snap, project=project,
               expires_at=req.expires_at)
    # LXD answers a snapshot PUT with an operation (done at once here)
    op = engine.operations.run(lambda op: None, description="Updating snapshot",
                               resources={"instances_snapshots": [
                                   _url(request, project, name, snap)]},
                               background=False, project=project)
    return render.async_op(op)


async def _patch(request: web.Request) -> web.Response:
    project = await check_project(request)
    req = api.InstanceSnapshotPut.parse(await json_body(request))
    await call(request, engine_of(request).snapshots.update, request.match_info["name"],
               request.match_info["snap"], project=project, expires_at=req.expires_at)
    return render.sync({})


async def _rename(request: web.Request) -> web.Response:
    project = await check_project(request)
    req = api.InstanceSnapshotPost.parse(await json_body(request))
    op = await call(request, engine_of(request).snapshots.rename, request.match_info["name"],
                    request.match_info["snap"], req.name, project=project)
    return render.async_op(op)


async def _delete(request: web.Request) -> web.Response:
    project = await check_project(request)
    op = await call(request, engine_of(request).snapshots.delete, request.match_info["name"],
                    request.match_info["snap"], project=project)
    return render.async_op(op)


def add_routes(app: web.Application) -> None:
    r = app.router
    for base in _BASES:
        one = base + "/{name}/snapshots/{snap}"
        r.add_get(base + "/{name}/snapshots", _list)
        r.add_post(base + "/{name}/snapshots", _create)
        r.add_get(one, _get)
        r.add_put(one, _put)
        r.add_patch(one, _patch)
        r.add_post(one, _rename)
        r.add_delete(one, _delete)
