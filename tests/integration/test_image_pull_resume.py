"""Issue 13's loose ends: a pull from a simplestreams server that coved dies
in the middle of resumes (nothing half-made, the partial file continued
with ``Range``), an untrusted ``GET /1.0/images`` kept to the default
project (LXD's ``imagesGetAccessHandler``), and the registry download
directory forgetting a deleted image without breaking a pull in flight."""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import shutil
import socket
import ssl
import sys
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from covetest import Coved, mkroot, wait_until
from imageservers import ARCH, HttpsServer, split_image, write_tree

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from fakeregistry import Registry as FakeRegistry
from fakeregistry import Server, digest, layer, make_image


def _bigger_root(root_xz: bytes, extra: int) -> bytes:
    """The rootfs tarball with ``extra`` random bytes more (several download chunks)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(lzma.decompress(root_xz))) as src, \
            tarfile.open(fileobj=out, mode="w") as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        big = tarfile.TarInfo("big.bin")
        big.size = extra
        dst.addfile(big, io.BytesIO(os.urandom(extra)))
    return lzma.compress(out.getvalue(), preset=0)


def _layers(root: Path) -> list[str]:
    d = root / "images" / "layers"
    return [p.name for p in d.iterdir() if not p.name.startswith(".")] if d.exists() else []


def test_killed_pull_resumes_with_range(make_coved: Callable[..., Coved],
                                        busybox_tar: Path) -> None:
    top = mkroot("ssresume")
    arch = ARCH.get(os.uname().machine, os.uname().machine)
    meta, root = split_image(busybox_tar)
    root = _bigger_root(root, 3 << 20)
    fp = write_tree(top / "www" / "big", meta, root, arch)
    (top / "certs").mkdir()
    server = HttpsServer(top / "www", top / "certs", ranges=True)
    rel = "/big/images/busybox/20260101_0000/root.tar.xz"
    d = make_coved("ssresume", start=False)
    d.env = {"COVE_FAILPOINTS": "image-pull.partial"}
    try:
        d.start()
        src = {"type": "image", "mode": "pull", "server": f"{server.url}/big",
               "protocol": "simplestreams", "certificate": server.cert, "alias": "busybox"}
        d.api.request("POST", "/1.0/images", {"source": src})
        d.revive()  # killed with the first MiB of the rootfs on disk
        # nothing half-made: no image, no layer, no temporary file; the partial kept
        assert d.api.sync("GET", "/1.0/images") == []
        assert _layers(d.root) == []
        assert list((d.root / "tmp").iterdir()) == []
        assert not [p for p in (d.root / "images").iterdir() if p.name.startswith(".tmp-")]
        part = d.root / "downloads" / f"sha256-{hashlib.sha256(root).hexdigest()}.part"
        kept = part.stat().st_size
        assert 0 < kept < len(root), (kept, len(root))
        assert root.startswith(part.read_bytes())
        # the first pull asked for all of it (what was sent is not counted: coved
        # died mid-answer, and the server's write of the rest may fail)
        assert [r for p, r in server.ranges if p == rel] == [""]

        server.sent.clear()
        op = d.api.run("POST", "/1.0/images", {"source": src}, timeout=120)
        assert op["metadata"]["fingerprint"] == fp
        assert (rel, f"bytes={kept}-") in server.ranges
        assert server.sent[rel] == len(root) - kept  # only the rest travelled
        assert op["metadata"]["fetched_bytes"] == len(meta) + len(root) - kept
        assert list((d.root / "downloads").iterdir()) == []
        assert d.api.sync("GET", f"/1.0/images/{fp}")["update_source"]["alias"] == "busybox"
        d.api.run("DELETE", f"/1.0/images/{fp}")
    finally:
        server.close()
        shutil.rmtree(top, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _untrusted(url: str, cert: str) -> tuple[int, Any]:
    ctx = ssl.create_default_context(cadata=cert)
    ctx.check_hostname = False
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=30) as r:
            return int(r.status), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return int(e.code), json.loads(e.read())


def test_untrusted_image_list_is_the_default_projects(make_coved: Callable[..., Coved]
                                                      ) -> None:
    d = make_coved("imgproj")
    port = _free_port()
    d.api.sync("PATCH", "/1.0", {"config": {"core.https_address": f"127.0.0.1:{port}"}})
    url, cert = f"https://127.0.0.1:{port}", (d.root / "server.crt").read_text()
    d.api.sync("POST", "/1.0/projects", {"name": "covetestp", "config": {}})
    try:
        assert _untrusted(f"{url}/1.0/images", cert)[0] == 200
        assert _untrusted(f"{url}/1.0/images?project=default", cert)[0] == 200
        # another project, existing or not: the same generic 404 (LXD's NotFound(nil))
        for project in ("covetestp", "covetestnone"):
            code, body = _untrusted(f"{url}/1.0/images?project={project}", cert)
            assert (code, body["error"]) == (404, "Not Found"), body
        code, body = _untrusted(f"{url}/1.0/images?all-projects=true", cert)
        assert code == 403 and "default project" in body["error"], body
        # trusted: the project's list; a project with all-projects is a 400 for anyone
        assert d.api.sync("GET", "/1.0/images?project=covetestp") == []
        r = d.api.request("GET", "/1.0/images?project=covetestp&all-projects=true")
        assert r.status == 400, r.body
        code, _ = _untrusted(f"{url}/1.0/images?project=covetestp&all-projects=true", cert)
        assert code == 400
    finally:
        d.api.sync("DELETE", "/1.0/projects/covetestp")


def test_registry_dir_forgets_a_deleted_image_after_a_pull(make_coved: Callable[..., Coved]
                                                           ) -> None:
    """Deleting an image drops its manifest and config from ``<root>/registry``
    (not only at the next start); a pull in flight, tagged in the layout but
    without its image row yet, is not swept from under it."""
    d = make_coved("regsweep", start=False)
    d.env = {"COVE_FAILPOINTS": "registry-pull.pulled=sleep:2"}  # each pull: 2 s paused
    d.start()
    fake = FakeRegistry()
    one, two = make_image([layer({"one": b"1"})]), make_image([layer({"two": b"2"})])
    fake.add("one", "1", one)
    fake.add("two", "1", two)
    srv = Server(fake)
    blobs = d.root / "registry" / "blobs" / "sha256"

    def names(img: Any) -> set[str]:
        cfg = json.loads(img.manifest)["config"]["digest"]
        return {digest(img.manifest).split(":")[1], cfg.split(":")[1]}

    def indexed() -> list[str]:
        doc = json.loads((d.root / "registry" / "index.json").read_text())
        return [m["digest"] for m in doc["manifests"]]

    try:
        src = {"type": "image", "protocol": "oci", "server": srv.url}
        op = d.api.run("POST", "/1.0/images", {"source": {**src, "alias": "one:1"}},
                       timeout=60)
        fp1 = op["metadata"]["fingerprint"]
        assert names(one) <= {p.name for p in blobs.iterdir()}
        r = d.api.request("POST", "/1.0/images", {"source": {**src, "alias": "two:1"}})
        pending = r.json["operation"]
        wait_until(lambda: "fetched_bytes" in d.api.sync("GET", pending)["metadata"], 30,
                   what="the second pull paused after its download")
        d.api.run("DELETE", f"/1.0/images/{fp1}")  # while the pull holds the layout
        assert d.api.sync("GET", pending)["status"] == "Running"  # the delete did not wait
        done = d.api.wait(r, 60)
        assert done["status"] == "Success", done
        fp2 = done["metadata"]["fingerprint"]
        left = {p.name for p in blobs.iterdir()}
        assert not names(one) & left, left  # the deleted image's manifest and config
        assert names(two) <= left
        assert indexed() == [f"sha256:{fp2}"]
        d.api.run("DELETE", f"/1.0/images/{fp2}")
        assert not {p.name for p in blobs.iterdir()} and indexed() == []
    finally:
        srv.close()


def test_export_answers_a_range(coved: Coved, busybox_tar: Path) -> None:
    """A unified export resumes as LXD's does (``Range: bytes=N-`` → 206), so
    a cove pulling from cove goes on where it stopped."""
    data = busybox_tar.read_bytes()
    fp = hashlib.sha256(data).hexdigest()
    url = f"/1.0/images/{fp}/export"
    r = coved.api.request("GET", url, headers={"Range": "bytes=1000-"})
    assert r.status == 206 and r.body == data[1000:], (r.status, len(r.body))
    assert r.headers["content-range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    assert coved.api.request("GET", url, headers={"Range": f"bytes={len(data)}-"}).status == 416
    r = coved.api.request("GET", url, headers={"Range": "bytes=0-10"})  # another form: all
    assert r.status == 200 and r.body == data
