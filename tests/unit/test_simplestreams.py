"""The simplestreams catalogue (LXD's ``ToLXD``/``applyAliases`` rules), the
path checks of a remote index, the capped copy and LXD's multipart export."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
from pathlib import Path
from typing import Any

import pytest

from cove.model.errors import BadRequest, NotFound
from cove.storage import lxd_remote, simplestreams
from cove.storage.remote_fetch import Fetcher, RemoteError, copy_capped, safe_join

H = [hashlib.sha256(bytes([i])).hexdigest() for i in range(10)]


def _item(ftype: str, n: int, **kw: Any) -> dict[str, Any]:
    return {"ftype": ftype, "path": f"images/{ftype}.{n}", "sha256": H[n], "size": 10 + n, **kw}


def _products(versions: dict[str, dict[str, Any]], arch: str = "amd64",
              aliases: str = "debian/12,debian/bookworm") -> dict[str, Any]:
    return {"products": {f"debian:12:{arch}:default": {
        "aliases": aliases, "arch": arch, "os": "Debian", "release": "12",
        "release_title": "bookworm", "variant": "default", "versions": versions}}}


def test_split_and_combined_images_and_fingerprints() -> None:
    doc = _products({"20240101_0524": {"items": {
        "lxd.tar.xz": _item("lxd.tar.xz", 1, combined_rootxz_sha256=H[5],
                            combined_squashfs_sha256=H[6]),
        "root.tar.xz": _item("root.tar.xz", 2), "squashfs": _item("squashfs", 3),
        "disk": _item("disk-kvm.img", 4)}}})
    imgs = {i.fingerprint: i for i in simplestreams.parse_products(doc)}
    assert set(imgs) == {H[5], H[6]}  # no VM image: no combined_disk-kvm sha
    tar = imgs[H[5]]
    assert tar.architecture == "x86_64" and tar.rootfs_type == "root.tar.xz"
    assert [(f.kind, f.path) for f in tar.files] == [("meta", "images/lxd.tar.xz.1"),
                                                     ("root", "images/root.tar.xz.2")]
    assert tar.properties["serial"] == "20240101_0524"
    assert tar.properties["description"] == "Debian bookworm (default)"
    assert tar.created_at == 1704086640.0
    assert tar.filename == "lxd.tar.xz.1" and tar.size == 11 + 12
    combined = simplestreams.parse_products(_products({"20240101": {"items": {
        "c": _item("lxd_combined.tar.gz", 7)}}}))
    assert [(c.fingerprint, c.rootfs_type) for c in combined] == [(H[7], "tar.gz")]


def test_aliases_newest_serial_host_arch_and_arch_suffix() -> None:
    old = {"items": {"m": _item("lxd.tar.xz", 1, combined_rootxz_sha256=H[1]),
                     "r": _item("root.tar.xz", 2)}}
    new = {"items": {"m": _item("lxd.tar.xz", 3, combined_rootxz_sha256=H[3]),
                     "r": _item("root.tar.xz", 4)}}
    imgs = simplestreams.parse_products(_products({"20240101_0000": old, "20240301_0000": new}))
    arm = simplestreams.parse_products(_products({"20240501_0000": {"items": {
        "m": _item("lxd.tar.xz", 5, combined_rootxz_sha256=H[5]),
        "r": _item("root.tar.xz", 6)}}}, arch="arm64"))
    names = simplestreams.aliases(imgs + arm, "x86_64")
    assert names["debian/12"] == H[3]  # the newest of the host's architecture
    assert names["debian/12/amd64"] == H[3] and names["debian/12/arm64"] == H[5]
    assert simplestreams.find_image(imgs + arm, "debian/bookworm", "x86_64").fingerprint == H[3]
    assert simplestreams.find_image(imgs, H[1][:10], "x86_64").fingerprint == H[1]
    with pytest.raises(NotFound):
        simplestreams.find_image(imgs, "debian/11", "x86_64")


def test_squashfs_only_is_refused_tarball_preferred() -> None:
    both = simplestreams.parse_products(_products({"20240101": {"items": {
        "m": _item("lxd.tar.xz", 1, combined_rootxz_sha256=H[5], combined_squashfs_sha256=H[6]),
        "s": _item("squashfs", 3), "r": _item("root.tar.xz", 2)}}}))
    assert simplestreams.find_image(both, "debian/12", "x86_64").fingerprint == H[5]
    only = simplestreams.parse_products(_products({"20240101": {"items": {
        "m": _item("lxd.tar.xz", 1, combined_squashfs_sha256=H[6]),
        "s": _item("squashfs", 3)}}}))
    with pytest.raises(BadRequest, match="squashfs"):
        simplestreams.find_image(only, "debian/12", "x86_64")


@pytest.mark.parametrize("bad", [
    {"sha256": "zz"}, {"size": -1}, {"size": "10"}, {"path": ""}, {"sha256": None}])
def test_items_without_a_usable_hash_size_or_path_are_skipped(bad: dict[str, Any]) -> None:
    doc = _products({"20240101": {"items": {
        "m": _item("lxd.tar.xz", 1, combined_rootxz_sha256=H[5]),
        "r": {**_item("root.tar.xz", 2), **bad}}}})
    assert simplestreams.parse_products(doc) == []


def test_index_paths_and_bad_documents() -> None:
    index = {"index": {"images": {"datatype": "image-downloads", "path": "streams/v1/i.json",
                                  "products": ["a"]},
                       "other": {"datatype": "content-download", "path": "x", "products": ["b"]}}}
    assert simplestreams.index_paths(index) == ["streams/v1/i.json"]
    with pytest.raises(BadRequest):
        simplestreams.index_paths([])
    with pytest.raises(BadRequest):
        simplestreams.parse_products({"products": []})


@pytest.mark.parametrize("rel", ["../x", "a/../../x", "/etc/passwd", "https://evil/x",
                                 "//evil/x", "a//b", "a\\b", "a/./b", "", "a?b=1"])
def test_safe_join_refuses_paths_outside(rel: str) -> None:
    with pytest.raises(RemoteError):
        safe_join("/mirror", rel)


def test_safe_join_inside() -> None:
    assert safe_join("/mirror/", "images/a/b.tar.xz") == "/mirror/images/a/b.tar.xz"
    assert safe_join("", "streams/v1/index.json") == "/streams/v1/index.json"


def test_copy_capped_size_limit_and_digest() -> None:
    data = b"x" * 5000
    out = io.BytesIO()
    assert copy_capped(io.BytesIO(data), out, path="p", server="s", size=5000,
                       limit=10000) == hashlib.sha256(data).hexdigest()
    with pytest.raises(RemoteError, match="declared size"):
        copy_capped(io.BytesIO(data), io.BytesIO(), path="p", server="s", size=100, limit=10000)
    with pytest.raises(RemoteError, match="ended at"):
        copy_capped(io.BytesIO(data), io.BytesIO(), path="p", server="s", size=6000, limit=10000)
    with pytest.raises(RemoteError, match="cove may unpack"):
        copy_capped(io.BytesIO(data), io.BytesIO(), path="p", server="s", size=None, limit=100)
    with pytest.raises(RemoteError, match="more than"):
        copy_capped(io.BytesIO(b""), io.BytesIO(), path="p", server="s", size=1 << 40, limit=100)
    with pytest.raises(RemoteError, match="cancelled"):  # an operation cancelled mid-way
        copy_capped(io.BytesIO(data), io.BytesIO(), path="p", server="s", size=5000,
                    limit=10000, cancelled=lambda: True)


def _multipart(parts: list[tuple[str, bytes]], boundary: bytes = b"b0undary") -> bytes:
    out = b""
    for name, data in parts:
        out += (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"" +
                name.encode() + b"\"; filename=\"f\"\r\n\r\n" + data + b"\r\n")
    return out + b"--" + boundary + b"--\r\n"


class _Src(io.BytesIO):
    def read(self, n: int | None = -1) -> bytes:  # small reads: boundaries split
        return super().read(min(n or 7, 7) if n and n > 0 else 7)


def test_lxd_multipart_export_parts(tmp_path: Path) -> None:
    meta, root = b"M" * 100 + b"\r\n--b0und", b"R" * 3000
    body = _multipart([("metadata", meta), ("rootfs", root)])
    h = hashlib.sha256()
    made: list[Path] = []
    got = lxd_remote._Multipart(_Src(body), b"b0undary", 1 << 20, None).save(tmp_path, made, h)
    assert got["metadata"].read_bytes() == meta and got["rootfs"].read_bytes() == root
    assert h.hexdigest() == hashlib.sha256(meta + root).hexdigest()


@pytest.mark.parametrize(("parts", "why"), [
    ([("rootfs", b"r"), ("metadata", b"m")], "before its metadata"),
    ([("metadata", b"m"), ("evil", b"x")], "Unexpected part"),
    ([("metadata", b"m"), ("metadata", b"m")], "Unexpected part"),
])
def test_lxd_multipart_bad_parts(tmp_path: Path, parts: list[tuple[str, bytes]],
                                 why: str) -> None:
    with pytest.raises(RemoteError, match=why):
        lxd_remote._Multipart(io.BytesIO(_multipart(parts)), b"b0undary", 1 << 20,
                              None).save(tmp_path, [], hashlib.sha256())


def test_lxd_multipart_cap(tmp_path: Path) -> None:
    body = _multipart([("metadata", b"m"), ("rootfs", b"r" * (1 << 16))])
    with pytest.raises(RemoteError, match="larger than"):
        lxd_remote._Multipart(io.BytesIO(body), b"b0undary", 1000, None).save(
            tmp_path, [], hashlib.sha256())


class _Redirects(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        where = {"/away": "http://192.0.2.1/x", "/here": "/data", "/scheme": "https://127.0.0.1/x"}
        if self.path in where:
            self.send_response(302)
            self.send_header("Location", where[self.path])
            self.end_headers()
            return
        body = b'{"ok": true}' if self.path == "/data" else b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_redirects_only_to_the_same_server() -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirects)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        f = Fetcher(f"http://127.0.0.1:{httpd.server_address[1]}")
        assert f.get_json("/here") == {"ok": True}
        for path in ("/away", "/scheme"):
            with pytest.raises(RemoteError, match="another server"):
                f.get_json(path)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_plain_http_only_on_loopback_and_certificates_checked() -> None:
    with pytest.raises(BadRequest, match="loopback only"):
        Fetcher("http://192.0.2.1/")
    with pytest.raises(BadRequest, match="Invalid image server"):
        Fetcher("file:///etc")
    with pytest.raises(BadRequest):
        Fetcher("https://127.0.0.1/", certificate="not a certificate")
