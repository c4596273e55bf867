"""``GET /1.0/metrics`` (LXD's metrics, Prometheus text) and ``GET
/1.0/resources`` (the host's hardware).

Who may scrape, as LXD: over the unix socket, anyone who may connect;
over HTTPS (``core.https_address`` or the metrics-only site on
``core.metrics_address``), a trusted ``client`` certificate or a
``metrics`` one (a ``metrics`` certificate is good for this path only: the
``auth`` middleware of ``routes_trust`` decides); anyone else gets 403.
"""

from __future__ import annotations

from aiohttp import web

from cove.server import render
from cove.server.routes_common import call, engine_of

__all__ = ["METRICS_PATH", "add_metrics_routes", "add_routes"]

METRICS_PATH = "/1.0/metrics"


async def _metrics(request: web.Request) -> web.Response:
    project = request.query.get("project") or None
    text = await call(request, engine_of(request).metrics.text, project=project)
    # LXD answers plain "text/plain" (no charset); Prometheus reads it as its
    # text format, which the "# EOF" line of OpenMetrics does not disturb.
    return web.Response(body=text.encode(), headers={"Content-Type": "text/plain"})


async def _resources(request: web.Request) -> web.Response:
    return render.sync(await call(request, engine_of(request).resources.get))


def add_metrics_routes(app: web.Application) -> None:
    """The one route the metrics-only site serves besides ``/`` and ``/1.0``."""
    app.router.add_get(METRICS_PATH, _metrics)


def add_routes(app: web.Application) -> None:
    add_metrics_routes(app)
    app.router.add_get("/1.0/resources", _resources)
