"""Test image servers on loopback: a simplestreams tree built from the busybox
image, served over HTTPS (a self-signed certificate the tests pin), with
hostile variants beside the good one.

The good tree is LXD's split form: ``lxd.tar.xz`` (metadata.yaml) and
``root.tar.xz`` (the rootfs), the fingerprint the sha256 of both (as
``combined_rootxz_sha256`` and ``combined_sha256`` say). Each variant is a
tree of its own under the server (``/good``, ``/badsha``, ...), so one
server and one certificate serve them all.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import lzma
import ssl
import tarfile
import threading
from pathlib import Path
from typing import Any

ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def split_image(unified: Path) -> tuple[bytes, bytes]:
    """(metadata tarball, rootfs tarball), both xz, from an LXD unified tarball."""
    meta, root = io.BytesIO(), io.BytesIO()
    with tarfile.open(unified) as src, \
            tarfile.open(fileobj=meta, mode="w") as mt, tarfile.open(fileobj=root, mode="w") as rt:
        for m in src.getmembers():
            data = src.extractfile(m) if m.isfile() else None
            if m.name.startswith("rootfs/") or m.name == "rootfs":
                if m.name == "rootfs":
                    continue
                m.name = m.name[len("rootfs/"):]
                if m.islnk() and m.linkname.startswith("rootfs/"):
                    m.linkname = m.linkname[len("rootfs/"):]
                rt.addfile(m, data)
            else:
                mt.addfile(m, data)
    # preset 0: fast to make (a test's "newer build" recompresses at another)
    return lzma.compress(meta.getvalue(), preset=0), lzma.compress(root.getvalue(), preset=0)


def _item(path: str, data: bytes, ftype: str, **extra: Any) -> dict[str, Any]:
    return {"ftype": ftype, "path": path, "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data), **extra}


def write_tree(top: Path, meta: bytes, root: bytes, arch: str, *, aliases: str = "busybox/1.36,busybox",
               serial: str = "20260101_0000", meta_item: dict[str, Any] | None = None,
               root_item: dict[str, Any] | None = None) -> str:
    """A simplestreams tree at ``top``; returns the image's fingerprint.
    ``meta_item``/``root_item`` override fields of the items (hostile trees)."""
    fp = hashlib.sha256(meta + root).hexdigest()
    d = top / "images" / "busybox" / serial
    d.mkdir(parents=True, exist_ok=True)
    (d / "lxd.tar.xz").write_bytes(meta)
    (d / "root.tar.xz").write_bytes(root)
    rel = f"images/busybox/{serial}"
    mi = _item(f"{rel}/lxd.tar.xz", meta, "lxd.tar.xz", combined_rootxz_sha256=fp,
               combined_sha256=fp)
    ri = _item(f"{rel}/root.tar.xz", root, "root.tar.xz")
    mi.update(meta_item or {})
    ri.update(root_item or {})
    products = {"content_id": "images", "datatype": "image-downloads",
                "format": "products:1.0",
                "products": {f"busybox:1.36:{arch}:default": {
                    "aliases": aliases, "arch": arch, "os": "Busybox", "release": "1.36",
                    "release_title": "1.36", "variant": "default",
                    "versions": {serial: {"items": {"lxd.tar.xz": mi, "root.tar.xz": ri}}}}}}
    (top / "streams" / "v1").mkdir(parents=True, exist_ok=True)
    (top / "streams" / "v1" / "images.json").write_text(json.dumps(products))
    index = {"format": "index:1.0", "index": {"images": {
        "datatype": "image-downloads", "path": "streams/v1/images.json",
        "format": "products:1.0", "products": list(products["products"])}}}
    (top / "streams" / "v1" / "index.json").write_text(json.dumps(index))
    return fp


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _RangeHandler(_Handler):
    """Files with ``Range: bytes=N-`` (a 206), as LXD's and most web servers
    answer; what was sent is counted per path (``sent``) and every Range
    asked for kept (``ranges``), so a test sees what a resume fetched."""

    sent: dict[str, int]
    ranges: list[tuple[str, str]]

    def do_GET(self) -> None:
        path = self.translate_path(self.path)
        rng = self.headers.get("Range", "")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            self.send_error(404)
            return
        self.ranges.append((self.path, rng))
        start = int(rng[len("bytes="):].rstrip("-")) if rng.startswith("bytes=") else 0
        if start >= len(data) > 0:
            self.send_response(416)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])
        self.sent[self.path] = self.sent.get(self.path, 0) + len(data) - start


class HttpsServer:
    """A static HTTPS server of ``root`` on 127.0.0.1 (a thread); ``url`` and
    ``cert`` (PEM) for the tests. ``close`` stops it."""

    def __init__(self, root: Path, certdir: Path, *, ranges: bool = False) -> None:
        """``ranges``: answer ``Range`` and count what is sent (``sent``, ``ranges``)."""
        from cove.host.certs import generate_certificate

        crt, key = certdir / "ss.crt", certdir / "ss.key"
        self.cert = generate_certificate(crt, key, server=True)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(crt), str(key))
        self.sent: dict[str, int] = {}
        self.ranges: list[tuple[str, str]] = []
        cls = type("Handler", (_RangeHandler,), {"sent": self.sent, "ranges": self.ranges}) \
            if ranges else _Handler
        handler = lambda *a, **kw: cls(*a, directory=str(root), **kw)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def build_streams(top: Path, parts: tuple[bytes, bytes], arch: str) -> dict[str, str]:
    """The good tree and the hostile ones under ``top`` from the split image
    ``parts``; fingerprints by tree."""
    meta, root = parts
    fps = {"good": write_tree(top / "good", meta, root, arch)}
    # a rootfs whose bytes are not the ones the index hashes
    fps["badsha"] = write_tree(top / "badsha", meta, root, arch,
                               root_item={"sha256": "0" * 64})
    # an item path that climbs out of the tree (to the good one's files)
    fps["escape"] = write_tree(top / "escape", meta, root, arch,
                               root_item={"path": "../good/images/busybox/20260101_0000/root.tar.xz"})
    fps["abs"] = write_tree(top / "abs", meta, root, arch, root_item={"path": "/etc/passwd"})
    # a rootfs larger than the index declares
    fps["short"] = write_tree(top / "short", meta, root, arch, root_item={"size": 1000})
    # a declared size past the server's cove.images.max_size: refused unfetched
    fps["huge"] = write_tree(top / "huge", meta, root, arch, root_item={"size": 1 << 39})
    return fps
