"""cove as an image server for LXD: what an untrusted client may read of
the images, and the one-time secrets of private ones.

LXD's rules (``lxd/images.go``), which an LXD pulling from coved
(``lxc image copy cove:busybox local:``, ``lxc launch cove:busybox``)
relies on: an untrusted client (``routes_trust._PUBLIC_IMAGES`` lets
the GETs through) may ``GET /1.0/images`` (the public ones
only), ``GET /1.0/images/FP``, ``GET /1.0/images/FP/export`` and
``GET /1.0/images/aliases/NAME`` of a public image, or of a private one
with the ``?secret=`` a trusted client got from ``POST
/1.0/images/FP/secret`` (a ``token`` operation whose metadata holds
``secret`` and ``fingerprint``, running until it is used or cancelled). What
it may not see is a 404 like a missing image, so the existence of a
private image is not told. The export consumes the secret (the token
operation is cancelled), as LXD's single-use tokens are; reading the image
with it does not, so LXD 5.0's pull (image, then export, one secret) works.
A secret nobody uses stops after ``SECRET_LIFETIME`` seconds.
"""

from __future__ import annotations

import hmac
import secrets
import threading

from aiohttp import web

from cove.engine.operations import Operation
from cove.model.errors import BadRequest, Forbidden, NotFound
from cove.model.projects import DEFAULT
from cove.model.records import Image
from cove.server import render
from cove.server.routes_common import call, check_project, engine_of
from cove.server.routes_trust import TRUSTED

__all__ = ["add_routes", "check_list_project", "check_visible", "trusted", "visible"]

SECRET_LIFETIME = 3600.0


def trusted(request: web.Request) -> bool:
    return bool(request.get(TRUSTED, True))


def check_list_project(request: web.Request) -> None:
    """LXD's ``imagesGetAccessHandler`` for ``GET /1.0/images``: an untrusted
    caller lists the public images of the default project only. Another
    ``?project=`` is LXD's generic 404 (whether the project exists is not
    told), ``?all-projects=true`` a 403; both together a 400 for anyone
    (``request.ProjectParams``).

    Raises: BadRequest, Forbidden, NotFound."""
    project = request.query.get("project", "")
    every = request.query.get("all-projects", "").lower() in ("1", "true", "yes", "on")
    if every and project:
        raise BadRequest("Cannot specify a project when requesting all projects")
    if trusted(request):
        return
    if every:
        raise Forbidden("Untrusted callers may only access public images in the default "
                        "project")
    if (project or DEFAULT) != DEFAULT:
        raise NotFound("Not Found")


def _secret_op(request: web.Request, fingerprint: str) -> Operation | None:
    """The running token operation of ``?secret=`` for ``fingerprint``, if any."""
    given = request.query.get("secret", "")
    if not given:
        return None
    for op in engine_of(request).operations.all():
        if op.cls != "token" or op.done or op.cancelled or \
                op.metadata.get("fingerprint") != fingerprint:
            continue
        if hmac.compare_digest(str(op.metadata.get("secret", "")).encode(), given.encode()):
            return op
    return None


def visible(request: web.Request, img: Image) -> bool:
    """Whether the caller may see ``img``: trusted, a public image, or a valid secret."""
    return trusted(request) or img.public or _secret_op(request, img.fingerprint) is not None


def check_visible(request: web.Request, img: Image, *, consume: bool = False) -> None:
    """Raises NotFound (LXD's generic one) when the caller may not see ``img``;
    ``consume``: a secret that let it in is used up."""
    if trusted(request) and not request.query.get("secret"):
        return
    op = _secret_op(request, img.fingerprint)
    if op is not None:
        if consume:
            op.cancel()
        return
    if not (trusted(request) or img.public):
        raise NotFound("Image not found")


async def _secret(request: web.Request) -> web.Response:
    """``POST /1.0/images/FP/secret``: a one-time secret for the image (trusted only)."""
    project = await check_project(request)
    engine = engine_of(request)
    img = await call(request, engine.images.get, request.match_info["fingerprint"],
                     project=project)
    stop = threading.Event()

    def work(op: Operation) -> None:
        op.on_cancel(stop.set)
        stop.wait(SECRET_LIFETIME)

    op = engine.operations.run(work, description="Downloading image", cls="token",
                               resources={"images": [f"/1.0/images/{img.fingerprint}"]},
                               may_cancel=True, project=project)
    op.update(secret=secrets.token_hex(32), fingerprint=img.fingerprint)
    return render.async_op(op)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/1.0/images/{fingerprint}/secret", _secret)
