"""Images from a simplestreams server over HTTPS on loopback (issue 13):
pulled through ``POST /1.0/images`` and ``POST /1.0/instances`` as LXD's
clients send them, launched with ``lxc`` against coved, cached images
expiring, and hostile streams refused with nothing left behind.

One coved for the module (``COVE_IMAGE_TICK`` short, so the cache task
runs every half second) and one HTTPS server with a tree per case.
"""

from __future__ import annotations

import contextlib
import lzma
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from covetest import Coved, assert_no_leaks, mkroot, new_name, wait_until
from imageservers import ARCH, HttpsServer, build_streams, split_image, write_tree


class Streams:
    def __init__(self, server: HttpsServer, fps: dict[str, str], www: Path, arch: str,
                 parts: tuple[bytes, bytes]) -> None:
        self.url, self.cert, self.fps = server.url, server.cert, fps
        self.www, self.arch, self.parts = www, arch, parts

    def source(self, tree: str, **kw: Any) -> dict[str, Any]:
        """LXD's ``source`` of a pull from ``tree`` (as ``lxc launch`` sends it)."""
        return {"type": "image", "mode": "pull", "server": f"{self.url}/{tree}",
                "protocol": "simplestreams", "certificate": self.cert, **kw}


@pytest.fixture(scope="module")
def ss(workdir: Path, busybox_tar: Path) -> Iterator[Streams]:
    top = mkroot("streams")
    arch = ARCH.get(os.uname().machine, os.uname().machine)
    parts = split_image(busybox_tar)
    fps = build_streams(top / "www", parts, arch)
    (top / "certs").mkdir()
    server = HttpsServer(top / "www", top / "certs")
    try:
        yield Streams(server, fps, top / "www", arch, parts)
    finally:
        server.close()
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="module")
def ssd(_session_pool: Any) -> Coved:
    d: Coved = _session_pool.new("ss", start=False)
    d.env = {"COVE_IMAGE_TICK": "0.5"}
    d.start()
    return d


def _images(d: Coved) -> dict[str, dict[str, Any]]:
    return {i["fingerprint"]: i for i in d.api.sync("GET", "/1.0/images?recursion=1")}


def _no_pull_leftovers(d: Coved) -> None:
    assert not [p.name for p in (d.root / "tmp").iterdir() if p.name.startswith("pull-")]
    assert not [p.name for p in (d.root / "images").iterdir() if p.name.startswith(".tmp-")]


def test_pull_launch_and_cache_expiry(ssd: Coved, ss: Streams) -> None:
    api = ssd.api
    fp = ss.fps["good"]
    op = api.run("POST", "/1.0/images", {"source": ss.source("good", alias="busybox"),
                                         "aliases": [{"name": "ssbox"}]}, timeout=120)
    assert op["metadata"]["fingerprint"] == fp
    assert op["metadata"]["progress"]["stage"] in ("Download", "Unpacking image"), op
    img = api.sync("GET", f"/1.0/images/{fp}")
    assert img["cached"] is False
    assert img["update_source"]["server"] == f"{ss.url}/good"
    assert img["update_source"]["protocol"] == "simplestreams"
    assert img["update_source"]["alias"] == "busybox"
    assert [a["name"] for a in img["aliases"]] == ["ssbox"]
    api.run("DELETE", f"/1.0/images/{fp}")

    # lxc launch images:busybox/1.36: the image pulled for the instance, cached
    name = new_name("ss")
    api.made.append(name)
    api.run("POST", "/1.0/instances", {
        "name": name, "source": ss.source("good", alias="busybox/1.36"),
        "config": {"cove.cmd": "sleep 1000"}, "start": True}, timeout=120)
    assert api.status(name) == "Running"
    assert api.sh(name, "echo hi") == b"hi\n"
    img = api.sync("GET", f"/1.0/images/{fp}")
    assert img["cached"] is True and img["auto_update"] is True
    assert img["last_used_at"] != "1970-01-01T00:00:00Z"
    # a second launch finds it here: nothing fetched, the same image
    name2 = new_name("ss")
    api.made.append(name2)
    api.run("POST", "/1.0/instances", {"name": name2, "source": ss.source("good", fingerprint=fp),
                                       "config": {"cove.cmd": "sleep 1000"}})
    assert api.instance(name2)["config"]["volatile.base_image"] == fp
    _no_pull_leftovers(ssd)

    # images.remote_cache_expiry: an unused cached image goes (seconds here)
    api.remove(name)
    api.remove(name2)
    api.sync("PATCH", "/1.0", {"config": {"images.remote_cache_expiry": "0.00002"}})
    try:
        wait_until(lambda: fp not in _images(ssd), 20, 0.25, what="cached image expired")
    finally:
        api.sync("PATCH", "/1.0", {"config": {"images.remote_cache_expiry": ""}})
    assert_no_leaks(ssd.root, [name, name2])


def test_pulled_image_not_cached_stays(ssd: Coved, ss: Streams) -> None:
    """An image asked for (not cached) never expires."""
    api = ssd.api
    fp = ss.fps["good"]
    api.run("POST", "/1.0/images", {"source": ss.source("good", fingerprint=fp[:12])},
            timeout=120)
    api.sync("PATCH", "/1.0", {"config": {"images.remote_cache_expiry": "0.00001"}})
    try:
        time.sleep(2)  # four rounds of the cache task: nothing to wait on, it must not act
        assert fp in _images(ssd)
    finally:
        api.sync("PATCH", "/1.0", {"config": {"images.remote_cache_expiry": ""}})
        api.run("DELETE", f"/1.0/images/{fp}")


@pytest.mark.parametrize(("tree", "why"), [
    ("badsha", "does not match its sha256"),
    ("escape", "outside"),
    ("abs", "outside"),
    ("short", "larger than its declared size"),
    ("huge", "more than the"),
])
def test_hostile_streams(ssd: Coved, ss: Streams, tree: str, why: str) -> None:
    api = ssd.api
    before = set(_images(ssd))
    r = api.request("POST", "/1.0/images", {"source": ss.source(tree, alias="busybox")})
    op = api.wait(r, 120)
    assert op["status"] == "Failure", op
    assert why in op["err"], op["err"]
    assert set(_images(ssd)) == before
    _no_pull_leftovers(ssd)


def test_certificate_pinned(ssd: Coved, ss: Streams, tmp_path: Path) -> None:
    from cove.host.certs import generate_certificate

    other = generate_certificate(tmp_path / "o.crt", tmp_path / "o.key")
    for src, why in ((ss.source("good", alias="busybox", certificate=other), "pinned"),
                     (ss.source("good", alias="busybox", certificate=""), "CERTIFICATE_VERIFY")):
        op = ssd.api.wait(ssd.api.request("POST", "/1.0/images", {"source": src}), 60)
        assert op["status"] == "Failure" and why in op["err"], op


@pytest.mark.parametrize(("field", "value", "why"), [
    ("protocol", "ftp", "Invalid source protocol"),
    ("mode", "push", "Invalid source mode"),
    ("server", "ftp://127.0.0.1/", "Invalid image server"),
    ("server", "http://192.0.2.1/", "loopback only"),
    ("certificate", "not a cert", "certificate"),
])
def test_bad_sources_refused_before_anything(ssd: Coved, ss: Streams, field: str, value: str,
                                             why: str) -> None:
    for path, body in (("/1.0/images", {}), ("/1.0/instances", {"name": new_name("ss")})):
        src = ss.source("good", alias="busybox", **{field: value})
        r = ssd.api.request("POST", path, {**body, "source": src})
        assert r.status == 400 and why in r.error, (path, r.status, r.body)


LXC = shutil.which("lxc")


@pytest.mark.skipif(LXC is None, reason="lxc (Debian package lxd-client) missing")
def test_lxc_launch_from_simplestreams(ssd: Coved, ss: Streams) -> None:
    """``lxc launch SS:busybox cove:NAME``: lxc reads the stream, coved pulls."""
    home = mkroot("lxchome")
    conf = home / "lxdconf"
    (conf / "servercerts").mkdir(parents=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "LXD_CONF": str(conf), "LANG": "C.UTF-8"}

    def lxc(*args: str) -> bytes:
        p = subprocess.run([LXC or "lxc", *args], env=env, capture_output=True, timeout=120,
                           stdin=subprocess.DEVNULL, check=False)
        assert p.returncode == 0, (args, p.stderr)
        return p.stdout

    name = new_name("sslxc")
    try:
        lxc("remote", "add", "covetest-r", f"unix://{ssd.socket}")
        lxc("remote", "add", "covetest-ss", f"{ss.url}/good", "--protocol=simplestreams")
        (conf / "servercerts" / "covetest-ss.crt").write_text(ss.cert)
        ssd.api.made.append(name)
        lxc("launch", "covetest-ss:busybox", f"covetest-r:{name}", "-c", "cove.cmd=sleep 1000")
        assert ssd.api.status(name) == "Running"
        img = _images(ssd)[ss.fps["good"]]
        assert img["cached"] is True
        assert img["update_source"]["protocol"] == "simplestreams"
    finally:
        ssd.api.remove(name)
        shutil.rmtree(home, ignore_errors=True)


def test_cove_cli_copy_and_launch_from_a_remote(ssd: Coved, ss: Streams) -> None:
    """``cove remote add`` (certificate accepted), ``cove image copy REMOTE:IMAGE``
    and ``cove launch REMOTE:IMAGE NAME``."""
    home = mkroot("sscli")
    env = {**ssd.cli_env(), "XDG_CONFIG_HOME": str(home), "HOME": str(home)}

    def cove(*args: str) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([sys.executable, "-m", "cove.cli.main", *args], env=env, text=True,
                           capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
                           check=False)
        assert p.returncode == 0, (args, p.stderr)
        assert "Traceback" not in p.stderr
        return p

    name = new_name("sscli")
    fp = ss.fps["good"]
    try:
        cove("remote", "add", "covetest-ss", f"{ss.url}/good", "--protocol", "simplestreams",
             "--accept-certificate")
        out = cove("image", "copy", "covetest-ss:busybox/1.36", "local:", "--alias", "ssbox3",
                   "--auto-update").stdout
        assert fp in out
        img = ssd.api.sync("GET", f"/1.0/images/{fp}")
        assert img["auto_update"] is True and img["cached"] is False
        assert [a["name"] for a in img["aliases"]] == ["ssbox3"]
        ssd.api.run("DELETE", f"/1.0/images/{fp}")
        ssd.api.made.append(name)
        cove("launch", "covetest-ss:busybox", name, "-c", "cove.cmd=sleep 1000")
        assert ssd.api.status(name) == "Running"
        assert _images(ssd)[fp]["cached"] is True
    finally:
        ssd.api.remove(name)
        with contextlib.suppress(AssertionError):
            ssd.api.run("DELETE", f"/1.0/images/{fp}")
        shutil.rmtree(home, ignore_errors=True)


def test_auto_update_refreshes_from_the_source(ssd: Coved, ss: Streams,
                                               busybox_tar: Path) -> None:
    """An ``auto_update`` image is replaced by the newer build its alias names
    on the server (its aliases moved, the old one deleted), once
    ``images.auto_update_interval`` passed; PUT can turn it off and on."""
    api = ssd.api
    meta, root = ss.parts
    tree = ss.www / "upd"
    fp1 = write_tree(tree, meta, root, ss.arch, serial="20260101_0000")
    src = ss.source("upd", alias="busybox")
    api.run("POST", "/1.0/images", {"source": src, "aliases": [{"name": "updbox"}],
                                    "auto_update": True}, timeout=120)
    api.sync("PATCH", f"/1.0/images/{fp1}", {"auto_update": False})
    assert api.sync("GET", f"/1.0/images/{fp1}")["auto_update"] is False
    api.sync("PATCH", f"/1.0/images/{fp1}", {"auto_update": True})
    # a newer build: the same files compressed otherwise, so another fingerprint
    fp2 = write_tree(tree, meta, lzma.compress(lzma.decompress(root), preset=1), ss.arch,
                     serial="20260201_0000")
    assert fp2 != fp1
    api.sync("PATCH", "/1.0", {"config": {"images.auto_update_interval": "0.0002"}})
    try:
        wait_until(lambda: set(_images(ssd)) >= {fp2} and fp1 not in _images(ssd), 30, 0.25,
                   what="the image refreshed")
    finally:
        api.sync("PATCH", "/1.0", {"config": {"images.auto_update_interval": ""}})
    img = api.sync("GET", f"/1.0/images/{fp2}")
    assert [a["name"] for a in img["aliases"]] == ["updbox"] and img["auto_update"] is True
    api.run("DELETE", f"/1.0/images/{fp2}")
    up = api.import_image(busybox_tar, "covetest-up")  # uploaded: no source to update from
    r = api.request("PATCH", f"/1.0/images/{up}", {"auto_update": True})
    api.run("DELETE", f"/1.0/images/{up}")
    assert r.status == 400 and "needs a source" in r.error, r.body



def test_pylxd_creates_from_a_simplestreams_source(ssd: Coved, ss: Streams) -> None:
    """pylxd (and Ansible's ``mode: pull``) pass LXD's source through as is."""
    import urllib.parse

    import pylxd

    client = pylxd.Client(endpoint="http+unix://" + urllib.parse.quote(str(ssd.socket), safe=""))
    name = new_name("sspy")
    ssd.api.made.append(name)
    try:
        inst = client.instances.create({
            "name": name, "config": {"cove.cmd": "sleep 1000"},
            "source": ss.source("good", alias="busybox")}, wait=True)
        inst.start(wait=True)
        assert inst.execute(["echo", "pylxd"]).stdout == "pylxd\n"
    finally:
        ssd.api.remove(name)
        with contextlib.suppress(AssertionError):  # the image it cached
            ssd.api.run("DELETE", f"/1.0/images/{ss.fps['good']}")


def test_pull_into_a_project_with_its_own_images(ssd: Coved, ss: Streams) -> None:
    """``features.images``: the pulled image is the project's, not default's."""
    api = ssd.api
    project = new_name("ssp")
    fp = ss.fps["good"]
    if fp in _images(ssd):  # cached by an earlier test of the module
        api.run("DELETE", f"/1.0/images/{fp}")
    api.sync("POST", "/1.0/projects", {"name": project, "config": {
        "features.images": "true", "features.profiles": "false"}})
    name = new_name("ssp")
    q = f"?project={project}"
    try:
        op = api.run("POST", f"/1.0/instances{q}", {
            "name": name, "source": ss.source("good", alias="busybox"),
            "config": {"cove.cmd": "sleep 1000"}}, timeout=120)
        assert op["resources"]["instances"] == [f"/1.0/instances/{name}{q}"]
        assert fp in {i["fingerprint"] for i in api.sync("GET", f"/1.0/images{q}&recursion=1")}
        assert fp not in _images(ssd)
    finally:
        with contextlib.suppress(AssertionError):
            api.wait(api.request("DELETE", f"/1.0/instances/{name}{q}"))
        with contextlib.suppress(AssertionError):
            api.wait(api.request("DELETE", f"/1.0/images/{fp}{q}"))
        assert api.request("DELETE", f"/1.0/projects/{project}").status == 200
    assert_no_leaks(ssd.root, [f"{project}_{name}"])
