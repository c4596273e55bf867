"""Requests of publishing (``POST /1.0/images`` from an instance) and image
export (``GET /1.0/images/FP/export``), and reading an export answer: one
file (unified, named by ``Content-Disposition``) or ``multipart/form-data``
(split: ``metadata`` and ``rootfs`` parts). Standard library only, no
``typing`` at run time: the CLI imports it.
"""

from __future__ import annotations

import os

from cove import api
from cove.client._wire import Request, metadata, q
from cove.model.errors import InternalError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import BinaryIO

    from cove.client._http import Response

__all__ = ["export_files", "export_image", "publish", "safe_filename", "write_export"]


def publish(source: str, aliases: tuple[str, ...] | list[str] = (),
            properties: dict[str, str] | None = None, public: bool = False) -> Request:
    """``source``: ``NAME`` (type ``instance``) or ``NAME/SNAP`` (``snapshot``)."""
    stype = "snapshot" if "/" in source else "instance"
    post = api.ImagesPostPublish(source_type=stype, name=source, aliases=list(aliases),
                                 properties=properties or {}, public=public)
    return Request("POST", "/1.0/images", post.to_wire())


def export_image(fingerprint: str) -> Request:
    return Request("GET", f"/1.0/images/{q(fingerprint)}/export")


def safe_filename(name: str, fingerprint: str) -> str:
    """A server's file name as a plain local name (never a path), else
    the fingerprint."""
    base = os.path.basename(name.replace("\\", "/").strip().strip('"'))
    return base if base and base not in (".", "..") else fingerprint


def _params(value: str) -> dict[str, str]:
    out = {}
    for item in value.split(";")[1:]:
        key, _, val = item.strip().partition("=")
        out[key.strip().lower()] = val.strip().strip('"')
    return out


def export_files(resp: Response, fingerprint: str) -> list[tuple[str, bytes]]:
    """The files of an export answer as ``(local name, bytes)``.

    Raises:
        the error of an error envelope; InternalError: a malformed multipart.
    """
    if resp.status != 200:
        metadata(resp)  # raises the server's error
        raise InternalError(f"image export: HTTP {resp.status}")
    ctype = resp.header("content-type") or ""
    if not ctype.startswith("multipart/"):
        cd = _params("x;" + (resp.header("content-disposition") or "").partition(";")[2])
        return [(safe_filename(cd.get("filename", ""), fingerprint), resp.body)]
    boundary = _params(ctype).get("boundary", "")
    if not boundary:
        raise InternalError("image export: a multipart answer without a boundary")
    files = []
    for chunk in resp.body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, body = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise InternalError("image export: a multipart part without headers")
        files.append((_part_name(head, fingerprint), body.removesuffix(b"\r\n")))
    return files


def _part_name(head: bytes, fingerprint: str) -> str:
    disposition = ""
    for line in head.decode("utf-8", "replace").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-disposition":
            disposition = value
    params = _params(disposition)
    default = ("meta-" if params.get("name") == "metadata" else "") + fingerprint
    return safe_filename(params.get("filename", ""), default)


def _write_unified(chunks: Iterable[bytes], headers: dict[str, str], fingerprint: str,
                   directory: str) -> str:
    cd = _params("x;" + headers.get("content-disposition", "").partition(";")[2])
    path = os.path.join(directory, safe_filename(cd.get("filename", ""), fingerprint))
    try:
        with open(path + ".part", "wb") as f:
            f.writelines(chunks)
    except BaseException:
        os.unlink(path + ".part")
        raise
    os.replace(path + ".part", path)
    return path


def write_export(chunks: Iterable[bytes], headers: dict[str, str], fingerprint: str,
                 directory: str) -> list[str]:
    """Stream an export answer (``headers`` lower-case) into files in
    ``directory``, chunk by chunk, never holding a whole file; returns their
    paths. A file is written as ``NAME.part`` and renamed when complete.

    Raises:
        InternalError: a malformed or truncated multipart answer.
    """
    ctype = headers.get("content-type", "")
    written: list[str] = []
    if not ctype.startswith("multipart/"):
        return [_write_unified(chunks, headers, fingerprint, directory)]
    boundary = _params(ctype).get("boundary", "")
    if not boundary:
        raise InternalError("image export: a multipart answer without a boundary")
    delim = b"\r\n--" + boundary.encode()
    buf = b"\r\n"  # so the first boundary matches as every later one does
    out: BinaryIO | None = None
    path = ""
    ended = False
    try:
        for chunk in chunks:
            buf += chunk
            while not ended:
                if out is None:  # looking for a boundary, then a part's headers
                    at = buf.find(delim)
                    end = buf.find(b"\r\n\r\n", at + len(delim)) if at >= 0 else -1
                    if at >= 0 and buf[at + len(delim):at + len(delim) + 2] == b"--":
                        ended = True
                        break
                    if end < 0:
                        if len(buf) > 1 << 16:
                            raise InternalError("image export: no multipart part headers")
                        break
                    path = os.path.join(directory,
                                        _part_name(buf[at + len(delim):end], fingerprint))
                    out = open(path + ".part", "wb")  # noqa: SIM115 - closed below
                    buf = buf[end + 4:]
                    continue
                at = buf.find(delim)
                if at < 0:  # keep what may be the start of the boundary
                    keep = len(delim) - 1
                    out.write(buf[:-keep] if len(buf) > keep else b"")
                    buf = buf[-keep:] if len(buf) > keep else buf
                    break
                out.write(buf[:at])
                out.close()
                out = None
                os.replace(path + ".part", path)
                written.append(path)
                buf = buf[at:]
            if ended:
                break
        if not ended:
            raise InternalError("image export: the multipart answer ended early")
    except BaseException:
        for done in written:  # all the files or none
            os.unlink(done)
        raise
    finally:
        if out is not None:
            out.close()
            os.unlink(path + ".part")
    return written
