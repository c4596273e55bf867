"""``/1.0/instances/NAME/logs`` and ``.../console``: the instance's output
log and the recorded outputs of ``exec`` (``record-output``).

``console.log`` is the instance's output as plain text
(``engine.read_console``); ``lxc.log`` is accepted as another name for it,
because ``lxc info --show-log`` asks for that one. ``exec_<operation>.stdout|stderr`` are written by ``exec`` under
``<root>/instances/NAME/logs/``. ``?follow=1`` (a cove extension) keeps the
response open and streams what is appended until the client goes away or
the instance stops.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from cove.model.errors import BadRequest, NotFound
from cove.model.states import Status
from cove.server import render
from cove.server.routes_common import call, check_project, engine_of, instances_base
from cove.server.routes_instances import BASES

__all__ = ["CONSOLE_LOG", "add_routes", "exec_log_dir"]

CONSOLE_LOG = "console.log"
_CONSOLE_NAMES = (CONSOLE_LOG, "lxc.log")
_CHUNK = 1 << 16
_POLL = 0.25


def exec_log_dir(root: Path, name: str) -> Path:
    """Where ``exec`` records the outputs of commands run in instance ``name``."""
    # Inside the instance directory, so delete and rename take them along.
    return root / "instances" / name / "logs"


def _check_file_name(file: str) -> str:
    if not file or "/" in file or file in (".", "..") or ".." in file or file.startswith("."):
        raise BadRequest(f"Invalid log file name {file!r}")
    return file


# Reads a log from a byte offset: (data, offset to read on from).
Reader = Callable[[int], tuple[bytes, int]]


def _file_reader(path: Path) -> Reader:
    def read(offset: int) -> tuple[bytes, int]:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(_CHUNK)
        except FileNotFoundError:
            return b"", offset
        return data, offset + len(data)
    return read


async def _reader(request: web.Request) -> Reader:
    """The log ``{file}`` names; NotFound for an unknown instance or file."""
    engine = engine_of(request)
    name = request.match_info["name"]
    file = _check_file_name(request.match_info["file"])
    await call(request, engine.get_instance, name)
    if file in _CONSOLE_NAMES:
        return functools.partial(engine.read_console, name)
    path = exec_log_dir(engine.root, name) / file
    if not await call(request, path.is_file):
        raise NotFound(f"Log file not found: {file}")
    return _file_reader(path)


async def _list(request: web.Request) -> web.Response:
    check_project(request)
    engine = engine_of(request)
    name = request.match_info["name"]
    await call(request, engine.get_instance, name)
    base = f"{instances_base(request)}/{name}/logs"
    log_dir = exec_log_dir(engine.root, name)

    def exec_logs() -> list[str]:
        try:
            return sorted(p.name for p in log_dir.iterdir() if p.is_file())
        except FileNotFoundError:
            return []

    files = [CONSOLE_LOG] + await call(request, exec_logs)
    return render.sync([f"{base}/{f}" for f in files])


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
    name = request.match_info["name"]
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
                inst = await call(request, engine.get_instance, name)
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
    check_project(request)
    read = await _reader(request)
    if _follow_flag(request):
        return await _follow(request, read)
    return web.Response(body=await _read_all(request, read), content_type="text/plain")


async def _delete(request: web.Request) -> web.Response:
    check_project(request)
    file = _check_file_name(request.match_info["file"])
    if file in _CONSOLE_NAMES:
        raise BadRequest("The console log cannot be deleted; only exec output logs can")
    engine = engine_of(request)
    name = request.match_info["name"]
    await call(request, engine.get_instance, name)
    try:
        await call(request, os.unlink, exec_log_dir(engine.root, name) / file)
    except FileNotFoundError:
        raise NotFound(f"Log file not found: {file}") from None
    return render.sync({})


async def _console(request: web.Request) -> web.StreamResponse:
    check_project(request)
    engine = engine_of(request)
    name = request.match_info["name"]
    await call(request, engine.get_instance, name)
    read: Reader = functools.partial(engine.read_console, name)
    if _follow_flag(request):
        return await _follow(request, read)
    return web.Response(body=await _read_all(request, read),
                        content_type="application/octet-stream")


async def _console_ws(request: web.Request) -> web.Response:
    raise BadRequest("Attaching to the console is not supported yet; "
                     "GET .../console (or .../logs/console.log?follow=1) shows the output")


def add_routes(app: web.Application) -> None:
    r = app.router
    for base in BASES:
        r.add_get(base + "/{name}/logs", _list)
        r.add_get(base + "/{name}/logs/{file}", _get)
        r.add_delete(base + "/{name}/logs/{file}", _delete)
        r.add_get(base + "/{name}/console", _console)
        r.add_post(base + "/{name}/console", _console_ws)
