"""``/1.0/instances/NAME/files?path=P``: read, write and delete files in an
instance, with LXD's ``X-LXD-*`` headers.

Design note: file bodies are streamed both ways. A download copies from the
descriptor the engine opened, chunk by chunk on worker threads; an upload
larger than ``_IN_MEMORY`` is spooled to a temporary file under
``<root>/tmp`` first and handed to the engine as an open file, so a big
push never sits in memory. Modes are sent as LXD does (``%04o``) and read
as LXD does (Go's ``ParseInt(s, 0, 0)``: ``0644`` octal, ``420`` decimal).
"""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from cove.engine import FileInfo
from cove.model.errors import BadRequest
from cove.server import render
from cove.server.routes_common import CHUNK, EXECUTOR, call, engine_of, instance_key_of, spool
from cove.server.routes_instances import BASES

__all__ = ["add_routes", "parse_mode"]

_IN_MEMORY = 1 << 20  # smaller uploads are read into memory, larger ones spooled


def _path(request: web.Request) -> str:
    """``?path=``; relative means relative to the instance's ``/``, as LXD
    takes it (``lxc file pull c1/etc/hostname`` sends ``etc/hostname``)."""
    path = request.query.get("path", "")
    if not path:
        raise BadRequest("Missing 'path' query parameter")
    if "\0" in path:
        raise BadRequest("Invalid path: it contains a NUL byte")
    return path if path.startswith("/") else "/" + path


def _headers(info: FileInfo) -> dict[str, str]:
    return {"X-LXD-uid": str(info.uid), "X-LXD-gid": str(info.gid),
            "X-LXD-mode": f"{info.mode & 0o7777:04o}", "X-LXD-type": info.type}


def parse_mode(raw: str) -> int:
    """A mode header as LXD reads it: a leading ``0`` means octal."""
    text = raw.strip()
    try:
        if len(text) > 1 and text[0] == "0" and text[1].isdigit():
            value = int(text[1:], 8)  # Go reads "0644" as octal, Python would refuse it
        else:
            value = int(text, 0)  # "420", "0o644", "0x1a4"
    except ValueError:
        raise BadRequest(f"Invalid X-LXD-mode {raw!r}: expected an octal mode like 0644") from None
    # A client may send a whole st_mode (0100644: the file type bits too);
    # more than 16 bits is no mode at all.
    if not 0 <= value <= 0o177777:
        raise BadRequest(f"Invalid X-LXD-mode {raw!r}: expected an octal mode like 0644")
    return value & 0o7777


_MAX_ID = 2**32 - 2  # uid_t is 32 bits and 4294967295 is (uid_t)-1, "no change"


def _id_header(request: web.Request, header: str) -> int | None:
    """``X-LXD-uid``/``X-LXD-gid``: absent or empty is None (the default owner).

    Raises:
        BadRequest: not a decimal number in 0..4294967294 (a negative id used
            to fall back to root silently, a huge one reached the kernel).
    """
    raw = request.headers.get(header)
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip()
    if not text.isdigit() or not text.isascii():
        raise BadRequest(f"Invalid {header} {raw!r}: expected a number in 0..{_MAX_ID}")
    value = int(text)
    if value > _MAX_ID:
        raise BadRequest(f"Invalid {header} {raw!r}: expected a number in 0..{_MAX_ID}")
    return value


async def _stream_fd(request: web.Request, fd: int, headers: dict[str, str]
                     ) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    pool = request.app[EXECUTOR]
    try:
        resp = web.StreamResponse(headers=headers)
        resp.content_type = "application/octet-stream"
        await resp.prepare(request)
        while True:
            chunk = await loop.run_in_executor(pool, os.read, fd, CHUNK)
            if not chunk:
                break
            await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        os.close(fd)


async def _get(request: web.Request) -> web.StreamResponse:
    info = await call(request, engine_of(request).access.file_get, await instance_key_of(request),
                      _path(request))
    headers = _headers(info)
    if info.type == "file" and info.fd is not None:
        return await _stream_fd(request, info.fd, headers)
    if info.fd is not None:
        os.close(info.fd)
    if info.type == "directory":
        return render.sync(list(info.entries or []), headers=headers)
    if info.type == "symlink":
        return web.Response(body=(info.target or "").encode(), headers=headers,
                            content_type="application/octet-stream")
    return web.Response(body=b"", headers=headers, content_type="application/octet-stream")


async def _head(request: web.Request) -> web.Response:
    info = await call(request, engine_of(request).access.file_get, await instance_key_of(request),
                      _path(request))
    if info.fd is not None:
        os.close(info.fd)
    return web.Response(headers=_headers(info))


async def _post(request: web.Request) -> web.Response:
    engine = engine_of(request)
    name, path = await instance_key_of(request), _path(request)
    ftype = request.headers.get("X-LXD-type", "file") or "file"
    if ftype not in ("file", "directory", "symlink"):
        raise BadRequest(f"Invalid X-LXD-type {ftype!r}: expected file, directory or symlink")
    write = request.headers.get("X-LXD-write", "overwrite") or "overwrite"
    if write not in ("overwrite", "append"):
        raise BadRequest(f"Invalid X-LXD-write {write!r}: expected overwrite or append")
    raw_mode = request.headers.get("X-LXD-mode", "").strip()
    mode = parse_mode(raw_mode) if raw_mode else None
    uid = _id_header(request, "X-LXD-uid")
    gid = _id_header(request, "X-LXD-gid")

    if ftype == "directory":
        await call(request, engine.access.file_put, name, path, type="directory", uid=uid, gid=gid,
                   mode=mode)
        return render.sync({})
    if ftype == "symlink":
        target = (await request.read()).decode("utf-8", errors="surrogateescape")
        if not target:
            raise BadRequest("A symlink needs its target as the request body")
        await call(request, engine.access.file_put, name, path, type="symlink", target=target,
                   uid=uid, gid=gid)
        return render.sync({})

    length = request.content_length
    if length is not None and length <= _IN_MEMORY:
        data = await request.read()
        await call(request, engine.access.file_put, name, path, type="file", data=data, uid=uid,
                   gid=gid, mode=mode, write=write)
        return render.sync({})
    spooled = await spool(request, request.content.read, "file-")
    try:
        def put() -> None:
            with open(spooled, "rb") as f:
                engine.access.file_put(name, path, type="file", data=f, uid=uid, gid=gid,
                                mode=mode, write=write)
        await call(request, put)
    finally:
        spooled.unlink(missing_ok=True)
    return render.sync({})


async def _delete(request: web.Request) -> web.Response:
    await call(request, engine_of(request).access.file_delete, await instance_key_of(request),
               _path(request))
    return render.sync({})


def add_routes(app: web.Application) -> None:
    r = app.router
    for base in BASES:
        r.add_get(base + "/{name}/files", _get, allow_head=False)
        r.add_route("HEAD", base + "/{name}/files", _head)
        r.add_post(base + "/{name}/files", _post)
        r.add_delete(base + "/{name}/files", _delete)
