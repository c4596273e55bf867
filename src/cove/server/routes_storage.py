"""``/1.0/storage-pools``: the root's ``default`` pool and its custom volumes.

LXD answers these synchronously (no operation) for a local custom volume
without a copy source, and so does cove: a create is ``200`` with an empty
body, a rename ``201`` with ``Location``. Creating, changing or deleting
pools is refused with 400: cove has the one pool on its root (see
``engine._storage``). Each instance's root filesystem is listed (and read) as
a ``container`` volume, as LXD does; only ``custom`` volumes can be changed.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cove import api
from cove.model.errors import BadRequest, NotFound, PreconditionFailed
from cove.model.projects import instance_url, split_key
from cove.model.records import Instance
from cove.server import render
from cove.server.routes_common import call, check_project, engine_of, json_body, recursion

__all__ = ["add_routes"]

BASE = "/1.0/storage-pools"
_ONE_POOL = ("cove has one storage pool, default (a dir pool on the cove root); "
             "creating, changing or deleting pools is not supported")


async def _pool_object(request: web.Request, name: str) -> dict[str, Any]:
    storage = engine_of(request).storage
    pool = await call(request, storage.pool, name)
    used_by = await call(request, storage.pool_used_by, name)
    return api.StoragePool.from_wire({**pool, "used_by": used_by}).to_wire()


async def _pools(request: web.Request) -> web.Response:
    await check_project(request)
    names = await call(request, engine_of(request).storage.pool_names)
    if recursion(request) == 0:
        return render.sync([f"{BASE}/{n}" for n in names])
    return render.sync([await _pool_object(request, n) for n in names])


async def _pool(request: web.Request) -> web.Response:
    await check_project(request)
    obj = await _pool_object(request, request.match_info["pool"])
    return render.sync(obj, headers={"ETag": render.etag(obj, ("config", "description"))})


async def _pool_refused(request: web.Request) -> web.Response:
    await check_project(request)
    raise BadRequest(_ONE_POOL)


async def _resources(request: web.Request) -> web.Response:
    await check_project(request)
    res = await call(request, engine_of(request).storage.pool_resources,
                     request.match_info["pool"])
    return render.sync(api.ResourcesStoragePool.from_wire(res).to_wire())


def _type_of(request: web.Request) -> str:
    return request.match_info.get("type", "")


def _container_volume(pool: str, inst: Instance) -> dict[str, Any]:
    """An instance's root filesystem as LXD lists it among a pool's volumes."""
    return api.StorageVolume(name=split_key(inst.name)[1], type="container", pool=pool,
                             created_at=api.rfc3339(inst.created_at),
                             used_by=[instance_url(inst.name)]).to_wire()


async def _volumes(request: web.Request) -> web.Response:
    project = await check_project(request)
    storage = engine_of(request).storage
    pool, kind = request.match_info["pool"], _type_of(request)
    # custom volumes, and (as LXD) each instance's root filesystem as a
    # "container" volume; cove has no image or virtual-machine volumes
    vols = await call(request, storage.volumes, pool, project=project) \
        if kind in ("", "custom") else []
    insts = await call(request, storage.instance_volumes, pool, project=project) \
        if kind in ("", "container") else []
    if recursion(request) == 0:
        return render.sync([f"{BASE}/{pool}/volumes/container/{split_key(i.name)[1]}"
                            for i in insts]
                           + [f"{BASE}/{pool}/volumes/custom/{v.name}" for v in vols])
    out = [_container_volume(pool, i) for i in insts]
    for v in vols:
        used_by = await call(request, storage.volume_used_by, pool, v.name, project=project)
        out.append(api.storage_volume(v, used_by))
    return render.sync(out)


async def _create(request: web.Request) -> web.Response:
    project = await check_project(request)
    pool = request.match_info["pool"]
    post = api.StorageVolumesPost.parse(await json_body(request), type=_type_of(request))
    await call(request, engine_of(request).storage.create_volume, pool, post.name,
               type=post.type, description=post.description, config=post.config,
               content_type=post.content_type, project=project)
    return render.sync({})


async def _volume_object(request: web.Request, project: str) -> dict[str, Any]:
    storage = engine_of(request).storage
    pool, name = request.match_info["pool"], request.match_info["name"]
    if _type_of(request) == "container":
        found = [i for i in await call(request, storage.instance_volumes, pool,
                                       project=project)
                 if split_key(i.name)[1] == name]
        if not found:
            raise NotFound(f"Storage volume not found: {name}")
        return _container_volume(pool, found[0])
    vol = await call(request, storage.volume, pool, name, type=_type_of(request),
                     project=project)
    used_by = await call(request, storage.volume_used_by, pool, name, project=project)
    return api.storage_volume(vol, used_by)


async def _get(request: web.Request) -> web.Response:
    project = await check_project(request)
    obj = await _volume_object(request, project)
    return render.sync(obj, headers={"ETag": render.etag(obj, ("config", "description"))})


async def _update(request: web.Request, patch: bool) -> web.Response:
    project = await check_project(request)
    put = api.StorageVolumePut.parse(await json_body(request))
    wanted = request.headers.get("If-Match", "").strip().strip('"')
    if wanted and render.etag(await _volume_object(request, project),
                              ("config", "description")) != wanted:
        raise PreconditionFailed("ETag doesn't match: the volume changed since it was read")
    config = put.config if put.config is not None or patch else {}  # PUT replaces it all
    description = put.description if put.description is not None or patch else ""
    await call(request, engine_of(request).storage.update_volume, request.match_info["pool"],
               request.match_info["name"], type=_type_of(request), config=config,
               description=description, patch=patch, project=project)
    return render.sync({})


async def _put(request: web.Request) -> web.Response:
    return await _update(request, patch=False)


async def _patch(request: web.Request) -> web.Response:
    return await _update(request, patch=True)


async def _rename(request: web.Request) -> web.Response:
    project = await check_project(request)
    pool = request.match_info["pool"]
    post = api.StorageVolumePost.parse(await json_body(request))
    if post.pool and post.pool != pool:
        raise BadRequest(f"Field 'pool': moving volumes to pool {post.pool!r} is not "
                         "supported (cove has one pool)")
    await call(request, engine_of(request).storage.rename_volume, pool,
               request.match_info["name"], post.name, type=_type_of(request), project=project)
    return render.sync({}, status=201,
                       headers={"Location": f"{BASE}/{pool}/volumes/custom/{post.name}"})


async def _delete(request: web.Request) -> web.Response:
    project = await check_project(request)
    await call(request, engine_of(request).storage.delete_volume, request.match_info["pool"],
               request.match_info["name"], type=_type_of(request), project=project)
    return render.sync({})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(BASE, _pools)
    r.add_post(BASE, _pool_refused)
    r.add_get(BASE + "/{pool}", _pool)
    r.add_put(BASE + "/{pool}", _pool_refused)
    r.add_patch(BASE + "/{pool}", _pool_refused)
    r.add_delete(BASE + "/{pool}", _pool_refused)
    r.add_get(BASE + "/{pool}/resources", _resources)
    r.add_get(BASE + "/{pool}/volumes", _volumes)
    r.add_post(BASE + "/{pool}/volumes", _create)
    r.add_get(BASE + "/{pool}/volumes/{type}", _volumes)
    r.add_post(BASE + "/{pool}/volumes/{type}", _create)
    one = BASE + "/{pool}/volumes/{type}/{name}"
    r.add_get(one, _get)
    r.add_put(one, _put)
    r.add_patch(one, _patch)
    r.add_post(one, _rename)
    r.add_delete(one, _delete)
