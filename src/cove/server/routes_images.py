"""``/1.0/images`` and ``/1.0/images/aliases``.

An upload is the raw tarball as the body (``X-LXD-filename``,
``X-LXD-public``, ``X-LXD-properties``), or LXD's split form: multipart
with a ``metadata`` part and a ``rootfs`` part (``lxc image import meta.tar
rootfs.tar``). Either is spooled to ``<root>/tmp`` and handed to
``engine.images.import_file``, which owns the files from then on; the operation's
metadata on success is ``{"fingerprint", "size"}`` (set by the engine).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from cove import api
from cove.model.errors import BadRequest, NotFound
from cove.server import (
    render,
    routes_image_public,
    routes_image_pull,
    routes_publish,
    routes_registry_pull,
)
from cove.server.routes_common import (
    call,
    check_project,
    engine_of,
    json_body,
    recursion,
    spool,
)

__all__ = ["add_routes"]

_TRUE = ("1", "true", "yes", "on")


# -- images ----------------------------------------------------------------------

# cove's upload of an OCI image layout (a tar of the directory), and the
# image of it to import (``--ref``); LXD has no such upload.
OCI_FORMAT_HEADER = "X-Cove-Image-Format"
OCI_REF_HEADER = "X-Cove-OCI-Ref"


async def _list(request: web.Request) -> web.Response:
    routes_image_public.check_list_project(request)  # before the project is looked up
    project = await check_project(request)
    images = await call(request, engine_of(request).images.all, project=project)
    if not routes_image_public.trusted(request):  # LXD: the public ones only
        images = [i for i in images if i.public]
    objs = render.filter_objects([render.image(i) for i in images],
                                 request.query.get("filter", ""))
    if recursion(request) == 0:
        return render.sync([f"/1.0/images/{o['fingerprint']}" for o in objs])
    return render.sync(objs)


def _properties_header(request: web.Request) -> dict[str, str] | None:
    raw = request.headers.get("X-LXD-properties", "")
    if not raw:
        return None
    try:
        return dict(parse_qsl(raw, keep_blank_values=True, strict_parsing=True))
    except ValueError:
        raise BadRequest(f"Invalid X-LXD-properties {raw!r}: expected url-encoded "
                         "key=value pairs") from None


async def _spool_multipart(request: web.Request) -> tuple[Path, Path, str]:
    """Spool the ``metadata`` and ``rootfs`` parts; returns (rootfs, meta, filename)."""
    spooled: dict[str, Path] = {}
    filename = ""
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise BadRequest("Nested multipart uploads are not supported")
            pname = part.name or ""
            if pname == "rootfs.img":
                raise BadRequest("Virtual-machine images are not supported: cove runs "
                                 "containers only")
            if pname not in ("metadata", "rootfs"):
                raise BadRequest(f"Unexpected upload part {pname!r}: expected 'metadata' "
                                 "and 'rootfs'")
            if pname in spooled:
                raise BadRequest(f"Upload part {pname!r} given twice")
            if pname == "rootfs" and part.filename:
                filename = part.filename
            spooled[pname] = await spool(request, part.read_chunk, "image-")
        if set(spooled) != {"metadata", "rootfs"}:
            raise BadRequest("A split image upload needs both a 'metadata' and a "
                             "'rootfs' part")
    except (ValueError, TypeError, RuntimeError, HttpProcessingError, UnicodeError) as e:
        # aiohttp's multipart reader: no boundary, bad part headers, unknown
        # encodings. The client's fault, so a 400 that says which.
        for p in spooled.values():
            p.unlink(missing_ok=True)
        why = str(getattr(e, "message", "") or e).strip().splitlines()
        raise BadRequest(f"Malformed multipart upload: {why[0] if why else type(e).__name__}"
                         ) from None
    except BaseException:
        for p in spooled.values():
            p.unlink(missing_ok=True)
        raise
    return spooled["rootfs"], spooled["metadata"], filename


async def _create(request: web.Request) -> web.Response:
    project = await check_project(request)
    engine = engine_of(request)
    ctype = request.content_type
    if ctype == "application/json":
        body = await json_body(request)
        if api.ImagesPostPublish.is_publish(body):
            return await routes_publish.publish(request, body, project)
        pulled = await routes_registry_pull.pull_image(request, body, project)
        if pulled is not None:  # source protocol oci: a registry
            return pulled
        pulled = await routes_image_pull.pull_image(request, body, project)
        if pulled is not None:  # simplestreams or another LXD
            return pulled
        source = body.get("source")
        stype = source.get("type", "") if isinstance(source, dict) else ""
        raise BadRequest(f"Importing images from a source of type {stype or 'none'!r} "
                         "(remote servers, URLs) is not supported yet: upload the image "
                         "tarball as the request body instead")
    public = request.headers.get("X-LXD-public", "").strip().lower() in _TRUE
    properties = _properties_header(request)
    meta: Path | None = None
    if ctype == "multipart/form-data":
        path, meta, filename = await _spool_multipart(request)
    else:
        filename = request.headers.get("X-LXD-filename", "")
        path = await spool(request, request.content.read, "image-")
    if request.headers.get(OCI_FORMAT_HEADER, "") == "oci-layout":  # cove's: an OCI layout's tar
        try:
            op = await call(request, engine.oci.import_archive, path,
                            request.headers.get(OCI_REF_HEADER) or None, public=public,
                            filename=filename, project=project)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return render.async_op(op)
    try:
        op = await call(request, engine.images.import_file, path, filename=filename, public=public,
                        meta_path=meta, properties=properties, project=project)
    except BaseException:
        # refused before the engine took the files: they are still ours
        path.unlink(missing_ok=True)
        if meta is not None:
            meta.unlink(missing_ok=True)
        raise
    return render.async_op(op)


async def _get(request: web.Request) -> web.Response:
    project = await check_project(request)
    img = await call(request, engine_of(request).images.get, request.match_info["fingerprint"],
                     project=project)
    routes_image_public.check_visible(request, img)
    return render.sync(render.image(img))


async def _update(request: web.Request, *, patch: bool) -> web.Response:
    project = await check_project(request)
    engine = engine_of(request)
    put = api.ImagePut.parse(await json_body(request))
    await call(request, engine.images.update, request.match_info["fingerprint"],
               properties=put.properties, public=put.public, patch=patch, project=project,
               auto_update=put.auto_update)
    return render.sync({})


async def _put(request: web.Request) -> web.Response:
    return await _update(request, patch=False)


async def _patch(request: web.Request) -> web.Response:
    return await _update(request, patch=True)


async def _delete(request: web.Request) -> web.Response:
    project = await check_project(request)
    op = await call(request, engine_of(request).images.delete, request.match_info["fingerprint"],
                    project=project)
    return render.async_op(op)


# -- aliases ---------------------------------------------------------------------

async def _aliases(request: web.Request) -> web.Response:
    project = await check_project(request)
    aliases = await call(request, engine_of(request).images.list_aliases, project=project)
    if recursion(request) == 0:
        return render.sync([f"/1.0/images/aliases/{a.name}" for a in aliases])
    return render.sync([render.alias(a) for a in aliases])


async def _alias_create(request: web.Request) -> web.Response:
    project = await check_project(request)
    post = api.ImageAliasesPost.parse(await json_body(request))
    await call(request, engine_of(request).images.add_alias, post.name, post.target,
               post.description, project=project)
    return render.sync({}, headers={"Location": f"/1.0/images/aliases/{post.name}"})


async def _alias_get(request: web.Request) -> web.Response:
    project = await check_project(request)
    a = await call(request, engine_of(request).images.get_alias, request.match_info["name"],
                   project=project)
    if not routes_image_public.trusted(request):  # LXD: an alias of a public image only
        img = await call(request, engine_of(request).images.get, a.target, project=project)
        if not img.public:
            raise NotFound("Image alias not found")
    return render.sync(render.alias(a))


async def _alias_update(request: web.Request, *, patch: bool) -> web.Response:
    project = await check_project(request)
    engine = engine_of(request)
    name = request.match_info["name"]
    put = api.ImageAliasesEntryPut.parse(await json_body(request))
    target, description = put.target, put.description or ""
    if patch:
        current = await call(request, engine.images.get_alias, name, project=project)
        target = target or current.target
        description = put.description if put.description is not None else current.description
    elif not target:
        raise BadRequest("Field 'target' (an image fingerprint) is required")
    await call(request, engine.images.update_alias, name, target, description, project=project)
    return render.sync({})


async def _alias_put(request: web.Request) -> web.Response:
    return await _alias_update(request, patch=False)


async def _alias_patch(request: web.Request) -> web.Response:
    return await _alias_update(request, patch=True)


async def _alias_rename(request: web.Request) -> web.Response:
    project = await check_project(request)
    post = api.ImageAliasesEntryPost.parse(await json_body(request))
    await call(request, engine_of(request).images.rename_alias, request.match_info["name"],
               post.name, project=project)
    return render.sync({}, headers={"Location": f"/1.0/images/aliases/{post.name}"})


async def _alias_delete(request: web.Request) -> web.Response:
    project = await check_project(request)
    await call(request, engine_of(request).images.delete_alias, request.match_info["name"],
               project=project)
    return render.sync({})


def add_routes(app: web.Application) -> None:
    r = app.router
    # aliases first: "/1.0/images/aliases" must not be read as a fingerprint
    r.add_get("/1.0/images/aliases", _aliases)
    r.add_post("/1.0/images/aliases", _alias_create)
    r.add_get("/1.0/images/aliases/{name}", _alias_get)
    r.add_put("/1.0/images/aliases/{name}", _alias_put)
    r.add_patch("/1.0/images/aliases/{name}", _alias_patch)
    r.add_post("/1.0/images/aliases/{name}", _alias_rename)
    r.add_delete("/1.0/images/aliases/{name}", _alias_delete)
    r.add_get("/1.0/images", _list)
    r.add_post("/1.0/images", _create)
    r.add_get("/1.0/images/{fingerprint}", _get)
    r.add_put("/1.0/images/{fingerprint}", _put)
    r.add_patch("/1.0/images/{fingerprint}", _patch)
    r.add_delete("/1.0/images/{fingerprint}", _delete)
    r.add_get("/1.0/images/{fingerprint}/export", routes_publish.export)
    routes_image_public.add_routes(app)  # POST /1.0/images/FP/secret
    routes_registry_pull.add_routes(app)  # POST /1.0/images/FP/push
