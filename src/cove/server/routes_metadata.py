"""``/1.0/instances/NAME/metadata`` and ``.../metadata/templates?path=``:
an instance's ``metadata.yaml`` and template files, as LXD serves them
(``lxd/instance_metadata.go``; ``lxc config metadata`` and ``lxc config
template``). The files are the engine's (``engine.metadata``).
"""

from __future__ import annotations

from aiohttp import web

from cove.model.errors import BadRequest, PreconditionFailed
from cove.server import render
from cove.server.routes_common import call, check_project, engine_of, json_body
from cove.server.routes_instances import BASES

__all__ = ["add_routes"]

_LIMIT = 1 << 20  # a template file: the engine refuses more


async def _get(request: web.Request) -> web.Response:
    project = await check_project(request)
    meta = await call(request, engine_of(request).metadata.get,
                      request.match_info["name"], project=project)
    return render.sync(meta, headers={"ETag": render.etag(meta)})


async def _put(request: web.Request, *, patch: bool) -> web.Response:
    project = await check_project(request)
    name = request.match_info["name"]
    engine = engine_of(request)
    body = await json_body(request)
    wanted = request.headers.get("If-Match", "").strip().strip('"')
    if wanted or patch:  # LXD's EtagCheck, and PATCH's fields over the current ones
        current = await call(request, engine.metadata.get, name, project=project)
        if wanted and render.etag(current) != wanted:
            raise PreconditionFailed("ETag doesn't match: the metadata changed since it was read")
        if patch:  # as Go's decoder onto the current struct: maps gain entries
            body = {**current, **body, **{
                k: {**current[k], **body[k]} for k in ("properties", "templates")
                if isinstance(current.get(k), dict) and isinstance(body.get(k), dict)}}
    await call(request, engine.metadata.put, name, body, project=project)
    return render.sync({})


async def _put_full(request: web.Request) -> web.Response:
    return await _put(request, patch=False)


async def _patch(request: web.Request) -> web.Response:
    return await _put(request, patch=True)


async def _templates_get(request: web.Request) -> web.Response:
    project = await check_project(request)
    name, path = request.match_info["name"], request.query.get("path", "")
    metadata = engine_of(request).metadata
    if not path:
        return render.sync(await call(request, metadata.template_names, name, project=project))
    data = await call(request, metadata.template_get, name, path, project=project)
    return web.Response(body=data, content_type="application/octet-stream",
                        headers={"Content-Disposition": f"inline;filename={path}"})


async def _templates_post(request: web.Request) -> web.Response:
    project = await check_project(request)
    name, path = request.match_info["name"], request.query.get("path", "")
    if not path:
        raise BadRequest("missing path argument")
    data = await request.content.read(_LIMIT + 1)
    await call(request, engine_of(request).metadata.template_put, name, path, data,
               project=project)
    return render.sync({})


async def _templates_delete(request: web.Request) -> web.Response:
    project = await check_project(request)
    name, path = request.match_info["name"], request.query.get("path", "")
    await call(request, engine_of(request).metadata.template_delete, name, path,
               project=project)
    return render.sync({})


def add_routes(app: web.Application) -> None:
    r = app.router
    for base in BASES:
        r.add_get(base + "/{name}/metadata", _get)
        r.add_put(base + "/{name}/metadata", _put_full)
        r.add_patch(base + "/{name}/metadata", _patch)
        r.add_get(base + "/{name}/metadata/templates", _templates_get)
        r.add_post(base + "/{name}/metadata/templates", _templates_post)
        r.add_put(base + "/{name}/metadata/templates", _templates_post)  # older clients
        r.add_delete(base + "/{name}/metadata/templates", _templates_delete)
