"""OCI image layouts (built here in Python, no network) imported with
``cove image import DIR``, launched with ``cove launch`` and pylxd on real
runc containers: layers stored once, whiteouts and opaque directories in
effect, the image config run as Docker runs it."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pylxd
import pytest
from covetest import Api, Coved, mkroot, new_name, wait_until
from ocilayout import LayoutBuilder, busybox_layer, other_goarch, tar_of

from cove.client._oci import pack_layout

# the app traps its stop signal (USR1) and leaves a mark; PID 1 ignores an
# untrapped SIGTERM, so only the mapped StopSignal stops it quickly
APP = ("{ pwd; echo \"$COVETEST_GREETING\"; } > /tmp/app; trap 'echo stopped-by-usr1 > /tmp/mark; exit 0' USR1; "
       "while :; do sleep 1; done")
CONFIG = {
    "Entrypoint": ["/bin/sh", "-c"], "Cmd": [APP],
    "Env": ["PATH=/bin:/usr/bin", "COVETEST_GREETING=hello from oci"],
    "WorkingDir": "/app", "User": "nobody", "StopSignal": "SIGUSR1",
    "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
    "Healthcheck": {"Test": ["CMD-SHELL", "test -d /app"], "Interval": 1_000_000_000,
                    "Retries": 2},
}
# layer 2: files the top layer hides
MIDDLE = tar_of([("d", "data", None), ("f", "data/a", b"a"), ("f", "data/b", b"b"),
                 ("f", "gone", b"x"), ("d", "keep", None), ("f", "keep/k", b"k")])
# layer 3 (zstd): a whiteout, an opaque directory with a new file, the app dir
TOP = tar_of([("f", ".wh.gone", b""), ("d", "data", None), ("f", "data/.wh..wh..opq", b""),
              ("f", "data/c", b"c"), ("d", "app", None), ("f", "app/hello", b"hi\n")])


def _cli(d: Coved, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([sys.executable, "-m", "cove.cli.main", *args], env=d.cli_env(),
                       capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL, check=False)
    if check and p.returncode != 0:
        raise AssertionError(f"cove {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p


def _layers(d: Coved) -> set[str]:
    return set(os.listdir(d.root / "images" / "layers"))


@pytest.fixture(scope="module", autouse=True)
def _own_images(coved: Coved) -> Iterator[None]:
    """The images this module imports are deleted after it, from the shared coved."""
    api = Api(str(coved.socket))
    before = {i["fingerprint"] for i in api.sync("GET", "/1.0/images?recursion=1")}
    yield
    for img in api.sync("GET", "/1.0/images?recursion=1"):
        if img["fingerprint"] not in before:
            api.run("DELETE", f"/1.0/images/{img['fingerprint']}")


@pytest.fixture(scope="module")
def base(workdir: Path, busybox_plain_tar: Path) -> bytes:
    return busybox_layer(busybox_plain_tar)


@pytest.fixture(scope="module")
def app_layout(workdir: Path, base: bytes) -> Path:
    lay = LayoutBuilder(workdir / "oci-app")
    lay.add(lay.image([(base, "gzip"), (MIDDLE, "none"), (TOP, "zstd")], CONFIG)[0],
            "covetest-app")
    return lay.write()


def test_oci_image_runs_as_docker(coved: Coved, api: Api, app_layout: Path) -> None:
    alias = new_name("oci")
    out = _cli(coved, "image", "import", str(app_layout), "--alias", alias).stdout
    fp = out.strip().rsplit(" ", 1)[-1]
    img = api.sync("GET", f"/1.0/images/{fp}")
    assert img["properties"]["exposed_ports"] == "53/udp 8080/tcp"
    assert img["architecture"] == os.uname().machine
    chain = json.loads((coved.root / "images" / fp / "layers.json").read_text())["layers"]
    assert len(chain) == 3 and set(chain) <= _layers(coved)

    name = new_name("oci")
    api.made.append(name)
    _cli(coved, "launch", alias, name)
    conf = api.instance(name)["config"]
    assert conf["cove.cwd"] == "/app" and conf["cove.uid"] == "65534"
    assert conf["cove.halt"] == "10" and conf["cove.health"] == "/bin/sh -c 'test -d /app'"
    assert "Exposed Ports: 53/udp 8080/tcp" in _cli(coved, "info", name).stdout
    # the app is PID 1 (no init), as the image's user, in its workdir, with its env
    assert api.sh(name, "tr '\\0' ' ' < /proc/1/cmdline").decode() == f"/bin/sh -c {APP} "
    wait_until(lambda: api.exec(name, ["cat", "/tmp/app"])[1] == b"/app\nhello from oci\n",
               10, what="the app to start in its workdir, with its env")
    status = api.sh(name, "grep -E '^(Uid|Gid):' /proc/1/status").decode().split()
    assert status[1] == "65534" and status[6] == "65534"
    # the layers, their whiteouts and opaque directory as the container sees them
    assert api.sh(name, "cat /app/hello; ls /data; ls /keep; test -e /gone || echo no-gone"
                  ).decode().split() == ["hi", "c", "k", "no-gone"]
    wait_until(lambda: (api.state(name).get("cove") or {}).get("health", {}).get("status")
               == "healthy", 30, what="the image's healthcheck to pass")
    t0 = time.monotonic()
    api.action(name, "stop", timeout=30)
    assert time.monotonic() - t0 < 15  # the StopSignal, not the timeout's kill
    assert api.file_get(name, "/tmp/mark").body == b"stopped-by-usr1\n"


def test_shared_base_and_arch_index(coved: Coved, api: Api, workdir: Path, base: bytes,
                                    app_layout: Path) -> None:
    """Two images on one base store it once; an index with two
    architectures gives the host's; several images need --ref."""
    first = _cli(coved, "image", "import", str(app_layout)).stdout.strip().rsplit(" ", 1)[-1]
    before = _layers(coved)
    lay = LayoutBuilder(workdir / "oci-two")
    other = tar_of([("f", "other", b"other image\n")])
    mine, _ = lay.image([(base, "docker"), (other, "gzip")], {"Cmd": ["sleep", "1000"]})
    foreign, _ = lay.image([(b"not even a tar" * 10, "gzip")], {"Cmd": ["x"]},
                           arch=other_goarch())
    lay.add_index([mine, foreign], "covetest-multi")
    lay.add(lay.image([(other, "none")], {})[0], "covetest-lonely")
    lay.write()
    p = _cli(coved, "image", "import", str(lay.path), check=False)
    assert p.returncode != 0 and "--ref" in p.stderr
    # through the API, to see the operation's progress: one new layer of two
    with pack_layout(str(lay.path)) as body:
        r = api.request("POST", "/1.0/images", body.read(),
                        headers={"Content-Type": "application/octet-stream",
                                 "X-Cove-Image-Format": "oci-layout",
                                 "X-Cove-OCI-Ref": "covetest-multi"})
    op = api.wait(r)
    assert op["status"] == "Success", op
    fp = op["metadata"]["fingerprint"]
    assert fp == mine["digest"][7:] and fp != first
    assert op["metadata"]["progress"]["text"].startswith("layer 1 of 1 new (2 in the image), ")
    alias = new_name("oci2")
    _cli(coved, "image", "alias", "create", alias, fp)
    assert len(_layers(coved) - before) == 1  # the base layer was not stored again
    name = new_name("oci2")
    api.made.append(name)
    _cli(coved, "launch", alias, name)
    assert api.sh(name, "cat /other").decode() == "other image\n"
    # importing it again is no error and stores nothing
    _cli(coved, "image", "import", str(lay.path), "--ref", "covetest-multi")
    assert len(_layers(coved) - before) == 1
    # the base goes with the last image that lists it, not before
    base_id = json.loads((coved.root / "images" / fp / "layers.json").read_text())["layers"][0]
    api.remove(name)
    api.run("DELETE", f"/1.0/images/{fp}")
    assert base_id in _layers(coved) and len(_layers(coved) - before) == 0
    assert not (coved.root / "images" / fp).exists()
    api.run("DELETE", f"/1.0/images/{first}")
    assert base_id not in _layers(coved)  # test_oci_image_runs_as_docker's instance is gone


def test_pylxd_and_lxc_launch_oci_alias(coved: Coved, api: Api, app_layout: Path) -> None:
    alias = new_name("ocipy")
    _cli(coved, "image", "import", str(app_layout), "--alias", alias)
    client = pylxd.Client(endpoint="http+unix://" + urllib.parse.quote(str(coved.socket),
                                                                       safe=""))
    name = new_name("ocipy")
    api.made.append(name)
    inst = client.instances.create({"name": name, "source": {"type": "image", "alias": alias}},
                                   wait=True)
    inst.start(wait=True)
    res = inst.execute(["cat", "/app/hello"])
    assert (res.exit_code, res.stdout) == (0, "hi\n")
    assert inst.config["cove.halt"] == "10"
    lxc = shutil.which("lxc")
    if lxc is None:
        return
    home = mkroot("ocilxc")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "LXD_CONF": str(home), "LANG": "C.UTF-8"}
    try:
        def run(*args: str) -> str:
            return subprocess.run([lxc, *args], env=env, capture_output=True, text=True,
                                  timeout=60, check=True, stdin=subprocess.DEVNULL).stdout
        run("remote", "add", "covetest-oci", f"unix://{coved.socket}")
        other = new_name("ocilxc")
        api.made.append(other)
        run("launch", f"covetest-oci:{alias}", f"covetest-oci:{other}")
        assert run("exec", f"covetest-oci:{other}", "--", "cat", "/app/hello") == "hi\n"
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_hostile_layer_leaves_nothing(coved: Coved, api: Api, workdir: Path,
                                      base: bytes) -> None:
    lay = LayoutBuilder(workdir / "oci-bad")
    evil = tar_of([("l", "etc2", "/etc"), ("f", "etc2/.wh.passwd", b"")])
    lay.add(lay.image([(base, "gzip"), (evil, "gzip")], {})[0])
    lay.write()
    before = set(os.listdir(coved.root / "images"))
    p = _cli(coved, "image", "import", str(lay.path), check=False)
    assert p.returncode != 0 and "not a directory of the layer" in p.stderr
    assert set(os.listdir(coved.root / "images")) == before


def test_import_killed_leaves_nothing_after_restart(make_coved,  # type: ignore[no-untyped-def]
                                                    app_layout: Path) -> None:
    d = make_coved("ocicrash", failpoints="oci-import.after-layers")  # arm() keeps it running
    # layers no chain lists; "oci-import.after-dir" (an image directory no row
    # names, the sweep's as for tarballs) is left out to keep the suite's time
    for point in ("oci-import.after-layers",):
        d.arm(point)
        p = _cli(d, "image", "import", str(app_layout), check=False)
        assert p.returncode != 0
        d.revive()
        assert sorted(os.listdir(d.root / "images")) == ["layers"], point
        assert not os.listdir(d.root / "images" / "layers"), point
        assert d.api.sync("GET", "/1.0/images") == [], point
        assert os.listdir(d.root / "tmp") == [], point
    _cli(d, "image", "import", str(app_layout))  # and the import works after it
    assert len(os.listdir(d.root / "images" / "layers")) == 3


def test_published_oci_instance_keeps_the_config(coved: Coved, api: Api,
                                                 app_layout: Path) -> None:
    # issue 13: the published image carries the OCI config (oci.json), so an
    # instance of it starts as the first did (workdir, user, stop signal, health)
    alias = new_name("ocipub")
    fp = _cli(coved, "image", "import", str(app_layout), "--alias", alias
              ).stdout.strip().rsplit(" ", 1)[-1]
    src, dst = new_name("ocipub"), new_name("ocipub")
    api.made += [src, dst]
    api.run("POST", "/1.0/instances", {"name": src, "source": {"type": "image",
                                                               "fingerprint": fp}})
    api.file_put(src, "/app/published", b"yes\n")
    op = api.run("POST", "/1.0/images", {"source": {"type": "instance", "name": src}},
                 timeout=120)
    pub = op["metadata"]["fingerprint"]
    keys = ("cove.cwd", "cove.uid", "cove.halt", "cove.health")
    want = {k: api.instance(src)["config"][k] for k in keys}
    api.run("POST", "/1.0/instances", {"name": dst, "source": {"type": "image",
                                                               "fingerprint": pub}})
    assert {k: api.instance(dst)["config"].get(k) for k in keys} == want
    api.action(dst, "start")
    assert api.sh(dst, "tr '\\0' ' ' < /proc/1/cmdline").decode() == f"/bin/sh -c {APP} "
    wait_until(lambda: api.exec(dst, ["cat", "/tmp/app"])[1] == b"/app\nhello from oci\n",
               10, what="the app to start in its workdir, with its env")
    assert api.sh(dst, "cat /app/published; grep -E '^Uid:' /proc/1/status").split()[:2] \
        == [b"yes", b"Uid:"]
    assert api.sh(dst, "grep -E '^Uid:' /proc/1/status").split()[1] == b"65534"
    t0 = time.monotonic()
    api.action(dst, "stop", timeout=30)
    assert time.monotonic() - t0 < 15  # the StopSignal, not the timeout's kill
    # its export (with oci.json) is still the bytes its fingerprint is the hash of
    blob = api.request("GET", f"/1.0/images/{pub}/export", timeout=120).body
    assert hashlib.sha256(blob).hexdigest() == pub
    assert json.loads(_member(blob, "oci.json"))["config"]["cove.cwd"] == "/app"
    for n in (dst, src):
        api.remove(n)
    api.run("DELETE", f"/1.0/images/{pub}")


def _member(blob: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
        f = tf.extractfile(name)
        assert f is not None, name
        return f.read()


def _with_member(blob: bytes, name: str, data: bytes) -> bytes:
    """The tarball ``blob`` with member ``name``'s content replaced by ``data``."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(blob)) as src, \
            tarfile.open(fileobj=out, mode="w:gz") as dst:
        for m in src.getmembers():
            if m.name == name:
                m.size = len(data)
                dst.addfile(m, io.BytesIO(data))
            else:
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    return out.getvalue()


def test_oci_image_export_and_reimport_keep_its_config(coved: Coved, api: Api,
                                                       app_layout: Path, tmp_path: Path) -> None:
    # an LXD tarball has no field for an OCI config: the export carries it as
    # oci.json (LXD ignores it), and a re-import runs the entrypoint again
    fp = _cli(coved, "image", "import", str(app_layout)).stdout.strip().rsplit(" ", 1)[-1]
    blob = api.request("GET", f"/1.0/images/{fp}/export", timeout=120).body
    oci = json.loads(_member(blob, "oci.json"))
    assert oci["cmd"] == ["/bin/sh", "-c", APP] and oci["config"]["cove.uid"] == "65534"
    assert oci["env"]["COVETEST_GREETING"] == "hello from oci"
    (tmp_path / "export.tar").write_bytes(blob)
    alias = new_name("ocire")
    again = api.import_image(tmp_path / "export.tar", alias)
    assert again == hashlib.sha256(blob).hexdigest() != fp
    name = new_name("ocire")
    api.made.append(name)
    api.run("POST", "/1.0/instances", {"name": name, "source": {"type": "image",
                                                                "alias": alias}})
    conf = api.instance(name)["config"]
    assert conf["cove.cwd"] == "/app" and conf["cove.uid"] == "65534"
    assert conf["cove.halt"] == "10"
    api.action(name, "start")
    assert api.sh(name, "tr '\\0' ' ' < /proc/1/cmdline").decode() == f"/bin/sh -c {APP} "
    wait_until(lambda: api.exec(name, ["cat", "/tmp/app"])[1] == b"/app\nhello from oci\n",
               10, what="the re-imported app to start in its workdir, with its env")
    api.remove(name)
    api.run("DELETE", f"/1.0/images/{again}")

    # hostile: an oci.json that would make its instances privileged is refused by name
    evil = json.dumps({**oci, "config": {"security.privileged": "true"}}).encode()
    r = api.request("POST", "/1.0/images", _with_member(blob, "oci.json", evil),
                    headers={"Content-Type": "application/octet-stream"})
    op = api.wait(r) if r.status == 202 else {"status": "Failure", "err": r.error}
    assert op["status"] == "Failure" and "oci.json" in op["err"] \
        and "security.privileged" in op["err"], op
