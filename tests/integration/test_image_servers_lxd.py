"""cove and the real LXD as image servers for each other (issue 13).

- cove for LXD: ``lxc image copy COVE:alias LXD:`` and ``lxc launch
  COVE:alias LXD:NAME`` — the real LXD daemon pulls from coved over HTTPS
  without trust (a public image), and with the
  one-time secret ``lxc`` asks coved for (a private one); an untrusted GET of
  the private image without it is a 404.
- LXD for cove: coved pulls (``protocol: lxd``) from the real LXD over
  HTTPS, a public image without trust and a private one with coved's
  certificate trusted by LXD.

The image is the busybox one with a random marker file, so its fingerprint
is this test's alone (the conformance suite keeps plain busybox in the same
LXD). The real LXD gets ``core.https_address`` on a free loopback port for
the test (put back empty after, only if it was empty), a ``covetest-*``
trusted certificate, a ``covetest-*`` dir pool and instance (no profile),
``covetest-*`` images and aliases, all removed.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from covetest import Coved, mkroot, new_name

# The conformance suite's LXD host: installs LXD when missing (apt-get), starts
# it when it is not running and stops it again at the end if it started it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "conformance"))
from lxdhost import SOCKET as LXD_SOCKET
from lxdhost import LxdHost, LxdUnavailable


@pytest.fixture(scope="module")
def real_lxd(busybox_tar: Path) -> Iterator[str]:
    """A running LXD (the ``lxc`` path): started here if it was not running."""
    work = mkroot("sslxdhost")
    host = LxdHost(work, busybox_tar)
    try:
        host.install()
        host.start()
    except LxdUnavailable as e:
        shutil.rmtree(work, ignore_errors=True)
        pytest.skip(f"the real LXD is unavailable: {e}")
    lxc = shutil.which("lxc")
    try:
        if lxc is None:
            pytest.skip("lxd is installed but there is no lxc command")
        yield lxc
    finally:
        host.stop()
        shutil.rmtree(work, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _marked_image(busybox_tar: Path, out: Path) -> Path:
    """busybox with /etc/covetest-marker (random): a fingerprint of its own."""
    marker = secrets.token_hex(8).encode()
    buf = io.BytesIO()
    with tarfile.open(busybox_tar) as src, tarfile.open(fileobj=buf, mode="w") as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        info = tarfile.TarInfo("rootfs/etc/covetest-marker")
        info.size, info.mode = len(marker), 0o644
        dst.addfile(info, io.BytesIO(marker))
    out.write_bytes(gzip.compress(buf.getvalue(), mtime=0))
    return out


class Lxc:
    """``lxc`` with a private config: remotes ``covetest-cove`` (coved over
    HTTPS, lxc's client certificate trusted by coved) and ``covetest-lxd``."""

    def __init__(self, home: Path, lxc: str) -> None:
        self.lxc = lxc
        self.conf = home / "lxdconf"
        (self.conf / "servercerts").mkdir(parents=True)
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                    "LXD_CONF": str(self.conf), "LANG": "C.UTF-8"}

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([self.lxc, *args], env=self.env, capture_output=True, text=True,
                           timeout=180, stdin=subprocess.DEVNULL, check=False)
        assert not check or p.returncode == 0, (args, p.stdout, p.stderr)
        return p

    def setup(self, cove_url: str, cove_cert: str) -> None:
        from cove.host.certs import generate_certificate

        generate_certificate(self.conf / "client.crt", self.conf / "client.key", server=False,
                             common_name="covetest-lxc")
        (self.conf / "servercerts" / "covetest-cove.crt").write_text(cove_cert)
        (self.conf / "config.yml").write_text(
            "default-remote: covetest-lxd\nremotes:\n"
            f"  covetest-cove:\n    addr: {cove_url}\n    protocol: lxd\n    public: false\n"
            f"  covetest-lxd:\n    addr: unix://{LXD_SOCKET}\n    public: false\n")


def _lxd_images(lxc: Lxc) -> dict[str, Any]:
    out = json.loads(lxc("image", "list", "covetest-lxd:", "--format", "json").stdout)
    return {i["fingerprint"]: i for i in out}


def _untrusted_get(url: str, cert: str) -> int:
    ctx = ssl.create_default_context(cadata=cert)
    ctx.check_hostname = False
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=30) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_cove_and_lxd_serve_images_to_each_other(real_lxd: str, make_coved: Any,
                                                 busybox_tar: Path) -> None:
    d: Coved = make_coved("sslxd")
    work = mkroot("sslxd")
    lxc = Lxc(work, real_lxd)
    image = _marked_image(busybox_tar, work / "marked.tar.gz")
    alias = new_name("img")
    port = _free_port()
    d.api.sync("PATCH", "/1.0", {"config": {"core.https_address": f"127.0.0.1:{port}"}})
    cove_url = f"https://127.0.0.1:{port}"
    cove_cert = (d.root / "server.crt").read_text()
    fp = d.api.import_image(image, alias)
    lxc.setup(cove_url, cove_cert)
    d.api.sync("POST", "/1.0/certificates", {"type": "client", "name": "covetest-lxc",
                                              "certificate": (lxc.conf / "client.crt").read_text()})
    lxd_addr = lxc("config", "get", "covetest-lxd:", "core.https_address").stdout.strip()
    lxd_port = _free_port()
    trusted_fp = ""
    pool, inst = new_name("pool"), new_name("inst")
    made_pool = made_inst = False
    try:
        # -- cove for LXD: a public image, the LXD daemon untrusted ----------------------
        d.api.sync("PATCH", f"/1.0/images/{fp}", {"public": True})
        lxc("image", "copy", f"covetest-cove:{alias}", "covetest-lxd:", "--alias", alias)
        assert fp in _lxd_images(lxc)
        lxc("image", "delete", f"covetest-lxd:{fp}")
        # lxc launch cove:IMAGE on the real LXD (a pool of the test's own, no profile)
        lxc("storage", "create", f"covetest-lxd:{pool}", "dir")
        made_pool = True
        lxc("launch", f"covetest-cove:{alias}", f"covetest-lxd:{inst}", "--no-profiles",
            "-s", pool)
        made_inst = True
        state = json.loads(lxc("list", "covetest-lxd:", inst, "--format", "json").stdout)
        assert [(i["name"], i["status"]) for i in state] == [(inst, "Running")], state
        assert _lxd_images(lxc)[fp]["cached"] is True
        lxc("delete", "--force", f"covetest-lxd:{inst}")
        made_inst = False
        lxc("image", "delete", f"covetest-lxd:{fp}")

        # -- a private one: lxc asks coved for a secret, LXD pulls with it ---------------
        d.api.sync("PATCH", f"/1.0/images/{fp}", {"public": False})
        assert _untrusted_get(f"{cove_url}/1.0/images/{fp}", cove_cert) == 404
        assert _untrusted_get(f"{cove_url}/1.0/images/{fp}/export", cove_cert) == 404
        assert _untrusted_get(f"{cove_url}/1.0/images/aliases/{alias}", cove_cert) == 404
        lxc("image", "copy", f"covetest-cove:{alias}", "covetest-lxd:", "--alias", alias,
            "--public")
        assert _lxd_images(lxc)[fp]["public"] is True
        ops = [o for group in d.api.sync("GET", "/1.0/operations?recursion=1").values()
               for o in group if o["class"] == "token"]
        assert [o["status"] for o in ops] == ["Cancelled"], ops  # made, and used up

        # -- LXD for cove: its public image, then a private one with trust ---------------
        if not lxd_addr:
            lxc("config", "set", "covetest-lxd:", "core.https_address", f"127.0.0.1:{lxd_port}")
        lxd_url = f"https://{lxd_addr or f'127.0.0.1:{lxd_port}'}"
        lxd_cert = ssl.get_server_certificate((lxd_url.split("//")[1].rsplit(":", 1)[0],
                                               int(lxd_url.rsplit(":", 1)[1])))
        d.api.run("DELETE", f"/1.0/images/{fp}")
        src = {"type": "image", "mode": "pull", "server": lxd_url, "protocol": "lxd",
               "alias": alias, "certificate": lxd_cert}
        op = d.api.run("POST", "/1.0/images", {"source": src}, timeout=180)
        assert op["metadata"]["fingerprint"] == fp
        img = d.api.sync("GET", f"/1.0/images/{fp}")
        assert img["update_source"]["protocol"] == "lxd"
        assert img["update_source"]["server"] == lxd_url
        d.api.run("DELETE", f"/1.0/images/{fp}")

        subprocess.run([lxc.lxc, "image", "edit", f"covetest-lxd:{fp}"], env=lxc.env,
                       input=json.dumps({"public": False, "auto_update": False,
                                         "properties": {}}),
                       text=True, capture_output=True, check=True, timeout=60)
        r = d.api.request("POST", "/1.0/images", {"source": src})
        failed = d.api.wait(r, 120)
        assert failed["status"] == "Failure" and "not found" in failed["err"].lower(), failed
        trust = lxc.conf / "cove-server.crt"
        trust.write_text(cove_cert)
        lxc("config", "trust", "add", "covetest-lxd:", str(trust))
        from cove.model.trust import cert_der, fingerprint

        trusted_fp = fingerprint(cert_der(cove_cert))
        # the alias given as the fingerprint, as pylxd sends it (LXD tries it as an alias)
        src = {**src, "alias": "", "fingerprint": alias}
        op = d.api.run("POST", "/1.0/images", {"source": src}, timeout=180)
        assert op["metadata"]["fingerprint"] == fp
    finally:
        if made_inst:
            lxc("delete", "--force", f"covetest-lxd:{inst}", check=False)
        if made_pool:
            lxc("storage", "delete", f"covetest-lxd:{pool}", check=False)
        if trusted_fp:
            lxc("config", "trust", "remove", f"covetest-lxd:{trusted_fp}", check=False)
        if not lxd_addr:
            lxc("config", "unset", "covetest-lxd:", "core.https_address", check=False)
        with contextlib.suppress(AssertionError):
            if fp in _lxd_images(lxc):
                lxc("image", "delete", f"covetest-lxd:{fp}", check=False)
        shutil.rmtree(work, ignore_errors=True)
