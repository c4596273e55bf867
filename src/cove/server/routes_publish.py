"""``POST /1.0/images`` from an instance or snapshot (publish), and
``GET /1.0/images/FP/export``.

The export is streamed as it is read (a kept source file, or a tarball GNU
tar writes from the flattened layers), never built in memory: one part as
LXD sends a unified image (``Content-Disposition: inline;filename=FP.EXT``),
two as ``multipart/form-data`` (parts ``metadata`` and ``rootfs``) for an
image imported split, as LXD's ``imageExportFiles``.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

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


async def _pump(part: ExportPart, resp: web.StreamResponse) -> None:
    loop = asyncio.get_running_loop()
    reader: Reader = await loop.run_in_executor(None, part.open)
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
        resp = web.StreamResponse(headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f"inline;filename={part.filename}"})
        if part.size is not None:
            resp.content_length = part.size
        await resp.prepare(request)
        await _pump(part, resp)
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
