"""``POST /1.0/instances/NAME/exec``: run a command in an instance, LXD's way.

Design note, the websocket flow (``wait-for-websocket: true``, what pylxd's
``execute()`` and ``lxc exec`` use):

1. The POST checks the instance runs (400 otherwise, before anything is
   made), then creates a ``websocket`` operation whose metadata holds one
   secret per stream: ``{"fds": {"0", "1", "2", "control"}}``, or ``"0"`` and
   ``"control"`` for an interactive (pty) command.
2. The client connects each stream to ``/1.0/operations/ID/websocket?secret=``.
   When every data stream is there (control is optional: pylxd never opens
   it), the command starts (``engine.access.exec``).
3. Pumps copy ws "0" to stdin (a text message, an empty message or a close
   is end of input: stdin is closed) and stdout/stderr to ws "1"/"2" (a pty
   both ways on ws "0"); control messages resize the pty or send a signal.
4. At exit the outputs are read to EOF first (a few seconds at most, in case
   a daemonised child keeps them open), then each output stream gets LXD's
   end-of-stream barrier (an empty text message) and a close, and only once
   the client has acknowledged the close is ``{"return": code}`` put in the
   operation's metadata and the operation ended. So a client that waits for
   the operation and then reads what it got never misses output.

Without websockets (``wait-for-websocket: false``) the access service runs it
(``engine.access.exec_detached``): stdin is empty and the
outputs are written to ``<root>/instances/NAME/logs/exec_<op>.stdout|stderr``
when ``record-output`` is set (and listed in the metadata as ``output``),
thrown away otherwise.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Coroutine
from typing import Any

from aiohttp import WSMsgType, web

from cove import api
from cove.api._instances import MAX_WINDOW
from cove.engine import ExecSession, Operation, close_stdin
from cove.engine.surface import EngineAPI
from cove.model.errors import BadRequest, CoveError, Forbidden, InternalError, Timeout
from cove.model.projects import instance_url, split_key
from cove.model.states import Status
from cove.server import render
from cove.server.routes_common import (
    EXECUTOR,
    OPEN_WEBSOCKETS,
    WEBSOCKETS,
    call,
    engine_of,
    in_thread,
    instance_key_of,
    json_body,
)
from cove.server.routes_instances import BASES

__all__ = ["ExecBridge", "add_routes"]

log = logging.getLogger("cove.server.exec")

_CONNECT_TIMEOUT = 60.0  # for the client to open the data websockets
_DRAIN_GRACE = 5.0       # after exit, for the outputs to reach EOF
_CLOSE_TIMEOUT = 2.0     # for a client to acknowledge a websocket close
_READ = 1 << 16




class ExecBridge:
    """Joins one exec operation's websockets to the command's descriptors."""

    def __init__(self, app: web.Application, engine: EngineAPI, name: str,
                 req: api.InstanceExecPost) -> None:
        self._app = app
        self._engine = engine
        self._name = name
        self._req = req
        self._loop = asyncio.get_running_loop()
        streams = ["0", "control"] if req.interactive else ["0", "1", "2", "control"]
        self._secrets = {s: secrets.token_hex(32) for s in streams}
        self._data = [s for s in streams if s != "control"]
        self._outputs = ["0"] if req.interactive else ["1", "2"]
        self._ws: dict[str, web.WebSocketResponse] = {}
        self._claimed: set[str] = set()
        self._released = {s: asyncio.Event() for s in streams}
        self._finished = threading.Event()  # lets the operation's thread return
        self._error: CoveError | None = None
        self._session: ExecSession | None = None
        self._started = False
        self._ended = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watch: asyncio.Task[Any] | None = None
        self._control_seen = False
        self._killed = False
        self._exited = False
        self._input_done = asyncio.Event()  # the pty's websocket said its last
        self.op: Operation | None = None

    # -- the operation ------------------------------------------------------------
    def hold(self, op: Operation) -> None:
        """The operation's body (its own thread): last as long as the command."""
        self._finished.wait()
        if self._error is not None:
            raise self._error

    def bind(self, op: Operation) -> None:
        self.op = op
        op.update(fds=dict(self._secrets))
        self._app[WEBSOCKETS][op.id] = self
        self._watch = self._spawn(self._watchdog())
        op.on_cancel(self._cancel_threadsafe)

    def _cancel_threadsafe(self) -> None:
        self._loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        """``DELETE /1.0/operations/ID``: kill the command's tree (the
        operation then ends CANCELLED as the command's end is reported), or
        give up waiting for the websockets."""
        if self._ended:
            return
        if self._started:
            self._spawn(self._kill("the operation was cancelled"))
        else:
            self._spawn(self._abandon())

    async def _abandon(self) -> None:
        self._ended = True
        self._finished.set()  # no error: the operation ends CANCELLED
        await self._release_all(1000, b"cancelled")

    async def _kill(self, why: str) -> None:
        """End the session's whole process tree: its client is gone."""
        if self._ended or self._exited or self._killed:
            return
        self._killed = True
        if self._session is None:  # still starting: _run kills it once it is there
            return
        log.info("exec in %s: %s, killing the command", self._name, why)
        await self._loop.run_in_executor(self._app[EXECUTOR], self._session.kill)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _watchdog(self) -> None:
        await asyncio.sleep(_CONNECT_TIMEOUT)
        if not self._started and not self._ended:
            await self._fail(Timeout("Timed out waiting for the exec websockets to connect"))

    # -- websockets -----------------------------------------------------------------
    async def connect(self, request: web.Request, secret: str) -> web.StreamResponse:
        stream = next((s for s, v in self._secrets.items()
                       if hmac.compare_digest(v.encode(), secret.encode())), None)
        if stream is None:
            raise Forbidden("Wrong websocket secret")
        if stream in self._claimed or self._ended:
            raise Forbidden(f"Websocket {stream!r} of this operation is already used")
        ws = web.WebSocketResponse(compress=False, timeout=_CLOSE_TIMEOUT)
        if not ws.can_prepare(request).ok:
            raise BadRequest("This endpoint only answers websocket connections")
        self._claimed.add(stream)
        await ws.prepare(request)
        opened = self._app[OPEN_WEBSOCKETS]
        opened.add(ws)
        self._ws[stream] = ws
        if stream == "control":
            self._control_seen = True
            self._spawn(self._control(ws))
        elif stream == "1" or (stream == "0" and self._req.interactive):
            self._spawn(self._watch_output(ws))
        if not self._started and all(s in self._ws for s in self._data):
            self._started = True
            self._spawn(self._run())
        try:
            await self._released[stream].wait()
        finally:
            opened.discard(ws)
        return ws

    async def close(self) -> None:
        """Daemon shutdown: the client's connection goes, so the command
        does too (as LXD's); stop pumping and let go of every websocket."""
        if self._ended:
            return
        await self._kill("the daemon is shutting down")
        me = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not me]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._fail(InternalError("The daemon is shutting down"))

    async def _close(self, stream: str, code: int = 1000, message: bytes = b"") -> None:
        ws = self._ws.get(stream)
        try:
            if ws is not None:
                await ws.close(code=code, message=message)
        except Exception as e:  # noqa: BLE001 - the client may be gone already
            log.debug("closing exec websocket %s: %s", stream, e)
        finally:
            self._released[stream].set()

    # -- running ------------------------------------------------------------------
    async def _run(self) -> None:
        pool = self._app[EXECUTOR]
        try:
            session = await self._loop.run_in_executor(
                pool, self._engine.access.exec, self._name, self._req)
        except CoveError as e:
            await self._fail(e)
            return
        except Exception as e:
            log.exception("exec in %s failed to start", self._name)
            await self._fail(InternalError(f"{type(e).__name__}: {e}"))
            return
        self._session = session
        if self._killed:  # the client went away while the command started
            await self._loop.run_in_executor(pool, session.kill)
        code: int | None = None
        error: CoveError | None = None
        try:
            code = await self._pump(session)
        except CoveError as e:
            error = e
        except Exception as e:
            log.exception("exec in %s failed", self._name)
            error = InternalError(f"{type(e).__name__}: {e}")
        await self._finish(code, error)

    async def _pump(self, session: ExecSession) -> int:
        outputs: list[asyncio.Task[None]] = []
        inputs: list[asyncio.Task[None]] = []
        if session.pty_fd is not None:
            os.set_blocking(session.pty_fd, False)
            outputs.append(self._spawn(self._copy_out(session.pty_fd, self._ws["0"])))
            inputs.append(self._spawn(self._copy_in(self._ws["0"], session, session.pty_fd)))
        else:
            for stream, fd in (("1", session.stdout_fd), ("2", session.stderr_fd)):
                if fd is not None:
                    os.set_blocking(fd, False)
                    outputs.append(self._spawn(self._copy_out(fd, self._ws[stream])))
            if session.stdin_fd is not None:
                os.set_blocking(session.stdin_fd, False)
                inputs.append(self._spawn(self._copy_in(self._ws["0"], session, None)))
        code = await in_thread(session.wait, f"exec-wait-{self._name}")
        self._exited = True  # what it left running is the user's: no more kills
        if outputs:
            _, late = await asyncio.wait(outputs, timeout=_DRAIN_GRACE)
            for task in late:  # a daemonised child still holds the output open
                task.cancel()
        for task in inputs:
            task.cancel()
        await asyncio.gather(*outputs, *inputs, return_exceptions=True)
        return code if code is not None else -1

    async def _ready(self, fd: int, *, write: bool) -> None:
        fut: asyncio.Future[None] = self._loop.create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        if write:
            self._loop.add_writer(fd, wake)
        else:
            self._loop.add_reader(fd, wake)
        try:
            await fut
        finally:
            if write:
                self._loop.remove_writer(fd)
            else:
                self._loop.remove_reader(fd)

    async def _read(self, fd: int) -> bytes:
        while True:
            try:
                return os.read(fd, _READ)
            except BlockingIOError:
                await self._ready(fd, write=False)
            except OSError as e:
                if e.errno == errno.EIO:  # a pty whose other side is all closed
                    return b""
                raise

    async def _write_all(self, fd: int, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                await self._ready(fd, write=True)
                continue
            except OSError as e:
                if e.errno in (errno.EPIPE, errno.EIO, errno.EBADF):
                    return False  # the command closed its input
                raise
            view = view[n:]
        return True

    async def _copy_out(self, fd: int, ws: web.WebSocketResponse) -> None:
        listening = True
        while True:
            data = await self._read(fd)
            if not data:
                return
            if listening:
                try:
                    await ws.send_bytes(data)
                except Exception:  # noqa: BLE001 - client gone: keep draining so the
                    listening = False  # command never blocks on a full pipe

    async def _copy_in(self, ws: web.WebSocketResponse, session: ExecSession,
                       pty_fd: int | None) -> None:
        """ws -> stdin (pty_fd None: end of input closes stdin) or -> the pty."""
        fd = pty_fd if pty_fd is not None else session.stdin_fd
        assert fd is not None
        try:
            async for msg in ws:
                if msg.type is WSMsgType.BINARY:
                    if msg.data:
                        if not await self._write_all(fd, msg.data):
                            break
                    elif pty_fd is None:
                        break
                elif msg.type is WSMsgType.TEXT:
                    if pty_fd is None:  # LXD's end-of-stream barrier
                        break
                else:
                    break
        finally:
            if pty_fd is None:
                close_stdin(session)
            else:
                self._input_done.set()

    async def _watch_output(self, ws: web.WebSocketResponse) -> None:
        """The client never writes to stdout's websocket (nor closes the
        pty's while it waits for output): its end means the client is gone.
        As LXD, that ends the command when no control websocket does so; a
        non-interactive stream's messages are ignored, a pty's are the
        input ``_copy_in`` reads, so there only the end is awaited."""
        if ws is self._ws.get("0"):
            await self._input_done.wait()
        else:
            async for _ in ws:
                pass
        if not self._control_seen:
            await self._kill("its client went away")

    async def _control(self, ws: web.WebSocketResponse) -> None:
        try:
            await self._control_loop(ws)
        finally:
            # lxc closes control only after the outputs ended; before that
            # its end is the client's (killed, or gone with its network).
            await self._kill("its control websocket closed")

    async def _control_loop(self, ws: web.WebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            try:
                cmd = json.loads(msg.data)
                if not isinstance(cmd, dict):
                    continue
                if cmd.get("command") == "window-resize":
                    args = cmd.get("args") or {}
                    width, height = int(args["width"]), int(args["height"])
                    if not (0 < width <= MAX_WINDOW and 0 < height <= MAX_WINDOW):
                        raise ValueError(f"window size {width}x{height} out of range")
                    if self._session is None:
                        self._req.width, self._req.height = width, height
                    else:
                        await self._loop.run_in_executor(
                            self._app[EXECUTOR], self._session.resize, width, height)
                elif cmd.get("command") == "signal" and self._session is not None:
                    await self._loop.run_in_executor(
                        self._app[EXECUTOR], self._session.signal, int(cmd["signal"]))
            except (ValueError, TypeError, KeyError, OSError, CoveError) as e:
                log.info("exec control message %r ignored: %s", msg.data[:200], e)

    # -- ending -------------------------------------------------------------------
    async def _finish(self, code: int | None, error: CoveError | None) -> None:
        self._ended = True
        for stream in self._outputs:
            ws = self._ws.get(stream)
            if ws is not None and not ws.closed:
                try:
                    await ws.send_str("")  # LXD's end-of-stream barrier
                except Exception as e:  # noqa: BLE001 - client gone
                    log.debug("exec websocket %s: %s", stream, e)
        if code is not None and self.op is not None:
            self.op.update(**{"return": code})
        await asyncio.gather(*(self._close(s) for s in self._outputs))
        self._error = error
        # the session's resources go before the operation ends: a stopped
        # instance's exec holds the instance (its lock, its rootfs) until
        # then, and a client that waited for the operation may start it next
        await self._close_session()
        self._finished.set()
        await self._release_all()

    async def _fail(self, error: CoveError) -> None:
        self._ended = True
        self._error = error
        self._finished.set()
        await self._release_all(1011, error.message.encode()[:120])

    async def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:  # the pumps are done with its descriptors
            await self._loop.run_in_executor(self._app[EXECUTOR], session.close)

    async def _release_all(self, code: int = 1000, message: bytes = b"") -> None:
        self._input_done.set()  # the pty's watcher (if the pumps never ran) ends too
        if self._watch is not None and self._watch is not asyncio.current_task():
            self._watch.cancel()
        await self._close_session()
        await asyncio.gather(*(self._close(s, code, message) for s in self._released))
        if self.op is not None:
            self._app[WEBSOCKETS].pop(self.op.id, None)


# -- the route ----------------------------------------------------------------------

async def _post(request: web.Request) -> web.Response:
    name = await instance_key_of(request)
    engine = engine_of(request)
    req = api.InstanceExecPost.parse(await json_body(request))
    project, plain = split_key(name)
    await call(request, engine.access.settle, plain, project=project)  # starting: wait
    inst = await call(request, engine.instances.get, plain, project=project)
    if inst.status is Status.FROZEN:
        raise BadRequest("Instance is frozen")
    if inst.status is not Status.RUNNING and not req.stopped:  # stopped: cove's
        raise BadRequest("Instance is not running")
    resources = {"instances": [instance_url(name)]}
    if req.wait_for_websocket:
        bridge = ExecBridge(request.app, engine, name, req)
        op = engine.operations.run(bridge.hold, description="Executing command",
                                   resources=resources, cls="websocket", may_cancel=True,
                                   project=split_key(name)[0])
        bridge.bind(op)
        return render.async_op(op)
    op = await call(request, engine.access.exec_detached, name, req,
                    record=req.record_output)
    return render.async_op(op)


def add_routes(app: web.Application) -> None:
    for base in BASES:
        app.router.add_post(base + "/{name}/exec", _post)
