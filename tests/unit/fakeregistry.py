"""A small distribution-API registry on loopback for the registry client's
unit tests, with knobs for the hostile answers a real registry never gives
(a manifest that is not what its digest says, a blob longer than declared,
a redirect to another host, a connection cut half-way).

Content is made here too: gzip'd tar layers, a config, a manifest, an index.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


def desc(media: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media, "digest": digest(data), "size": len(data)}


@dataclass
class Image:
    manifest: bytes
    blobs: dict[str, bytes]


def make_image(layers: list[bytes], cmd: str = "/bin/sh") -> Image:
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": [cmd]},
                         "rootfs": {"type": "layers", "diff_ids": [
                             digest(gzip.decompress(x)) for x in layers]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": desc("application/vnd.oci.image.config.v1+json", config),
                           "layers": [desc(LAYER_GZIP, x) for x in layers]}).encode()
    blobs = {digest(x): x for x in [config, *layers]}
    return Image(manifest, blobs)


def make_index(entries: list[tuple[str, Image]]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {**desc(OCI_MANIFEST, img.manifest),
         "platform": {"os": "linux", "architecture": arch}} for arch, img in entries
    ]}).encode()


@dataclass
class Registry:
    """What the fake serves and how it misbehaves (tests set the knobs)."""

    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # "repo:ref"
    blobs: dict[str, bytes] = field(default_factory=dict)
    auth: str = ""                     # "", "basic", "bearer"
    user: tuple[str, str] = ("alice", "s3cret")
    wrong_digest_header: bool = False  # Docker-Content-Digest that is not the body's
    extra_bytes: dict[str, bytes] = field(default_factory=dict)  # digest -> appended
    redirect_blobs: str = ""           # base URL blobs are redirected to
    cut_after: dict[str, int] = field(default_factory=dict)  # digest -> bytes, once
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, range
    uploads: dict[str, bytes] = field(default_factory=dict)
    port: int = 0

    def add(self, repo: str, tag: str, img: Image) -> None:
        self.blobs.update(img.blobs)
        self.manifests[f"{repo}:{tag}"] = (OCI_MANIFEST, img.manifest)
        self.manifests[f"{repo}:{digest(img.manifest)}"] = (OCI_MANIFEST, img.manifest)


class _Handler(BaseHTTPRequestHandler):
    reg: Registry
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorized(self) -> bool:
        reg = self.reg
        got = self.headers.get("Authorization", "")
        basic = "Basic " + base64.b64encode(":".join(reg.user).encode()).decode()
        if not reg.auth or self.path.startswith("/token"):
            return True
        if reg.auth == "basic" and got == basic:
            return True
        if reg.auth == "bearer" and got == "Bearer tok-" + reg.user[0]:
            return True
        if reg.auth == "basic":
            challenge = 'Basic realm="fake"'
        else:
            challenge = (f'Bearer realm="http://127.0.0.1:{reg.port}/token",'
                         'service="fake",scope="repository:x:pull"')
        self._send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"no"}]}',
                   {"WWW-Authenticate": challenge})
        return False

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        reg = self.reg
        reg.requests.append(("GET", self.path, self.headers.get("Range", "")))
        if self.path.startswith("/token"):
            basic = "Basic " + base64.b64encode(":".join(reg.user).encode()).decode()
            if self.headers.get("Authorization") != basic:
                self._send(401, b"{}")
                return
            self._send(200, json.dumps({"token": "tok-" + reg.user[0]}).encode())
            return
        if not self._authorized():
            return
        if self.path == "/v2/":
            self._send(200, b"{}")
            return
        parts = self.path.split("/")
        if len(parts) < 5 or parts[1] != "v2":
            self._send(404)
            return
        repo, kind, ref = "/".join(parts[2:-2]), parts[-2], parts[-1]
        if kind == "manifests":
            self._manifest(repo, ref)
        elif kind == "blobs":
            self._blob(ref)
        else:
            self._send(404)

    def _manifest(self, repo: str, ref: str) -> None:
        found = self.reg.manifests.get(f"{repo}:{ref}")
        if not found:
            self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}')
            return
        media, body = found
        head = digest(body) if not self.reg.wrong_digest_header else digest(body + b" ")
        self._send(200, body, {"Content-Type": media, "Docker-Content-Digest": head})

    def _blob(self, ref: str) -> None:
        reg = self.reg
        data = reg.blobs.get(ref)
        if data is None:
            self._send(404)
            return
        if reg.redirect_blobs:
            self._send(307, b"", {"Location": f"{reg.redirect_blobs}/blobs/{ref}"})
            return
        data = data + reg.extra_bytes.get(ref, b"")
        start = 0
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
        body = data[start:]
        headers = {"Content-Length": str(len(body))}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        cut = reg.cut_after.pop(ref, None)
        self.send_response(206 if start else 200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.reg.requests.append(("POST", self.path, ""))
        if not self._authorized():
            return
        self._send(202, b"", {"Location": self.path + "upload-1?state=x"})

    def do_PUT(self) -> None:
        reg = self.reg
        reg.requests.append(("PUT", self.path, ""))
        if not self._authorized():
            return
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if "/blobs/uploads/" in self.path:
            dig = self.path.split("digest=")[1]
            if digest(data) != dig:
                self._send(400)
                return
            reg.blobs[dig] = data
            reg.uploads[dig] = data
            self._send(201)
            return
        parts = self.path.split("/")
        repo, ref = "/".join(parts[2:-2]), parts[-1]
        media = self.headers.get("Content-Type", "")
        reg.manifests[f"{repo}:{ref}"] = (media, data)
        reg.manifests[f"{repo}:{digest(data)}"] = (media, data)
        self._send(201)


class _Quiet(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up on a hostile answer is what the tests want


class Server:
    """The fake, serving on 127.0.0.1 (or ``host``) in a thread."""

    def __init__(self, reg: Registry, host: str = "127.0.0.1") -> None:
        handler = type("Handler", (_Handler,), {"reg": reg})
        self.httpd = _Quiet((host, 0), handler)
        reg.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{reg.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
