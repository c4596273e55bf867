"""Who may do what: the ``auth`` middleware, ``/1.0/certificates`` and the
server's config (``PUT``/``PATCH /1.0``).

LXD's rules, which ``lxc`` and pylxd expect: over the unix socket every
caller is trusted (the socket is root-only); over HTTPS a client is trusted
when its certificate's fingerprint is in the trust store. An untrusted
client may read ``/`` and the public part of ``/1.0``, join an operation's
websocket with its secret, and nothing else (403). Trusted clients add
and remove certificates (``cove config trust add``, ``lxc config trust add``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from cove import api
from cove.model import trust
from cove.model.errors import BadRequest, Forbidden
from cove.server import render
from cove.server.routes_common import call, engine_of, json_body, recursion
from cove.server.tls import HttpsListener, is_tls, peer_fingerprint

__all__ = ["HTTPS", "METRICS", "TRUSTED", "add_routes", "auth", "https_listener"]

HTTPS = web.AppKey("cove.https", HttpsListener)
METRICS = web.AppKey("cove.metrics", HttpsListener)  # the core.metrics_address site
TRUSTED = web.RequestKey("cove.trusted", bool)

_PUBLIC = re.compile(r"^/(1\.0/?)?$")
# images an untrusted client may ask for; the handlers show it the public
# ones, or one a secret opens (routes_image_public)
_PUBLIC_IMAGES = re.compile(r"^/1\.0/images(/[0-9a-fA-F]{1,64}(/export)?|/aliases/[^/]+)?/?$")
_WEBSOCKET = re.compile(r"^/1\.0/operations/[^/]+/websocket$")
_METRICS = "/1.0/metrics"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Mark the request trusted or not; refuse the untrusted what is not public.
    A ``metrics`` certificate is trusted for ``GET /1.0/metrics`` only (LXD)."""
    trusted = True
    if is_tls(request):
        fp = peer_fingerprint(request)
        kind = None if fp is None else \
            await call(request, engine_of(request).trust.certificate_type, fp)
        trusted = kind == "client" or (kind == "metrics" and request.method == "GET"
                                       and request.path == _METRICS)
    request[TRUSTED] = trusted
    if trusted:
        return await handler(request)
    path = request.path
    if request.method == "GET" and (_PUBLIC.match(path) or _WEBSOCKET.match(path)
                                    or _PUBLIC_IMAGES.match(path)):
        return await handler(request)
    if request.method == "GET" and path == _METRICS and not trust.metrics_authentication(
            await call(request, engine_of(request).trust.server_config)):
        return await handler(request)  # core.metrics_authentication=false: open to all
    if request.method == "POST" and path.rstrip("/") == "/1.0/certificates":
        raise Forbidden("not authorized: this certificate is not trusted, and cove adds "
                        "certificates only for trusted clients (cove config trust add)")
    raise Forbidden("not authorized: this client certificate is not trusted "
                    "(cove config trust add CERT)")


def https_listener(app: web.Application) -> HttpsListener:
    return app[HTTPS]


# -- certificates ----------------------------------------------------------------------------

async def _list(request: web.Request) -> web.Response:
    certs = await call(request, engine_of(request).trust.list_certificates)
    if recursion(request) == 0:
        return render.sync([f"/1.0/certificates/{c.fingerprint}" for c in certs])
    return render.sync([api.certificate(c) for c in certs])


async def _get(request: web.Request) -> web.Response:
    cert = await call(request, engine_of(request).trust.get_certificate,
                      request.match_info["fingerprint"])
    return render.sync(api.certificate(cert))


async def _add(request: web.Request) -> web.Response:
    post = api.CertificatesPost.parse(await json_body(request))
    pem = post.certificate
    if not pem:
        # LXD: no certificate means "the one I am connecting with".
        der = None
        obj = request.transport.get_extra_info("ssl_object") if request.transport else None
        if obj is not None:
            der = obj.getpeercert(binary_form=True)
        if not der:
            raise BadRequest("Field 'certificate' is required (base64 DER or PEM)")
        import base64

        pem = base64.b64encode(der).decode()
    await call(request, engine_of(request).trust.add_certificate, pem,
               name=post.name, type=post.type)
    return render.sync({}, status=201)


async def _delete(request: web.Request) -> web.Response:
    await call(request, engine_of(request).trust.delete_certificate,
               request.match_info["fingerprint"])
    return render.sync({})


# -- server config -----------------------------------------------------------------------------

async def _put_server(request: web.Request, *, patch: bool) -> web.Response:
    body = await json_body(request)
    config = body.get("config", {} if patch else None)
    if config is None:
        raise BadRequest("Field 'config' is required")
    engine = engine_of(request)
    new = await call(request, engine.trust.check_server_config, config, patch=patch)
    # Listen first: an address that cannot be bound is refused, not saved.
    https = request.app[HTTPS]
    before = https.address
    await https.apply(new.get("core.https_address", ""))
    if METRICS in request.app:
        try:
            await request.app[METRICS].apply(new.get("core.metrics_address", ""))
        except BadRequest:
            await https.apply(before)  # all or nothing
            raise
    await call(request, engine.trust.save_server_config, new)
    return render.sync({})


async def _put(request: web.Request) -> web.Response:
    return await _put_server(request, patch=False)


async def _patch(request: web.Request) -> web.Response:
    return await _put_server(request, patch=True)


def add_routes(app: web.Application) -> None:
    r = app.router
    for base in ("/1.0", "/1.0/"):
        r.add_put(base, _put)
        r.add_patch(base, _patch)
    r.add_get("/1.0/certificates", _list)
    r.add_post("/1.0/certificates", _add)
    r.add_get("/1.0/certificates/{fingerprint}", _get)
    r.add_delete("/1.0/certificates/{fingerprint}", _delete)
