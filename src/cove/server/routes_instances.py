"""``/1.0/instances`` (and its older name ``/1.0/containers``): list, create,
get, update, rename, delete."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cove import api
from cove.engine import Operation
from cove.model.errors import PreconditionFailed
from cove.model.projects import instance_key, instance_url, split_key
from cove.model.records import Instance
from cove.server import listing, render, routes_backups, routes_image_pull, routes_registry_pull
from cove.server.routes_common import (
    all_projects,
    call,
    check_project,
    engine_of,
    instances_base,
    json_body,
    recursion,
    recursion_fields,
    wait_for_lock,
)

__all__ = ["BASES", "add_routes"]

BASES = ("/1.0/instances", "/1.0/containers")


async def _list(request: web.Request) -> web.Response:
    project = await check_project(request)
    itype = request.query.get("instance-type", "")
    if itype not in ("", "container"):
        return render.sync([])  # cove has containers only
    engine = engine_of(request)
    level = recursion(request)
    every = all_projects(request)
    # cove reports no disk usage (``disk`` is always {}): only the network part
    # costs anything to leave out.
    network = "state.network" in recursion_fields(request)
    keys = listing.parse_keys(request.query.get("cove-keys"))
    if not request.query.get("filter", ""):  # see listing's note
        return render.sync_text(await call(
            request, listing.instances_text, engine, None if every else project, level,
            network=network, base=instances_base(request), keys=keys))
    instances = await call(request, engine.instances.all, project=None if every else project)
    if level < 2:
        objs = [render.instance(i) for i in instances]
    else:
        # Two engine calls for the whole list, not two per instance: each
        # call is a hop to a worker thread, and with hundreds listed the hops
        # were most of the time (bench/scale.py).
        states = await call(request, engine.instances.states, instances, network=network)
        snaps = await call(request, engine.snapshots.by_instance, [i.name for i in instances])
        objs = []
        for inst in instances:
            obj = render.instance_full(inst, states[inst.name])
            obj["snapshots"] = [api.snapshot(s, inst) for s in snaps[inst.name]]
            objs.append(obj)
    objs = render.filter_objects(objs, request.query.get("filter", ""))
    if keys is not None and level > 0:
        objs = [listing.select(o, keys) for o in objs]
    if level == 0:
        base = instances_base(request)
        return render.sync([instance_url(instance_key(o["project"], o["name"]), base=base)
                            for o in objs])
    return render.sync(objs)


async def _snapshots(request: web.Request, inst: Instance) -> list[dict[str, Any]]:
    """``InstanceFull.snapshots`` (``lxc info`` lists them from it)."""
    snaps = await call(request, engine_of(request).snapshots.all, split_key(inst.name)[1],
                       project=inst.project)
    return [api.snapshot(s, inst) for s in snaps]


async def _create(request: web.Request) -> web.Response:
    if request.content_type == "application/octet-stream":  # a backup tarball: lxc import
        return await routes_backups.import_backup(request)
    project = await check_project(request)
    req = api.InstancesPost.parse(await json_body(request))
    if req.source.type == "copy":  # routes_copies' engine service
        op = await call(request, engine_of(request).copies.copy, req, project=project)
        return render.async_op(op)
    if routes_registry_pull.is_oci(req.source):  # an image on an OCI registry
        return await routes_registry_pull.create_instance(request, req, project)
    if routes_image_pull.is_remote(req.source):  # simplestreams or another LXD
        return await routes_image_pull.create_instance(request, req, project)
    req.source.image_ref()  # what cove cannot create from is refused before the engine looks
    op = await call(request, engine_of(request).instances.create, req, project=project)
    return render.async_op(op)


async def _get(request: web.Request) -> web.Response:
    project = await check_project(request)
    engine = engine_of(request)
    name = request.match_info["name"]
    inst = await call(request, engine.instances.get, name, project=project)
    obj = render.instance(inst)
    headers = {"ETag": render.etag(obj)}
    if recursion(request) > 0:
        state = await call(request, engine.instances.state, name, project=project)
        obj = render.instance_full(inst, state)
        obj["snapshots"] = await _snapshots(request, inst)
    return render.sync(obj, headers=headers)


async def _check_etag(request: web.Request, name: str, project: str) -> None:
    """LXD's ``If-Match``: refuse to update what changed since the client read it."""
    wanted = request.headers.get("If-Match", "").strip().strip('"')
    if not wanted:
        return
    inst = await call(request, engine_of(request).instances.get, name, project=project)
    if render.etag(render.instance(inst)) != wanted:
        raise PreconditionFailed("ETag doesn't match: the instance changed since it was read")


async def _update(request: web.Request, name: str, put: api.InstancePut, *,
                  project: str, patch: bool) -> None:
    """The writable fields the body set (None: absent) to the engine."""
    await call(request, engine_of(request).instances.update, name, project=project,
               config=put.config,
               devices=put.devices, profiles=put.profiles, description=put.description,
               ephemeral=put.ephemeral, patch=patch)


def _update_op(request: web.Request, name: str, project: str) -> Operation:
    """LXD answers PUT with an operation; the update is done, so it is one that
    has already succeeded (clients wait on it and move on)."""
    return engine_of(request).operations.run(
        lambda op: None, description="Updating instance",
        resources={"instances": [instance_url(instance_key(project, name))]},
        background=False, project=project)


async def _put(request: web.Request) -> web.Response:
    project = await check_project(request)
    name = request.match_info["name"]
    put = api.InstancePut.parse(await json_body(request))
    if put.restore:
        # LXD: a restore ignores the other fields of the body
        op = await call(request, engine_of(request).snapshots.restore, name, put.restore,
                        project=project, stateful=bool(put.stateful))
        return render.async_op(op)
    await _check_etag(request, name, project)
    await _update(request, name, put, project=project, patch=False)
    return render.async_op(_update_op(request, name, project))


async def _patch(request: web.Request) -> web.Response:
    project = await check_project(request)
    name = request.match_info["name"]
    put = api.InstancePut.parse(await json_body(request))
    await _check_etag(request, name, project)
    await _update(request, name, put, project=project, patch=True)
    return render.sync({})


async def _delete(request: web.Request) -> web.Response:
    project = await check_project(request)
    # cove extension ?force=1 (LXD has none: `lxc delete --force` stops first, then
    # deletes): also a running instance, and one that others name in cove.depends
    force = request.query.get("force", "").strip().lower() in ("1", "true")
    op = await call(request, engine_of(request).instances.delete, request.match_info["name"],
                    project=project, force=force, wait_for_lock=wait_for_lock(request))
    return render.async_op(op)


async def _rename(request: web.Request) -> web.Response:
    project = await check_project(request)
    post = api.InstancePost.parse(await json_body(request))
    op = await call(request, engine_of(request).instances.rename,
                    request.match_info["name"], post.name, project=project)
    return render.async_op(op)


def add_routes(app: web.Application) -> None:
    r = app.router
    for base in BASES:
        r.add_get(base, _list)
        r.add_post(base, _create)
        r.add_get(base + "/{name}", _get)
        r.add_put(base + "/{name}", _put)
        r.add_patch(base + "/{name}", _patch)
        r.add_delete(base + "/{name}", _delete)
        r.add_post(base + "/{name}", _rename)
