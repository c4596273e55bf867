"""Images from a real OCI registry through coved: ``POST /1.0/images``
with ``source {type: image, mode: pull, protocol: oci, ...}``, ``POST
/1.0/instances`` with an OCI source (raw REST and pylxd), the image cached
by its manifest digest (a second launch downloads nothing), a second image
on the same base fetching only its new layer, an image pushed back to the
registry and pulled again; hostile registries (a fake one) refused with
nothing left behind."""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from covetest import Api, Coved, mkroot
from ociregistry import PASSWORD, USER, LayoutBuilder, RealRegistry, busybox_files

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from fakeregistry import Registry as FakeRegistry
from fakeregistry import Server, digest, layer, make_image

SECRET = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@pytest.fixture(scope="module")
def registry(oci_registry: RealRegistry) -> Iterator[tuple[RealRegistry, dict[str, str]]]:
    d = mkroot("registry")
    reg = oci_registry
    b = LayoutBuilder(d / "layout")
    base = b.layer(busybox_files())
    conf = b.layer({"etc/app.conf": b"from-layer-2\n"})
    top = b.layer({"srv": None, "srv/hello": b"zstd top\n"}, zstd=True)
    b.tag(b.image([base, conf, top], cmd=["/bin/sh", "-c", "sleep 1000"]), "app")
    # its own top layer also deletes a file of the shared one (an OCI whiteout)
    b.tag(b.image([base, conf, b.layer({"srv": None, "srv/other": b"2\n", "etc": None,
                                        "etc/.wh.app.conf": b""})],
                  cmd=["/bin/sh", "-c", "sleep 1000"]), "other")
    reg.skopeo_push(b.root, "app", "covetest/launch-app:1", all_=False)
    reg.skopeo_push(b.root, "other", "covetest/launch-other:1", all_=False)
    yield reg, {"base": base[0]["digest"], "conf": conf[0]["digest"]}
    shutil.rmtree(d, ignore_errors=True)


def _source(reg: RealRegistry, alias: str) -> dict[str, str]:
    return {"type": "image", "protocol": "oci", "server": reg.url, "alias": alias,
            "certificate": reg.ca.read_text(), "secret": SECRET}


def _blobs(root: Path) -> set[str]:
    d = root / "registry" / "blobs" / "sha256"
    return {f"sha256:{p.name}" for p in d.iterdir()} if d.exists() else set()


def test_pull_launch_cache_share_push(registry: tuple[RealRegistry, dict[str, str]],
                                      make_coved: Callable[..., Coved]) -> None:
    reg, dig = registry
    d = make_coved("oci")
    api = Api(str(d.socket))
    ext = api.sync("GET", "/1.0")["api_extensions"]
    assert "instance_oci" in ext

    # pull as an image, with an alias (LXD's mode: pull)
    op = api.run("POST", "/1.0/images", {
        "source": {**_source(reg, "covetest/launch-app:1"), "mode": "pull"},
        "aliases": [{"name": "app"}]}, timeout=120)
    fp = op["metadata"]["fingerprint"]
    img = api.sync("GET", f"/1.0/images/{fp}")
    assert [a["name"] for a in img["aliases"]] == ["app"]
    assert img["filename"] == f"{reg.url}/covetest/launch-app:1"
    assert img["properties"]["description"] == f"{reg.host}/covetest/launch-app:1"
    assert not _blobs(d.root) & {dig["base"], dig["conf"]}  # unpacked, then dropped
    assert img["cached"] is False  # asked for: kept until deleted
    assert {k: img["update_source"][k] for k in ("server", "protocol", "alias")} == {
        "server": reg.url, "protocol": "oci", "alias": "covetest/launch-app:1"}

    # launch from the registry: found here by manifest digest, nothing downloaded
    api.made.append("covetest-oci1")
    op = api.run("POST", "/1.0/instances", {
        "name": "covetest-oci1", "source": _source(reg, "covetest/launch-app:1"),
        "start": True},
        timeout=120)
    assert not any(k in op["metadata"] for k in ("download_progress",
                                                  "unpacking_layers_progress")), op
    code, out, _ = api.exec("covetest-oci1", ["/bin/busybox", "cat", "/etc/app.conf", "/srv/hello"])
    assert (code, out) == (0, b"from-layer-2\nzstd top\n")
    assert len(api.sync("GET", "/1.0/images")) == 1

    # a second image on the same base: only its own layer (and config) travel
    op = api.run("POST", "/1.0/images", {"source": _source(reg, "covetest/launch-other:1")},
                 timeout=120)
    assert op["metadata"]["progress"]["text"].startswith("layer 1 of 1 new (3 in the image)")
    assert 0 < op["metadata"]["fetched_bytes"] < 2000, op["metadata"]  # config + one layer

    # pylxd, as Ansible's mode: pull would, with the OCI source
    import pylxd
    client = pylxd.Client(endpoint="http+unix://" + urllib.parse.quote(str(d.socket), safe=""))
    api.made.append("covetest-oci2")
    inst = client.instances.create({"name": "covetest-oci2",
                                    "source": _source(reg, "covetest/launch-other:1")},
                                   wait=True)
    inst.start(wait=True)
    code, out, _ = api.exec("covetest-oci2", ["/bin/busybox", "cat", "/srv/other"])
    assert (code, out) == (0, b"2\n")
    code, _, _ = api.exec("covetest-oci2", ["/bin/busybox", "test", "-e", "/etc/app.conf"])
    assert code == 1  # whited out by its top layer; covetest-oci1 still has it
    code, _, _ = api.exec("covetest-oci1", ["/bin/busybox", "test", "-e", "/etc/app.conf"])
    assert code == 0

    # push the first image back to another repository, then pull that
    op = api.run("POST", f"/1.0/images/{fp}/push", {
        "target": {"server": reg.url, "alias": "covetest/launch-pushed:1",
                   "certificate": reg.ca.read_text(), "secret": SECRET}}, timeout=120)
    raw = reg.skopeo("inspect", "--raw", "--creds", f"{USER}:{PASSWORD}", "--cert-dir",
                     str(reg.cert_dir), f"docker://{reg.host}/covetest/launch-pushed:1")
    assert len(json.loads(raw)["layers"]) == 3
    op = api.run("POST", "/1.0/images", {"source": _source(reg, "covetest/launch-pushed:1"),
                                         "aliases": [{"name": "pushed"}]}, timeout=120)
    api.made.append("covetest-oci3")
    api.run("POST", "/1.0/instances", {"name": "covetest-oci3", "start": True,
                                       "source": {"type": "image", "alias": "pushed"}},
            timeout=120)
    code, out, _ = api.exec("covetest-oci3", ["/bin/busybox", "cat", "/srv/hello"])
    assert (code, out) == (0, b"zstd top\n")

    # a published instance (its upper layer: a new file, a whiteout) pushed and pulled back
    api.exec("covetest-oci1", ["/bin/busybox", "sh", "-c",
                               "echo mine > /srv/mine && /bin/busybox rm /etc/app.conf"])
    op = api.run("POST", "/1.0/images", {"source": {"type": "instance",
                                                    "name": "covetest-oci1"}}, timeout=120)
    published = op["metadata"]["fingerprint"]
    api.run("POST", f"/1.0/images/{published}/push", {
        "target": {"server": reg.url, "alias": "covetest/launch-published:1",
                   "certificate": reg.ca.read_text(), "secret": SECRET}}, timeout=120)
    raw = reg.skopeo("inspect", "--raw", "--creds", f"{USER}:{PASSWORD}", "--cert-dir",
                     str(reg.cert_dir), f"docker://{reg.host}/covetest/launch-published:1")
    assert len(json.loads(raw)["layers"]) == 4  # the image's three and the upper layer
    api.made.append("covetest-oci5")
    api.run("POST", "/1.0/instances", {
        "name": "covetest-oci5", "source": _source(reg, "covetest/launch-published:1"),
        "start": True}, timeout=120)
    code, out, _ = api.exec("covetest-oci5", ["/bin/busybox", "cat", "/srv/mine", "/srv/hello"])
    assert (code, out) == (0, b"mine\nzstd top\n")
    code, _, _ = api.exec("covetest-oci5", ["/bin/busybox", "test", "-e", "/etc/app.conf"])
    assert code == 1  # the upper layer's whiteout went as .wh.app.conf and came back
    # pulled only to create an instance: LXD's cached image, which the cache expiry removes
    by_alias = {i["update_source"]["alias"]: i for i in api.sync("GET", "/1.0/images?recursion=1")
                if i.get("update_source")}
    assert by_alias["covetest/launch-published:1"]["cached"] is True
    assert "secret" not in json.dumps(by_alias) and SECRET not in json.dumps(by_alias)

    # the CLI: a remote with the accepted certificate and an auth file
    env = {**d.cli_env(), "XDG_CONFIG_HOME": str(d.root / "xdg")}
    auth = d.root / "auth.json"
    auth.write_text(json.dumps({"auths": {reg.host: {"auth": SECRET}}}))

    def cove(*args: str) -> str:
        p = subprocess.run([sys.executable, "-m", "cove.cli.main", *args], env=env,
                           capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL, check=False)
        assert p.returncode == 0 and "Traceback" not in p.stderr, (args, p.stderr)
        return p.stdout

    cove("remote", "add", "hub", reg.url, "--protocol=oci", "--auth-file", str(auth),
         "--accept-certificate")
    out = cove("image", "pull", "hub:covetest/launch-app:1", "--alias", "cli-app")
    assert "Image pulled with fingerprint: " + fp in out
    api.made.append("covetest-oci4")
    cove("launch", "hub:covetest/launch-app:1", "covetest-oci4")
    assert api.instance("covetest-oci4")["status"] == "Running"
    assert "Image pushed with digest: sha256:" in cove("image", "push", "cli-app",
                                                       "hub:covetest/launch-clipush:1")
    listing = cove("image", "list")  # where each came from, as its description
    assert "cli-app" in listing and f"{reg.host}/covetest/launch-app:1" in listing
    for name in api.made:
        api.remove(name)


def test_bad_sources_and_hostile_registries(make_coved: Callable[..., Coved]) -> None:
    """Bad sources: a 400 naming the field before anything is made. Hostile
    registries (a fake): the pull fails and nothing is kept."""
    d = make_coved("ocibad")
    api = Api(str(d.socket))
    cases = [({"type": "image", "protocol": "oci", "alias": "a:1"}, "source.server"),
             ({"type": "image", "protocol": "oci", "server": "https://127.0.0.1:1"},
              "source.alias"),
             ({"type": "image", "protocol": "oci", "server": "https://127.0.0.1:1",
               "alias": "Bad:ref"}, "source.alias"),
             ({"type": "image", "protocol": "oci", "server": "http://192.0.2.1",
               "alias": "a:1"}, "loopback"),
             ({"type": "image", "protocol": "oci", "server": "https://127.0.0.1:1",
               "alias": "a:1", "secret": "not base64!"}, "source.secret")]
    for src, word in cases:
        r = api.request("POST", "/1.0/instances", {"name": "covetest-x", "source": src})
        assert r.status == 400 and word in r.json["error"], (src, r.body)
        r = api.request("POST", "/1.0/images", {"source": src})
        assert r.status == 400 and word in r.json["error"], (src, r.body)
    assert api.sync("GET", "/1.0/instances") == []

    for hostile in ("digest", "oversize", "redirect"):
        fake = FakeRegistry()
        big = layer({"bin/x": b"y" * 5000})
        fake.add("evil", "1", make_image([big]))
        srv = Server(fake)
        try:
            if hostile == "digest":
                fake.wrong_digest_header = True
                word = "does not match its digest"
            elif hostile == "oversize":
                fake.extra_bytes[digest(big)] = b"\0" * (4 << 20)
                word = "larger than"
            else:
                fake.redirect_blobs = f"http://127.0.0.2:{fake.port}/v2/evil"
                word = "only https targets"
            src = {"type": "image", "protocol": "oci", "server": srv.url, "alias": "evil:1"}
            op = api.wait(api.request("POST", "/1.0/images", {"source": src}), 60)
            assert op["status"] == "Failure" and word in op["err"], (hostile, op)
        finally:
            srv.close()
        assert api.sync("GET", "/1.0/images") == []
        assert digest(big) not in _blobs(d.root)
        ingest = d.root / "registry" / "ingest"
        assert not ingest.exists() or not list(ingest.iterdir())
        layers = d.root / "images" / "layers"
        assert not layers.exists() or not [p for p in layers.iterdir()
                                           if not p.name.startswith(".")]
    _cut_pull_resumes(api, d)
    _bomb_is_capped(d, api)


def _cut_pull_resumes(api: Api, d: Coved) -> None:
    """A pull whose connection drops half-way fails; the next one fetches
    only the rest (``Range``) and the finished blobs not at all."""
    fake = FakeRegistry()
    first, second = layer({"a": b"1"}), layer({"b": os.urandom(300_000)})
    fake.add("cut", "1", make_image([first, second]))
    fake.cut_after[digest(second)] = 100_000
    srv = Server(fake)
    try:
        src = {"type": "image", "protocol": "oci", "server": srv.url, "alias": "cut:1"}
        op = api.wait(api.request("POST", "/1.0/images", {"source": src}), 60)
        assert op["status"] == "Failure" and "stopped at" in op["err"], op
        partial = d.root / "registry" / "ingest" / digest(second).replace(":", "-")
        assert partial.stat().st_size == 100_000
        fake.requests.clear()
        op = api.wait(api.request("POST", "/1.0/images", {"source": src,
                                                          "aliases": [{"name": "cut"}]}), 60)
    finally:
        srv.close()
    assert op["status"] == "Success", op
    assert op["metadata"]["fetched_bytes"] == len(second) - 100_000
    gets = [(p, rng) for m, p, rng in fake.requests if m == "GET" and "/blobs/" in p]
    assert gets == [(f"/v2/cut/blobs/{digest(second)}", "bytes=100000-")], gets
    api.run("DELETE", f"/1.0/images/{op['metadata']['fingerprint']}")


def _bomb_is_capped(d: Coved, api: Api) -> None:
    """A 20 GiB layer of zeros (20 MiB of gzip members) stops at the unpack
    cap (``cove.images.max_size``; by default 90% of the free space)."""
    api.sync("PATCH", "/1.0", {"config": {"cove.images.max_size": "100MiB"}})
    head = tarfile.TarInfo("zero")
    head.size = 20 << 30
    one = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    blob = gzip.compress(head.tobuf(format=tarfile.GNU_FORMAT)) + one * 320
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers",
                                    "diff_ids": ["sha256:" + "0" * 64]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(blob), "size": len(blob)}]}).encode()
    fake = FakeRegistry()
    fake.blobs = {digest(config): config, digest(blob): blob}
    fake.manifests["bomb:1"] = ("application/vnd.oci.image.manifest.v1+json", manifest)
    srv = Server(fake)
    try:
        src = {"type": "image", "protocol": "oci", "server": srv.url, "alias": "bomb:1"}
        op = api.wait(api.request("POST", "/1.0/images", {"source": src}), 120)
    finally:
        srv.close()
    assert op["status"] == "Failure" and "cove.images.max_size" in op["err"], op
    assert api.sync("GET", "/1.0/images") == []
    assert digest(blob) not in _blobs(d.root)
    layers = d.root / "images" / "layers"
    assert not layers.exists() or not [p for p in layers.iterdir()
                                       if not p.name.startswith(".")]


def test_local_driver_creates_from_a_registry() -> None:
    """The in-process driver takes an OCI source as coved does (a plain-http
    registry on loopback: the insecure case)."""
    from covetest import destroy_root

    from cove.client.drivers.local import LocalDriver

    fake = FakeRegistry()
    fake.add("loc", "1", make_image([layer({"etc/hello": b"local\n"})]))
    srv = Server(fake)
    root = mkroot("ocilocal")
    driver = LocalDriver(root)
    try:
        driver.create_container("covetest-ocil", alias="loc:1", server=srv.url,
                                protocol="oci", autostart=False)
        assert driver.container_status("covetest-ocil") == "stopped"
        assert [len(i.aliases) for i in driver.images()] == [0]
        driver.delete_container("covetest-ocil")
    finally:
        driver.close()
        srv.close()
        assert destroy_root(root) == []
