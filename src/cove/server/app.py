"""The aiohttp application: routes, the error envelope, shutdown.

Design note: every failure a client can see is LXD's error envelope. A
``CoveError`` carries its own HTTP status; aiohttp's own 404/405/413 are
rewrapped; anything else is a bug, answered 500 with one line while the
traceback goes to the daemon's log only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from cove.engine.surface import EngineAPI
from cove.model.errors import CoveError, as_cove_error
from cove.server import (
    render,
    routes_backups,
    routes_console,
    routes_copies,
    routes_events,
    routes_exec,
    routes_files,
    routes_images,
    routes_instances,
    routes_logs,
    routes_metadata,
    routes_metrics,
    routes_networks,
    routes_operations,
    routes_profiles,
    routes_projects,
    routes_server,
    routes_snapshots,
    routes_state,
    routes_storage,
    routes_trust,
)
from cove.server.routes_common import (
    ENGINE,
    EXECUTOR,
    OP_WAITERS,
    OPEN_WEBSOCKETS,
    WEBSOCKETS,
)
from cove.server.tls import HttpsListener

__all__ = ["Runner", "make_app", "make_metrics_app"]

log = logging.getLogger("cove.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    resp = await _answer(request, handler)
    if resp.status >= 400:
        _log_failure(request, resp)
    return resp


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except CoveError as e:
        return render.error(e.status, e.message)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        headers = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None
        return render.error(e.status, e.reason, headers)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as e:
        err = as_cove_error(e)
        if err.status != 500:  # a full disk: the client's answer says it all
            log.warning("%s %s: %s", request.method, request.path, err.message)
            return render.error(err.status, err.message)
        log.exception("%s %s failed", request.method, request.path_qs)
        return render.error(500, f"Internal error: {_one_line(e)}")


class _EnvelopeHandler(RequestHandler):
    """aiohttp's connection handler, answering what fails before routing (a
    NUL in a header, a bad Content-Length, a garbage method or request line)
    in LXD's error envelope rather than aiohttp's plain text."""

    __slots__ = ()

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        log.info("bad HTTP from a client: %s %s", status,
                 message or (exc and _one_line(exc)) or "")
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        if status >= 500:
            text = "Internal error"
        else:
            reason = getattr(exc, "message", None) or message or ""
            first = str(reason).strip().splitlines()[0].rstrip(": ") if str(reason).strip() else ""
            text = f"Malformed HTTP request: {first}" if first else "Malformed HTTP request"
        resp = render.error(status, text)
        resp.force_close()
        return resp


class _EnvelopeServer(web.Server):
    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        # aiohttp has no parameter for the handler class; the subclass adds
        # no state (empty __slots__), so swapping the class is layout-safe.
        handler.__class__ = _EnvelopeHandler
        return handler


class Runner(web.AppRunner):
    """``web.AppRunner`` whose connections answer malformed HTTP in LXD's
    error envelope (see ``_EnvelopeHandler``)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _EnvelopeServer
        return server


def _log_failure(request: web.Request, resp: web.StreamResponse) -> None:
    """One line per failed request, so a user can see why a client failed.

    Method, path (no query string: it may carry a secret), status and the
    error's message cut to one short line; never a body. Cheap: no I/O
    beyond the logging handler, and only for failures.
    """
    reason = resp.get(render.REASON) or resp.reason or ""
    text = " ".join(str(reason).split())
    if len(text) > 200:
        text = text[:197] + "..."
    level = logging.WARNING if resp.status >= 500 else logging.INFO
    log.log(level, "%s %s -> %d %s", request.method, request.path, resp.status, text)


async def _close_websockets(app: web.Application) -> None:
    for endpoint in list(app[WEBSOCKETS].values()):
        await endpoint.close()
    opened = app[OPEN_WEBSOCKETS]
    for ws in list(opened):
        await ws.close(code=1001, message=b"server shutting down")


def make_app(engine: EngineAPI, *, executor: ThreadPoolExecutor | None = None) -> web.Application:
    """Build coved's application around ``engine``.

    Engine calls run on ``executor`` (a private pool of 32 threads when not
    given, shut down with the app).
    """
    app = web.Application(middlewares=[_errors, routes_trust.auth])
    app[ENGINE] = engine
    app[routes_trust.HTTPS] = HttpsListener(engine)
    app[routes_trust.METRICS] = HttpsListener(engine, "core.metrics_address")
    own_pool = executor is None
    app[EXECUTOR] = executor or ThreadPoolExecutor(max_workers=32, thread_name_prefix="coved")
    app[WEBSOCKETS] = {}
    app[OPEN_WEBSOCKETS] = set()
    app[OP_WAITERS] = {}

    for module in (routes_server, routes_operations, routes_events, routes_images,
                   routes_instances, routes_state, routes_exec, routes_files, routes_logs,
                   routes_networks, routes_profiles, routes_projects, routes_storage,
                   routes_trust, routes_metrics, routes_console, routes_snapshots, routes_copies,
                   routes_backups, routes_metadata):
        module.add_routes(app)

    app.on_shutdown.append(_close_websockets)
    if own_pool:
        async def _stop_pool(app: web.Application) -> None:
            app[EXECUTOR].shutdown(wait=False, cancel_futures=True)
        app.on_cleanup.append(_stop_pool)
    return app


def make_metrics_app(main: web.Application) -> web.Application:
    """The site on ``core.metrics_address``: only ``/``, ``/1.0`` and
    ``/1.0/metrics`` (as LXD's metrics listener), with the same trust rules,
    engine and thread pool as ``main``."""
    app = web.Application(middlewares=[_errors, routes_trust.auth])
    app[ENGINE] = main[ENGINE]
    app[EXECUTOR] = main[EXECUTOR]
    app[routes_trust.HTTPS] = main[routes_trust.HTTPS]
    routes_server.add_server_routes(app)
    routes_metrics.add_metrics_routes(app)
    return app
