"""``/1.0/instances`` (and its older name ``/1.0/containers``): list, create,
get, update, rename, delete."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cove.engine import CreateRequest, Operation
from cove.model.errors import BadRequest, PreconditionFailed
from cove.server import render
from cove.server.routes_common import (
    call,
    check_project,
    engine_of,
    instances_base,
    json_body,
    opt_bool,
    opt_devices,
    opt_str,
    opt_str_list,
    opt_str_map,
    recursion,
    wait_for_lock,
)

__all__ = ["BASES", "add_routes"]

BASES = ("/1.0/instances", "/1.0/containers")


async def _list(request: web.Request) -> web.Response:
    check_project(request)
    itype = request.query.get("instance-type", "")
    if itype not in ("", "container"):
        return render.sync([])  # cove has containers only
    engine = engine_of(request)
    level = recursion(request)
    instances = await call(request, engine.instances.all)
    if level < 2:
        objs = [render.instance(i) for i in instances]
    else:
        objs = []
        for inst in instances:
            state = await call(request, engine.instances.state, inst.name)
            objs.append(render.instance_full(inst, state))
    objs = render.filter_objects(objs, request.query.get("filter", ""))
    if level == 0:
        base = instances_base(request)
        return render.sync([f"{base}/{o['name']}" for o in objs])
    return render.sync(objs)


def _create_request(body: dict[str, Any]) -> CreateRequest:
    name = opt_str(body, "name")
    if not name:
        raise BadRequest("Field 'name' is required: cove does not make up instance names")
    itype = opt_str(body, "type")
    if itype not in ("", "container"):
        raise BadRequest(f"Instance type {itype!r} is not supported: cove runs containers only")
    source = body.get("source")
    if source is None:
        source = {}
    if not isinstance(source, dict):
        raise BadRequest("Field 'source' must be an object")
    stype = opt_str(source, "type")
    if stype in ("", "none"):
        raise BadRequest("Creating an instance without an image (source type 'none') is "
                         "not supported yet: give source {\"type\": \"image\", \"alias\": ...}")
    if stype != "image":
        raise BadRequest(f"Source type {stype!r} is not supported: cove creates instances "
                         "from local images only (source type 'image')")
    if opt_str(source, "server"):
        raise BadRequest("Remote image servers are not supported: import the image into cove "
                         "first (POST /1.0/images), then create from its alias or fingerprint")
    if source.get("properties"):
        raise BadRequest("Choosing an image by properties is not supported: "
                         "give its alias or fingerprint")
    image = opt_str(source, "fingerprint") or opt_str(source, "alias")
    if not image:
        raise BadRequest("Source must name an image: give 'alias' or 'fingerprint'")
    profiles = opt_str_list(body, "profiles")
    return CreateRequest(
        name=name,
        image=image,
        config=opt_str_map(body, "config") or {},
        devices=opt_devices(body) or {},
        profiles=["default"] if profiles is None else profiles,
        ephemeral=opt_bool(body, "ephemeral"),
        description=opt_str(body, "description"),
        start=opt_bool(body, "start"),
    )


async def _create(request: web.Request) -> web.Response:
    check_project(request)
    req = _create_request(await json_body(request))
    op = await call(request, engine_of(request).instances.create, req)
    return render.async_op(op)


async def _get(request: web.Request) -> web.Response:
    check_project(request)
    engine = engine_of(request)
    name = request.match_info["name"]
    inst = await call(request, engine.instances.get, name)
    obj = render.instance(inst)
    headers = {"ETag": render.etag(obj)}
    if recursion(request) > 0:
        state = await call(request, engine.instances.state, name)
        obj = render.instance_full(inst, state)
    return render.sync(obj, headers=headers)


async def _check_etag(request: web.Request, name: str) -> None:
    """LXD's ``If-Match``: refuse to update what changed since the client read it."""
    wanted = request.headers.get("If-Match", "").strip().strip('"')
    if not wanted:
        return
    inst = await call(request, engine_of(request).instances.get, name)
    if render.etag(render.instance(inst)) != wanted:
        raise PreconditionFailed("ETag doesn't match: the instance changed since it was read")


def _update_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The writable fields present in the body, typed."""
    fields: dict[str, Any] = {}
    if "config" in body:
        fields["config"] = opt_str_map(body, "config") or {}
    if "devices" in body:
        fields["devices"] = opt_devices(body) or {}
    if "profiles" in body:
        fields["profiles"] = opt_str_list(body, "profiles") or []
    if "description" in body:
        fields["description"] = opt_str(body, "description")
    if "ephemeral" in body:
        fields["ephemeral"] = opt_bool(body, "ephemeral")
    return fields


def _update_op(request: web.Request, name: str) -> Operation:
    """LXD answers PUT with an operation; the update is done, so it is one that
    has already succeeded (clients wait on it and move on)."""
    return engine_of(request).operations.run(
        lambda op: None, description="Updating instance",
        resources={"instances": [f"/1.0/instances/{name}"]}, background=False)


async def _put(request: web.Request) -> web.Response:
    check_project(request)
    name = request.match_info["name"]
    body = await json_body(request)
    if body.get("restore"):
        raise BadRequest("Restoring a snapshot is not supported yet")
    fields = _update_fields(body)
    await _check_etag(request, name)
    await call(request, engine_of(request).instances.update, name, **fields)
    return render.async_op(_update_op(request, name))


async def _patch(request: web.Request) -> web.Response:
    check_project(request)
    name = request.match_info["name"]
    fields = _update_fields(await json_body(request))
    await _check_etag(request, name)
    await call(request, engine_of(request).instances.update, name, patch=True, **fields)
    return render.sync({})


async def _delete(request: web.Request) -> web.Response:
    check_project(request)
    op = await call(request, engine_of(request).instances.delete, request.match_info["name"],
                    wait_for_lock=wait_for_lock(request))
    return render.async_op(op)


async def _rename(request: web.Request) -> web.Response:
    check_project(request)
    body = await json_body(request)
    if opt_bool(body, "migration"):
        raise BadRequest("Migration is not supported: cove instances stay on their host")
    new_name = opt_str(body, "name")
    if not new_name:
        raise BadRequest("Field 'name' (the new name) is required")
    op = await call(request, engine_of(request).instances.rename,
                    request.match_info["name"], new_name)
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
