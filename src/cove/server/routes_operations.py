"""``/1.0/operations``: list, get, cancel, wait, and the websockets of an
operation (exec's data and control streams)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from cove.api._fields import finite_seconds
from cove.model.errors import BadRequest
from cove.server import render
from cove.server.routes_common import (
    WEBSOCKETS,
    all_projects,
    check_project,
    engine_of,
    op_done,
    recursion,
)

__all__ = ["add_routes"]


async def _list(request: web.Request) -> web.Response:
    project = await check_project(request)
    every = all_projects(request)
    deep = recursion(request) > 0
    groups: dict[str, list[Any]] = {}
    for op in engine_of(request).operations.all():
        if not every and op.project != project:
            continue
        key = op.status.value.lower()
        groups.setdefault(key, []).append(op.to_dict() if deep else f"/1.0/operations/{op.id}")
    return render.sync(groups)


async def _get(request: web.Request) -> web.Response:
    op = engine_of(request).operations.get(request.match_info["id"])
    return render.sync(op.to_dict())


async def _cancel(request: web.Request) -> web.Response:
    op = engine_of(request).operations.get(request.match_info["id"])
    op.cancel()  # Conflict when the operation cannot be cancelled
    return render.sync({})


def _timeout(request: web.Request) -> float | None:
    """``?timeout=``: seconds, or -1 (or absent) to wait until the operation ends."""
    raw = request.query.get("timeout", "-1").strip() or "-1"
    if raw.lstrip("-").isdigit() and int(raw) < 0:
        return None
    return finite_seconds(raw, "timeout")


async def _wait(request: web.Request) -> web.Response:
    """Wait for the end (or ``timeout`` seconds) and answer the operation as
    it is then; a timeout is not an error, the operation is still running."""
    timeout = _timeout(request)  # a bad one is a 400 before anything is looked up
    op = engine_of(request).operations.get(request.match_info["id"])
    if not op.done:
        try:
            await asyncio.wait_for(asyncio.shield(op_done(request.app, op)), timeout)
        except TimeoutError:
            pass
    return render.sync(op.to_dict())


async def _websocket(request: web.Request) -> web.StreamResponse:
    op_id = request.match_info["id"]
    engine_of(request).operations.get(op_id)  # NotFound for an unknown operation
    endpoint = request.app[WEBSOCKETS].get(op_id)
    if endpoint is None:
        raise BadRequest(f"Operation {op_id} has no websockets to connect to")
    return await endpoint.connect(request, request.query.get("secret", ""))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/1.0/operations", _list)
    r.add_get("/1.0/operations/{id}", _get)
    r.add_delete("/1.0/operations/{id}", _cancel)
    r.add_get("/1.0/operations/{id}/wait", _wait)
    r.add_get("/1.0/operations/{id}/websocket", _websocket)
