"""``POST /1.0/instances/NAME/console`` (attach, LXD's ``console``
extension) and ``DELETE .../console`` (clear the log); ``GET .../console``,
the log itself, is served with the other logs (``routes_logs``).

Design note, the flow (what ``lxc console`` does):

1. The POST checks the body (``type`` console; ``vga`` is for virtual
   machines) and attaches to the console at once (``engine.console.attach``:
   400 when the instance is not running or has no console, 409 when another
   client is attached, before any operation exists), then answers a
   ``websocket`` operation whose metadata holds ``{"fds": {"0", "control"}}``.
2. ``0`` carries the console both ways (binary messages; text is taken as
   input too, as LXD's mirror does). ``control`` takes ``window-resize``.
   ``lxc`` opens control first, then ``0``.
3. The session ends, and the operation with it (Success), when the client
   detaches (Ctrl+a q in ``lxc``: it closes control) or goes (``0`` or
   control closed or broken), when the console ends (the instance stopped),
   when the operation is cancelled (``DELETE /1.0/operations/ID``: Cancelled),
   or when ``0`` never connects within a minute. What runs on the console
   goes on: only the attachment ends.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import threading
from collections.abc import Coroutine
from typing import Any

from aiohttp import WSMsgType, web

from cove import api
from cove.engine import ConsoleSession, Operation
from cove.model.errors import BadRequest, CoveError, Forbidden
from cove.model.projects import instance_url, split_key
from cove.server import render
from cove.server.routes_common import (
    EXECUTOR,
    OPEN_WEBSOCKETS,
    WEBSOCKETS,
    call,
    engine_of,
    instance_key_of,
    json_body,
)
from cove.server.routes_instances import BASES

__all__ = ["ConsoleBridge", "add_routes"]

log = logging.getLogger("cove.server.console")

_CONNECT_TIMEOUT = 60.0  # for the client to open the console websocket
_CLOSE_TIMEOUT = 2.0     # for a client to acknowledge a websocket close


class ConsoleBridge:
    """Joins one console operation's websockets to a console attachment."""

    def __init__(self, app: web.Application, name: str, session: ConsoleSession) -> None:
        self._app = app
        self._name = name
        self._session = session
        self._loop = asyncio.get_running_loop()
        self._secrets = {s: secrets.token_hex(32) for s in ("0", "control")}
        self._ws: dict[str, web.WebSocketResponse] = {}
        self._released = {s: asyncio.Event() for s in self._secrets}
        self._finished = threading.Event()  # lets the operation's thread return
        self._ended = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.op: Operation | None = None

    # -- the operation ------------------------------------------------------------
    def hold(self, op: Operation) -> None:
        """The operation's body (its own thread): last as long as the attachment."""
        self._finished.wait()

    def bind(self, op: Operation) -> None:
        self.op = op
        op.update(fds=dict(self._secrets))
        self._app[WEBSOCKETS][op.id] = self
        self._spawn(self._watchdog())
        op.on_cancel(self._cancel_threadsafe)

    def _cancel_threadsafe(self) -> None:
        self._loop.call_soon_threadsafe(lambda: self._spawn(self._end("cancelled")))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _watchdog(self) -> None:
        await asyncio.sleep(_CONNECT_TIMEOUT)
        if "0" not in self._ws:
            await self._end("the console websocket never connected")

    # -- websockets -----------------------------------------------------------------
    async def connect(self, request: web.Request, secret: str) -> web.StreamResponse:
        stream = next((s for s, v in self._secrets.items()
                       if hmac.compare_digest(v.encode(), secret.encode())), None)
        if stream is None:
            raise Forbidden("Wrong websocket secret")
        if stream in self._ws or self._ended:
            raise Forbidden(f"Websocket {stream!r} of this operation is already used")
        ws = web.WebSocketResponse(compress=False, timeout=_CLOSE_TIMEOUT)
        if not ws.can_prepare(request).ok:
            raise BadRequest("This endpoint only answers websocket connections")
        self._ws[stream] = ws
        await ws.prepare(request)
        opened = self._app[OPEN_WEBSOCKETS]
        opened.add(ws)
        if stream == "control":
            self._spawn(self._control(ws))
        else:
            self._spawn(self._output(ws))
            self._spawn(self._input(ws))
        try:
            await self._released[stream].wait()
        finally:
            opened.discard(ws)
        return ws

    async def close(self) -> None:
        """Daemon shutdown: let go of the console and every websocket."""
        await self._end("the daemon is shutting down")

    # -- pumps --------------------------------------------------------------------------
    async def _readable(self) -> None:
        fut: asyncio.Future[None] = self._loop.create_future()
        fd = self._session.fileno()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        self._loop.add_reader(fd, wake)
        try:
            await fut
        finally:
            self._loop.remove_reader(fd)

    async def _output(self, ws: web.WebSocketResponse) -> None:
        """Console -> websocket until the console ends (the instance stopped)."""
        try:
            while not self._ended:
                data = self._session.read()
                if data is None:
                    await self._readable()
                    continue
                if not data:
                    break
                await ws.send_bytes(data)
        except (ConnectionError, RuntimeError, OSError) as e:
            log.debug("console of %s: output ended: %s", self._name, e)
        await self._end("the console ended")

    async def _input(self, ws: web.WebSocketResponse) -> None:
        """Websocket -> console until the client closes ``0`` or goes."""
        try:
            async for msg in ws:
                if msg.type is WSMsgType.BINARY:
                    data = msg.data
                elif msg.type is WSMsgType.TEXT:
                    data = msg.data.encode()
                else:
                    break
                if data:
                    await self._loop.run_in_executor(self._app[EXECUTOR],
                                                     self._session.write, data)
        except OSError as e:  # the console is gone: _output ends the session
            log.debug("console of %s: input ended: %s", self._name, e)
            return
        await self._end("the client closed the console")

    async def _control(self, ws: web.WebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            try:
                cmd = json.loads(msg.data)
                if isinstance(cmd, dict) and cmd.get("command") == "window-resize":
                    args = cmd.get("args") or {}
                    width, height = int(args["width"]), int(args["height"])
                    await self._loop.run_in_executor(self._app[EXECUTOR],
                                                     self._session.resize, width, height)
            except (ValueError, TypeError, KeyError, AttributeError, OSError, CoveError) as e:
                log.info("console control message %r ignored: %s", msg.data[:200], e)
        # lxc's Ctrl+a q: it closes control to detach
        await self._end("the client detached")

    # -- ending ---------------------------------------------------------------------------
    async def _end(self, why: str) -> None:
        if self._ended:
            return
        self._ended = True
        log.debug("console of %s: %s", self._name, why)
        me = asyncio.current_task()
        others = [t for t in self._tasks if t is not me]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)  # done with the fd
        await self._loop.run_in_executor(self._app[EXECUTOR], self._session.close)
        for stream, ws in list(self._ws.items()):
            try:
                await ws.close()
            except Exception as e:  # noqa: BLE001 - the client may be gone already
                log.debug("closing console websocket %s: %s", stream, e)
        for event in self._released.values():
            event.set()
        if self.op is not None:
            self._app[WEBSOCKETS].pop(self.op.id, None)
        self._finished.set()


# -- the routes -------------------------------------------------------------------------

async def _post(request: web.Request) -> web.Response:
    key = await instance_key_of(request)  # the console service works on keys
    engine = engine_of(request)
    req = api.InstanceConsolePost.parse(await json_body(request))
    session = await call(request, engine.console.attach, key, req.width, req.height)
    try:
        bridge = ConsoleBridge(request.app, key, session)
        op = engine.operations.run(bridge.hold, description="Showing console",
                                   resources={"instances": [instance_url(key)]},
                                   cls="websocket", may_cancel=True,
                                   project=split_key(key)[0])
    except BaseException:
        session.close()
        raise
    bridge.bind(op)
    return render.async_op(op)


async def _delete(request: web.Request) -> web.Response:
    key = await instance_key_of(request)
    await call(request, engine_of(request).console.clear_log, key)
    return render.sync({})


def add_routes(app: web.Application) -> None:
    for base in BASES:
        app.router.add_post(base + "/{name}/console", _post)
        app.router.add_delete(base + "/{name}/console", _delete)
