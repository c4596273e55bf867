"""What every route module shares: the application keys, the engine call that
keeps the event loop free, and request parsing that names the problem.

Design note: a handler reads the body with ``json_body`` and hands it to the
wire class of ``cove.api`` it stands for (``api.InstancesPost.parse(body)``:
a ``BadRequest`` naming the field and what it should have been), calls the
engine through ``call`` (a worker thread, never the event loop), and renders
with ``cove.server.render``. Anything that takes a long time on the engine
side is an ``Operation`` and is answered with 202.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import tempfile
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from aiohttp import web

from cove.api._fields import finite_seconds, kind
from cove.engine import Operation
from cove.engine.surface import EngineAPI
from cove.model.errors import BadRequest, NotFound
from cove.model.projects import DEFAULT, instance_key

__all__ = [
    "CHUNK",
    "ENGINE",
    "EXECUTOR",
    "OPEN_WEBSOCKETS",
    "OP_WAITERS",
    "STATE_FIELDS",
    "WEBSOCKETS",
    "WebsocketEndpoint",
    "all_projects",
    "body_aliases",
    "body_flag",
    "call",
    "check_project",
    "engine_of",
    "in_thread",
    "instance_key_of",
    "instances_base",
    "json_body",
    "op_done",
    "recursion",
    "recursion_fields",
    "spool",
    "wait_for_lock",
]

T = TypeVar("T")

CHUNK = 1 << 20  # read and write uploads and downloads by this much


class WebsocketEndpoint(Protocol):
    """Something an operation's websockets connect to (exec, later console)."""

    async def connect(self, request: web.Request, secret: str) -> web.StreamResponse:
        """Upgrade ``request`` if ``secret`` is one of ours; Forbidden otherwise."""
        ...

    async def close(self) -> None:
        """Let go of every websocket (daemon shutdown)."""
        ...


ENGINE = web.AppKey("cove.engine", EngineAPI)
EXECUTOR = web.AppKey("cove.executor", ThreadPoolExecutor)
# operation id -> the endpoint its /websocket connections go to
WEBSOCKETS = web.AppKey("cove.websockets", dict[str, WebsocketEndpoint])
# every websocket a handler holds open, closed at shutdown
OPEN_WEBSOCKETS = web.AppKey("cove.open_websockets", set[web.WebSocketResponse])
# operation id -> a future resolved when it ends (shared by /wait callers)
OP_WAITERS = web.AppKey("cove.op_waiters", dict[str, "asyncio.Future[None]"])


def engine_of(request: web.Request) -> EngineAPI:
    return request.app[ENGINE]


async def call(request: web.Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a (possibly slow) engine call on the app's worker threads."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[EXECUTOR], functools.partial(fn, *args, **kwargs))


def in_thread(fn: Callable[[], T], name: str) -> asyncio.Future[T]:
    """Run a call that may block for a long time (``session.wait()``) in its
    own daemon thread, so it never holds one of the pool's workers."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, exc: BaseException | None) -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)  # type: ignore[arg-type]

    def run() -> None:
        try:
            value = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting task
            result: tuple[T | None, BaseException | None] = (None, e)
        else:
            result = (value, None)
        try:
            loop.call_soon_threadsafe(settle, *result)
        except RuntimeError:  # the loop is gone (daemon stopping)
            pass

    threading.Thread(target=run, name=name, daemon=True).start()
    return fut


def op_done(app: web.Application, op: Operation) -> asyncio.Future[None]:
    """A future resolved when ``op`` ends; one engine listener per operation,
    however many clients wait on it."""
    waiters = app[OP_WAITERS]
    fut = waiters.get(op.id)
    if fut is not None:
        return fut
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    if op.done:  # no listener: polling an ended operation must not pile them up
        fut.set_result(None)
        return fut
    waiters[op.id] = fut

    def resolve() -> None:
        waiters.pop(op.id, None)
        if not fut.done():
            fut.set_result(None)

    def listener(o: Operation) -> None:
        if o.done:
            try:
                loop.call_soon_threadsafe(resolve)
            except RuntimeError:
                pass

    op.add_listener(listener)
    if op.done:  # it ended before the listener was in place
        resolve()
    return fut


async def spool(request: web.Request, read: Callable[[int], Awaitable[bytes]],
                prefix: str) -> Path:
    """Copy an upload (``read(n)`` until it gives b"") to a new file under
    ``<root>/tmp``; the caller owns the file. Removed here if the copy fails."""
    tmp_dir = engine_of(request).root / "tmp"
    loop = asyncio.get_running_loop()
    pool = request.app[EXECUTOR]

    def open_spool() -> tuple[int, str]:
        tmp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix=prefix, dir=tmp_dir)

    fd, name = await loop.run_in_executor(pool, open_spool)
    try:
        with os.fdopen(fd, "wb") as f:
            while True:
                chunk = await read(CHUNK)
                if not chunk:
                    break
                await loop.run_in_executor(pool, f.write, chunk)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


# -- request bodies -------------------------------------------------------------

async def json_body(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object.

    Raises:
        BadRequest: empty (when ``required``), not JSON, or not an object.
    """
    raw = await request.read()
    if not raw.strip():
        if required:
            raise BadRequest("Request body is empty: expected a JSON object")
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"Request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"Request body must be a JSON object, not {kind(body)}")
    return body


# -- query parameters ------------------------------------------------------------

STATE_FIELDS = frozenset({"state.disk", "state.network"})


def recursion_fields(request: web.Request) -> frozenset[str]:
    """The optional parts of a listing's states to send: LXD's selective
    recursion (``instances_state_selective_recursion``), ``recursion=2;fields=a,b``
    (wins) or ``?fields=`` (each value one field); neither: all of them.

    Raises:
        BadRequest: a field LXD does not know (LXD's message).
    """
    fields: list[str] | None = request.query.getall("fields", None)
    _, sep, after = request.query.get("recursion", "").partition(";")
    if sep and after.startswith("fields="):
        value = after[len("fields="):]
        fields = value.split(",") if value else []
    if fields is None:
        return STATE_FIELDS
    for f in fields:
        if f not in STATE_FIELDS:
            raise BadRequest(f"Invalid state field: {json.dumps(f)} "
                             "(valid fields: state.disk, state.network)")
    return frozenset(fields)


def recursion(request: web.Request) -> int:
    """``?recursion=N`` (0, 1 or 2; LXD's ``2;fields=...`` form is read as 2)."""
    raw = request.query.get("recursion", "0").split(";", 1)[0].strip() or "0"
    try:
        level = int(raw)
    except ValueError:
        raise BadRequest(f"Invalid recursion {raw!r}: expected 0, 1 or 2") from None
    if level < 0:
        raise BadRequest(f"Invalid recursion {raw!r}: expected 0, 1 or 2")
    return min(level, 2)


async def check_project(request: web.Request) -> str:
    """The project a request is in: ``?project=`` (``default`` when absent or
    empty). Every route that LXD scopes by project calls this once, first.

    Raises:
        NotFound: no such project ("Project not found", LXD's words).
    """
    project = request.query.get("project", "") or DEFAULT
    if project != DEFAULT:
        await call(request, engine_of(request).projects.check, project)
    return project


async def instance_key_of(request: web.Request) -> str:
    """The key (``cove.model.projects``) of the instance ``{name}`` of the
    request's project, for the engine calls that take a key (exec, files,
    logs). A name with ``_`` is no instance's (it would reach into another
    project).

    Raises:
        NotFound: no such project, or an impossible instance name.
    """
    project = await check_project(request)
    name = request.match_info["name"]
    if "_" in name:
        raise NotFound(f"Instance not found: {name}")
    return instance_key(project, name)


def all_projects(request: web.Request) -> bool:
    """``?all-projects=true`` on a list: every project's items, each with its ``project``."""
    return request.query.get("all-projects", "").lower() in ("1", "true")


def instances_base(request: web.Request) -> str:
    """``/1.0/instances`` or ``/1.0/containers``, as the client asked."""
    return "/1.0/containers" if request.path.startswith("/1.0/containers") else "/1.0/instances"


def wait_for_lock(request: web.Request) -> float:
    """cove extension ``?wait=SECONDS``: when another operation holds the
    instance, wait up to that long for it instead of answering 409 at once."""
    raw = request.query.get("wait", "0").strip() or "0"
    return finite_seconds(raw, "wait", high=3600)


def body_aliases(body: dict[str, Any]) -> list[str]:
    """The alias names of an image request's ``aliases`` (LXD's list of
    ``{"name": ...}``). Raises: BadRequest (not such a list)."""
    raw = body.get("aliases") or []
    if not isinstance(raw, list):
        raise BadRequest("Field 'aliases' must be a list of {\"name\": ...} objects")
    names = []
    for a in raw:
        name = a.get("name") if isinstance(a, dict) else None
        if not isinstance(name, str) or not name:
            raise BadRequest("Field 'aliases' must be a list of {\"name\": ...} objects")
        names.append(name)
    return names


def body_flag(body: dict[str, Any], key: str) -> bool:
    """A boolean field of a request body (False when absent). Raises: BadRequest."""
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"Field {key!r} must be a boolean")
    return value
