"""``/1.0/instances/NAME/backups``: make, list, get, rename, delete and
download backups (LXD's endpoints and bodies); and importing one, which is
``POST /1.0/instances`` with the tarball as an ``application/octet-stream``
body (``X-LXD-name``, ``X-LXD-pool``; the project is ``?project=`` as for
every call): ``routes_instances`` hands such a request to ``import_backup``.
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import quote

from aiohttp import web

from cove import api
from cove.model.projects import instance_key, instance_url
from cove.server import render
from cove.server.routes_common import (
    CHUNK,
    EXECUTOR,
    call,
    check_project,
    engine_of,
    instances_base,
    json_body,
    recursion,
    spool,
)

__all__ = ["add_routes", "import_backup"]

_BASES = ("/1.0/instances", "/1.0/containers")


def _url(request: web.Request, project: str, name: str, backup: str) -> str:
    return instance_url(instance_key(project, name), f"/backups/{quote(backup, safe='')}",
                        base=instances_base(request))


async def _list(request: web.Request) -> web.Response:
    project = await check_project(request)
    name = request.match_info["name"]
    backups = await call(request, engine_of(request).backups.all, name, project=project)
    if recursion(request) == 0:
        return render.sync([_url(request, project, name, b.name) for b in backups])
    return render.sync([api.backup(b) for b in backups])


async def _create(request: web.Request) -> web.Response:
    project = await check_project(request)
    req = api.InstanceBackupsPost.parse(await json_body(request, required=False))
    op = await call(request, engine_of(request).backups.create, request.match_info["name"],
                    req.name, project=project, expires_at=req.expires_at,
                    instance_only=req.instance_only, optimized_storage=req.optimized_storage,
                    compression=req.compression_algorithm, since=req.cove_since)
    return render.async_op(op)


async def _get(request: web.Request) -> web.Response:
    project = await check_project(request)
    b = await call(request, engine_of(request).backups.get, request.match_info["name"],
                   request.match_info["backup"], project=project)
    return render.sync(api.backup(b))


async def _rename(request: web.Request) -> web.Response:
    project = await check_project(request)
    req = api.InstanceBackupPost.parse(await json_body(request))
    op = await call(request, engine_of(request).backups.rename, request.match_info["name"],
                    request.match_info["backup"], req.name, project=project)
    return render.async_op(op)


async def _delete(request: web.Request) -> web.Response:
    project = await check_project(request)
    op = await call(request, engine_of(request).backups.delete, request.match_info["name"],
                    request.match_info["backup"], project=project)
    return render.async_op(op)


async def _export(request: web.Request) -> web.StreamResponse:
    """The tarball, streamed with its length (as LXD's ``FileResponse``)."""
    project = await check_project(request)
    f = await call(request, engine_of(request).backups.open, request.match_info["name"],
                   request.match_info["backup"], project=project)
    loop = asyncio.get_running_loop()
    pool = request.app[EXECUTOR]
    try:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        resp = web.StreamResponse(headers={"Content-Length": str(size),
                                           "Content-Disposition": "inline;filename=backup"})
        resp.content_type = "application/octet-stream"
        await resp.prepare(request)
        while chunk := await loop.run_in_executor(pool, f.read, CHUNK):
            await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        f.close()


async def import_backup(request: web.Request) -> web.Response:
    """``POST /1.0/instances`` with a backup tarball as the body."""
    project = await check_project(request)
    path = await spool(request, request.content.read, "backup-")
    try:
        op = await call(request, engine_of(request).backups.import_file, path,
                        name=request.headers.get("X-LXD-name", ""),
                        pool=request.headers.get("X-LXD-pool", ""), project=project)
    except BaseException:
        path.unlink(missing_ok=True)  # refused before the engine took it
        raise
    return render.async_op(op)


def add_routes(app: web.Application) -> None:
    r = app.router
    for base in _BASES:
        one = base + "/{name}/backups/{backup}"
        r.add_get(base + "/{name}/backups", _list)
        r.add_post(base + "/{name}/backups", _create)
        r.add_get(one, _get)
        r.add_post(one, _rename)
        r.add_delete(one, _delete)
        r.add_get(one + "/export", _export)
