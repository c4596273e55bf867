"""``/1.0/projects``: list, create, get, update, rename, delete, state."""

from __future__ import annotations

from aiohttp import web

from cove import api
from cove.model.errors import PreconditionFailed
from cove.model.projects import Project
from cove.server import render
from cove.server.routes_common import call, engine_of, json_body, recursion

__all__ = ["add_routes"]


async def _object(request: web.Request, project: Project) -> dict[str, object]:
    used_by = await call(request, engine_of(request).projects.used_by, project.name)
    return api.Project(name=project.name, description=project.description,
                       config=project.config, used_by=used_by).to_wire()


async def _list(request: web.Request) -> web.Response:
    projects = await call(request, engine_of(request).projects.all)
    if recursion(request) == 0:
        return render.sync([f"/1.0/projects/{p.name}" for p in projects])
    objs = [await _object(request, p) for p in projects]
    return render.sync(render.filter_objects(objs, request.query.get("filter", "")))


async def _create(request: web.Request) -> web.Response:
    post = api.ProjectsPost.parse(await json_body(request))
    await call(request, engine_of(request).projects.create, post.name, config=post.config,
               description=post.description)
    return render.sync({}, status=201, headers={"Location": f"/1.0/projects/{post.name}"})


async def _get(request: web.Request) -> web.Response:
    project = await call(request, engine_of(request).projects.get, request.match_info["name"])
    obj = await _object(request, project)
    return render.sync(obj, headers={"ETag": render.etag(obj, ("config", "description"))})


async def _check_etag(request: web.Request, name: str) -> None:
    """LXD's ``If-Match``: refuse to update what changed since the client read it."""
    wanted = request.headers.get("If-Match", "").strip().strip('"')
    if not wanted:
        return
    project = await call(request, engine_of(request).projects.get, name)
    obj = await _object(request, project)
    if render.etag(obj, ("config", "description")) != wanted:
        raise PreconditionFailed("ETag doesn't match: the project changed since it was read")


async def _update(request: web.Request, *, patch: bool) -> web.Response:
    name = request.match_info["name"]
    put = api.ProjectPut.parse(await json_body(request))
    await _check_etag(request, name)
    await call(request, engine_of(request).projects.update, name, config=put.config,
               description=put.description, patch=patch)
    return render.sync({})


async def _put(request: web.Request) -> web.Response:
    return await _update(request, patch=False)


async def _patch(request: web.Request) -> web.Response:
    return await _update(request, patch=True)


async def _rename(request: web.Request) -> web.Response:
    post = api.ProjectPost.parse(await json_body(request))
    op = await call(request, engine_of(request).projects.rename, request.match_info["name"],
                    post.name)
    return render.async_op(op)


async def _delete(request: web.Request) -> web.Response:
    await call(request, engine_of(request).projects.delete, request.match_info["name"])
    return render.sync({})


async def _state(request: web.Request) -> web.Response:
    state = await call(request, engine_of(request).projects.state, request.match_info["name"])
    return render.sync(api.ProjectState.from_wire(state).to_wire())


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/1.0/projects", _list)
    r.add_post("/1.0/projects", _create)
    r.add_get("/1.0/projects/{name}", _get)
    r.add_put("/1.0/projects/{name}", _put)
    r.add_patch("/1.0/projects/{name}", _patch)
    r.add_post("/1.0/projects/{name}", _rename)
    r.add_delete("/1.0/projects/{name}", _delete)
    r.add_get("/1.0/projects/{name}/state", _state)
