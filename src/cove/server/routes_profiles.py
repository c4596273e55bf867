"""``/1.0/profiles``: list, create, get, replace, merge, rename, delete.

LXD answers these synchronously (no operation), and so does cove: a create
or a rename is 201 with ``Location``, the rest 200. ``ETag`` covers LXD's
writable fields (config, description, devices) and ``If-Match`` on PUT and
PATCH is checked against it (412 when the profile changed since it was read).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from cove import api
from cove.model.errors import PreconditionFailed
from cove.server import render
from cove.server.routes_common import call, check_project, engine_of, json_body, recursion

__all__ = ["add_routes"]

BASE = "/1.0/profiles"
_ETAG_KEYS = ("config", "description", "devices")


def _url(name: str, project: str = "default") -> str:
    """LXD's URL of a profile: ``?project=`` for one outside ``default``."""
    query = "" if project == "default" else f"?project={quote(project, safe='')}"
    return f"{BASE}/{quote(name, safe='')}{query}"


async def _object(request: web.Request, name: str, project: str) -> dict[str, Any]:
    engine = engine_of(request)
    profile = await call(request, engine.profiles.get, name, project)
    used_by = await call(request, engine.profiles.used_by, name, project)
    return render.profile(profile, used_by)


async def _list(request: web.Request) -> web.Response:
    project = await check_project(request)
    profiles = await call(request, engine_of(request).profiles.all, project)
    if recursion(request) == 0:
        return render.sync([_url(p.name, p.project) for p in profiles])
    return render.sync([await _object(request, p.name, project) for p in profiles])


async def _create(request: web.Request) -> web.Response:
    project = await check_project(request)
    post = api.ProfilesPost.parse(await json_body(request))
    made = await call(request, engine_of(request).profiles.create, post.name,
                      config=post.config, devices=post.devices, description=post.description,
                      project=project)
    return render.sync({}, status=201, headers={"Location": _url(post.name, made.project)})


async def _get(request: web.Request) -> web.Response:
    project = await check_project(request)
    obj = await _object(request, request.match_info["name"], project)
    return render.sync(obj, headers={"ETag": render.etag(obj, _ETAG_KEYS)})


async def _update(request: web.Request, patch: bool) -> web.Response:
    project = await check_project(request)
    name = request.match_info["name"]
    put = api.ProfilePut.parse(await json_body(request))
    wanted = request.headers.get("If-Match", "").strip().strip('"')
    if wanted:
        current = await _object(request, name, project)
        if render.etag(current, _ETAG_KEYS) != wanted:
            raise PreconditionFailed("ETag doesn't match: the profile changed since it was read")
    # PUT replaces every writable field (absent ones become empty), as LXD's decoding does
    description = put.description if put.description is not None or patch else ""
    await call(request, engine_of(request).profiles.update, name, config=put.config,
               devices=put.devices, description=description, patch=patch, project=project)
    return render.sync({})


async def _put(request: web.Request) -> web.Response:
    return await _update(request, patch=False)


async def _patch(request: web.Request) -> web.Response:
    return await _update(request, patch=True)


async def _rename(request: web.Request) -> web.Response:
    project = await check_project(request)
    post = api.ProfilePost.parse(await json_body(request))
    await call(request, engine_of(request).profiles.rename, request.match_info["name"],
               post.name, project)
    owner = await call(request, engine_of(request).profiles.owner, project)
    return render.sync({}, status=201, headers={"Location": _url(post.name, owner)})


async def _delete(request: web.Request) -> web.Response:
    project = await check_project(request)
    await call(request, engine_of(request).profiles.delete, request.match_info["name"], project)
    return render.sync({})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(BASE, _list)
    r.add_post(BASE, _create)
    r.add_get(BASE + "/{name}", _get)
    r.add_put(BASE + "/{name}", _put)
    r.add_patch(BASE + "/{name}", _patch)
    r.add_post(BASE + "/{name}", _rename)
    r.add_delete(BASE + "/{name}", _delete)
