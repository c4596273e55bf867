"""``POST /1.0/images`` from an instance or snapshot (publish), and
``GET /1.0/images/FP/export``.

The export is streamed as it is read (a kept source file, or a tarball GNU
tar writes from the flattened layers), never built in memory: one part as
LXD sends a unified image (``Content-Disposition: inline;filename=FP.EXT``),
two as ``multipart/form-data`` (parts ``metadata`` and ``rootfs``) for an
image imported split, as LXD's ``imageExportFiles``.

A unified export of a kept file answers ``Range: bytes=N-`` with a ``206``
(as LXD's ``http.ServeContent`` does), so a pull cut off half-way goes on
from where it stopped (``storage/remote_resume``); other ranges, a
flattened stream and the multipart form are sent whole (a ``200``, which
a client reads from the start).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any, BinaryIO, cast

from aiohttp import web

from cove import api
from cove.server import render, routes_image_public
from cove.server.routes_common import call, check_project, engine_of
from cove.storage.export import ExportPart, Reader

__all__ = ["export", "publish"]

_CHUNK = 1 << 20


async def publish(request: web.Request, body: dict[str, Any], project: str) -> web.Response:
    """The publish form of ``POST /1.0/images`` (``body`` already read)."""
    post = api.ImagesPostPublish.parse(body)
    op = await call(request, engine_of(request).publisher.publish, post.source_type, post.name,
                    aliases=post.aliases, properties=post.properties, public=post.public,
                    filename=post.filename, project=project)
    return render.async_op(op)


_RANGE = re.compile(r"bytes=(\d{1,19})-")


def _range_start(request: web.Request, part: ExportPart, reader: Reader) -> int:
    """Where a ``Range: bytes=N-`` asks the body of ``part`` to start (0: all
    of it). Raises HTTPRequestRangeNotSatisfiable past its end."""
    m = _RANGE.fullmatch(request.headers.get("Range", "").strip())
    seekable = getattr(reader, "seekable", None)
    if m is None or part.size is None or seekable is None or not seekable():
        return 0
    start = int(m.group(1))
    if start >= part.size:
        raise web.HTTPRequestRangeNotSatisfiable(
            headers={"Content-Range": f"bytes */{part.size}"})
    return start


async def _pump(part: ExportPart, resp: web.StreamResponse,
                reader: Reader | None = None) -> None:
    loop = asyncio.get_running_loop()
    if reader is None:
        reader = await loop.run_in_executor(None, part.open)
    try:
        while True:
            chunk = await loop.run_in_executor(None, reader.read, _CHUNK)
            if not chunk:
                break
            await resp.write(chunk)
    finally:
        await loop.run_in_executor(None, reader.close)


async def export(request: web.Request) -> web.StreamResponse:
    project = await check_project(request)
    img = await call(request, engine_of(request).images.get, request.match_info["fingerprint"],
                     project=project)
    routes_image_public.check_visible(request, img, consume=True)  # public, or a secret
    parts = await call(request, engine_of(request).publisher.export, img.fingerprint,
                       project=project)
    if len(parts) == 1:
        part = parts[0]
        loop = asyncio.get_running_loop()
        reader: Reader = await loop.run_in_executor(None, part.open)
        try:
            start = _range_start(request, part, reader)
            if start:
                await loop.run_in_executor(None, cast(BinaryIO, reader).seek, start)
        except BaseException:
            await loop.run_in_executor(None, reader.close)
            raise
        resp = web.StreamResponse(status=206 if start else 200, headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f"inline;filename={part.filename}",
            "Accept-Ranges": "bytes" if part.size is not None else "none"})
        if part.size is not None:
            resp.content_length = part.size - start
        if start and part.size is not None:  # start is 0 without a size
            resp.headers["Content-Range"] = f"bytes {start}-{part.size - 1}/{part.size}"
        await resp.prepare(request)
        await _pump(part, resp, reader)
        await resp.write_eof()
        return resp
    boundary = secrets.token_hex(30)
    resp = web.StreamResponse(headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for part in parts:
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{part.name}\"; "
                f"filename=\"{part.filename}\"\r\nContent-Type: application/octet-stream"
                "\r\n\r\n")
        await resp.write(head.encode())
        await _pump(part, resp)
        await resp.write(b"\r\n")
    await resp.write(f"--{boundary}--\r\n".encode())
    await resp.write_eof()
    return resp
