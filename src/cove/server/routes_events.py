"""``/1.0/events``: the engine's event bus as a websocket of JSON messages.

Design note: the bus calls ``notify`` from whichever engine thread publishes;
that only wakes this handler's task (``call_soon_threadsafe``), which drains
the subscription and sends on the loop. A slow client loses its oldest
events (the bus bounds each queue), never slows the engine.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import WSMsgType, web

from cove.model.errors import BadRequest
from cove.server.routes_common import OPEN_WEBSOCKETS, all_projects, check_project, engine_of

__all__ = ["EVENT_TYPES", "add_routes"]

EVENT_TYPES = frozenset({"operation", "lifecycle", "logging"})


def _types(request: web.Request) -> set[str] | None:
    wanted = {t.strip() for t in request.query.get("type", "").split(",") if t.strip()}
    unknown = sorted(wanted - EVENT_TYPES)
    if unknown:
        raise BadRequest(f"Unknown event type {unknown[0]!r}: expected one of "
                         + ", ".join(sorted(EVENT_TYPES)))
    return wanted or None


async def _drain_incoming(ws: web.WebSocketResponse) -> None:
    """Read (and drop) what the client sends, to notice when it goes away."""
    async for msg in ws:
        if msg.type is WSMsgType.ERROR:
            break


def _wanted(event: dict[str, object], project: str | None) -> bool:
    """LXD's filter: the events of the request's project (all with
    ``?all-projects=true``); logging belongs to no project."""
    return project is None or event.get("type") == "logging" or event.get("project") == project


async def _events(request: web.Request) -> web.StreamResponse:
    types = _types(request)
    project: str | None = await check_project(request)
    if all_projects(request):
        project = None
    ws = web.WebSocketResponse(compress=False, timeout=2.0)
    if not ws.can_prepare(request).ok:
        raise BadRequest("/1.0/events only answers websocket connections")
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def notify() -> None:  # from an engine thread
        try:
            loop.call_soon_threadsafe(wake.set)
        except RuntimeError:  # the loop has stopped
            pass

    sub = engine_of(request).events.subscribe(types, notify)
    opened = request.app[OPEN_WEBSOCKETS]
    reader: asyncio.Task[None] | None = None
    try:
        await ws.prepare(request)
        opened.add(ws)
        reader = asyncio.create_task(_drain_incoming(ws))
        while not ws.closed:
            waker = asyncio.create_task(wake.wait())
            done, _ = await asyncio.wait({waker, reader}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                waker.cancel()
                break
            wake.clear()
            for event in sub.drain():
                if _wanted(event, project):
                    await ws.send_str(json.dumps(event))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        sub.close()
        opened.discard(ws)
        if reader is not None:
            reader.cancel()
        if ws.prepared:
            await ws.close()
    return ws


def add_routes(app: web.Application) -> None:
    app.router.add_get("/1.0/events", _events)
