"""``/1.0/instances/NAME/logs`` and ``.../console``: the instance's output
log and the recorded outputs of ``exec`` (``record-output``).

The logs are the access service's (``engine.access``: ``log_names``,
``log_reader``, ``delete_log``); this module only serves them. ``?follow=1``
(a cove extension) keeps the response open and streams what is appended
until the client goes away or the instance stops.
"""

from __future__ import annotations

import asyncio
import functools

from aiohttp import web

from cove.engine import Reader
from cove.model.errors import NotFound
from cove.model.projects import instance_url, split_key
from cove.model.states import Status
from cove.server import render
from cove.server.routes_common import call, engine_of, instance_key_of, instances_base
from cove.server.routes_instances import BASES

__all__ = ["add_routes"]

_POLL = 0.25


async def _reader(request: web.Request) -> Reader:
    """The log ``{file}`` names; NotFound for an unknown instance or file."""
    return await call(request, engine_of(request).access.log_reader,
                      await instance_key_of(request), request.match_info["file"])


async def _list(request: web.Request) -> web.Response:
    key = await instance_key_of(request)
    files = await call(request, engine_of(request).access.log_names, key)
    base = instances_base(request)
    return render.sync([instance_url(key, f"/logs/{f}", base=base) for f in files])


async def _read_all(request: web.Request, read: Reader) -> bytes:
    out, offset = b"", 0
    while True:
        data, offset = await call(request, read, offset)
        if not data:
            return out
        out += data


async def _follow(request: web.Request, read: Reader) -> web.StreamResponse:
    """Stream the log, then what is appended, until the client goes away or
    the instance stops."""
    engine = engine_of(request)
    project, name = split_key(await instance_key_of(request))
    resp = web.StreamResponse()
    resp.content_type = "text/plain"
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    offset, idle = 0, 0.0
    try:
        while request.transport is not None and not request.transport.is_closing():
            data, offset = await call(request, read, offset)
            if data:
                await resp.write(data)
                idle = 0.0
                continue
            idle += _POLL
            if idle >= 1.0:  # once a second: stop with the instance
                idle = 0.0
                inst = await call(request, engine.instances.get, name, project=project)
                if inst.status is not Status.RUNNING:
                    while True:
                        data, offset = await call(request, read, offset)
                        if not data:
                            break
                        await resp.write(data)
                    break
            await asyncio.sleep(_POLL)
        await resp.write_eof()
    except (ConnectionResetError, NotFound):
        pass
    return resp


def _follow_flag(request: web.Request) -> bool:
    return request.query.get("follow", "").lower() in ("1", "true", "yes", "on")


async def _get(request: web.Request) -> web.StreamResponse:
    read = await _reader(request)
    if _follow_flag(request):
        return await _follow(request, read)
    return web.Response(body=await _read_all(request, read), content_type="text/plain")


async def _delete(request: web.Request) -> web.Response:
    await call(request, engine_of(request).access.delete_log, await instance_key_of(request),
               request.match_info["file"])
    return render.sync({})


async def _console(request: web.Request) -> web.StreamResponse:
    engine = engine_of(request)
    key = await instance_key_of(request)
    project, name = split_key(key)
    await call(request, engine.instances.get, name, project=project)
    read: Reader = functools.partial(engine.access.read_console, key)
    if _follow_flag(request):
        return await _follow(request, read)
    return web.Response(body=await _read_all(request, read),
                        content_type="application/octet-stream")


def add_routes(app: web.Application) -> None:
    r = app.router
    for base in BASES:
        r.add_get(base + "/{name}/logs", _list)
        r.add_get(base + "/{name}/logs/{file}", _get)
        r.add_delete(base + "/{name}/logs/{file}", _delete)
        r.add_get(base + "/{name}/console", _console)
