"""Publish an instance (or a snapshot) as a layered image and export images,
against a real coved: LXD's REST calls, pylxd unchanged, the layers shared
and never copied, whiteouts kept, the export flattened and byte-stable, and
coved killed in the middle of a publish."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pylxd
import pytest
from covetest import Coved, assert_no_leaks, mkroot, new_name, point_of


@pytest.fixture
def daemon(make_coved: Callable[..., Coved], busybox_tar: Path,
           request: pytest.FixtureRequest) -> Coved:
    # started armed at the test's failpoint parameter, if any: arm() then needs no restart
    d = make_coved("pub", failpoints=point_of(request))
    d.api.import_image(busybox_tar, "busybox")
    return d


def _publish(d: Coved, name: str, **body: object) -> str:
    req = {"source": {"type": "instance", "name": name}, **body}
    op = d.api.run("POST", "/1.0/images", req, timeout=120)
    return str(op["metadata"]["fingerprint"])


def _export(d: Coved, fp: str) -> tuple[bytes, dict[str, str]]:
    r = d.api.request("GET", f"/1.0/images/{fp}/export", timeout=120)
    assert r.status == 200, r.body[:300]
    return r.body, r.headers


def _chain(d: Coved, fp: str) -> list[str]:
    doc = json.loads((d.root / "images" / fp / "layers.json").read_text())
    return list(doc["layers"])


def _members(blob: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
        return {m.name: m for m in tf.getmembers()}


def test_publish_layers_launch_and_export(daemon: Coved) -> None:
    api, name = daemon.api, new_name("pub")
    base = api.sync("GET", "/1.0/images/aliases/busybox")["target"]
    api.launch(name)
    # a file added, one deleted from the image (a whiteout), a directory
    # replaced whole (opaque), and a symlink pointing out of the rootfs
    api.sh(name, "echo layered > /added; rm /bin/true; rm -rf /etc; mkdir /etc; "
                 "echo only > /etc/only; ln -s /../../../../etc/shadow /escape")
    fp = _publish(daemon, name, aliases=[{"name": "pubimg", "description": ""}],
                  properties={"description": "mine"})
    assert api.status(name) == "Running"  # thawed after the copy
    img = api.sync("GET", f"/1.0/images/{fp}")
    assert img["properties"]["description"] == "mine"
    assert [a["name"] for a in img["aliases"]] == ["pubimg"]
    # the parent's layer is shared, not copied: the chain names it
    chain = _chain(daemon, fp)
    assert chain[0] == base and len(chain) == 2
    assert (daemon.root / "images" / "layers" / chain[1]).is_dir()
    assert not (daemon.root / "images" / fp / "rootfs").exists()
    # a launch from it is the overlay of both layers
    child = new_name("pub")
    api.launch(child, image="pubimg")
    out = api.sh(child, "cat /added; test -e /bin/true || echo gone; cat /etc/only; "
                        "test -e /etc/group || echo nogroup; readlink /escape")
    assert out == b"layered\ngone\nonly\nnogroup\n/../../../../etc/shadow\n"
    # the export is the flattened tarball whose SHA-256 is the fingerprint
    blob, headers = _export(daemon, fp)
    assert hashlib.sha256(blob).hexdigest() == fp
    assert headers["content-disposition"] == f"inline;filename={fp}.tar"
    assert int(headers["content-length"]) == len(blob) == img["size"]
    members = _members(blob)
    assert "metadata.yaml" in members and "rootfs/added" in members
    assert "rootfs/bin/true" not in members  # the whiteout applied
    assert "rootfs/etc/only" in members and "rootfs/etc/group" not in members
    assert members["rootfs/escape"].issym()
    assert not any(m.ischr() or m.isblk() for m in members.values())
    # byte-stable: a second export is the same bytes
    assert _export(daemon, fp)[0] == blob
    # deleting the parent image keeps its layer for the published one
    api.run("DELETE", f"/1.0/images/{base}")
    api.remove(child)
    assert (daemon.root / "images" / base / "rootfs").is_dir()
    api.action(name, "stop", force=True)
    api.action(name, "start")
    api.remove(name)
    assert (daemon.root / "images" / base / "rootfs").is_dir()  # still the pubimg's
    api.run("DELETE", f"/1.0/images/{fp}")
    assert not (daemon.root / "images" / fp).exists()
    assert not (daemon.root / "images" / base).exists()
    assert os.listdir(daemon.root / "images" / "layers") == []
    assert_no_leaks(daemon.root, [name, child])


def test_imported_image_exports_its_own_bytes(daemon: Coved, busybox_tar: Path) -> None:
    fp = daemon.api.sync("GET", "/1.0/images/aliases/busybox")["target"]
    blob, headers = _export(daemon, fp)
    assert blob == busybox_tar.read_bytes()
    assert hashlib.sha256(blob).hexdigest() == fp
    assert headers["content-disposition"].startswith(f"inline;filename={fp}.tar")


def test_publish_snapshot_and_bad_requests(daemon: Coved) -> None:
    api, name = daemon.api, new_name("pub")
    api.launch(name)
    api.sh(name, "echo one > /v")
    api.run("POST", f"/1.0/instances/{name}/snapshots", {"name": "s0"})
    api.sh(name, "echo two > /v")
    op = api.run("POST", "/1.0/images",
                 {"source": {"type": "snapshot", "name": f"{name}/s0"}})
    fp = op["metadata"]["fingerprint"]
    child = new_name("pub")
    api.launch(child, image=fp)
    assert api.sh(child, "cat /v") == b"one\n"
    for body, word in [
        ({"source": {"type": "snapshot", "name": name}}, "snapshot"),
        ({"source": {"type": "instance", "name": f"{name}/s0"}}, "snapshot"),
        ({"source": {"type": "instance", "name": ""}}, "source.name"),
        ({"source": {"type": "instance", "name": name}, "aliases": "x"}, "aliases"),
        ({"source": {"type": "instance", "name": name}, "properties": []}, "properties"),
    ]:
        r = api.request("POST", "/1.0/images", body)
        assert r.status == 400 and word in r.error, (body, r.status, r.body)
    r = api.request("POST", "/1.0/images", {"source": {"type": "instance", "name": "nope"}})
    assert r.status == 404
    api.remove(child)
    api.remove(name)
    assert_no_leaks(daemon.root, [name, child])


@pytest.mark.parametrize("point", ["publish.after-copy", "publish.after-layer",
                                   "publish.after-image"])
def test_killed_during_publish_leaves_nothing(daemon: Coved, point: str) -> None:
    api, name = daemon.api, new_name("pub")
    api.create(name)
    images_before = api.sync("GET", "/1.0/images")
    daemon.arm(point)
    api.request("POST", "/1.0/images", {"source": {"type": "instance", "name": name}})
    daemon.revive()
    assert api.sync("GET", "/1.0/images") == images_before
    store = daemon.root / "images"
    assert not (store / "layers").exists() or os.listdir(store / "layers") == []
    assert not [n for n in os.listdir(store) if n.startswith(".tmp-")]
    assert len([n for n in os.listdir(store) if len(n) == 64]) == 1
    api.launch(new_name("pub"))  # the store works on
    assert api.status(name) == "Stopped"
    for n in list(api.made):
        api.remove(n)
    assert_no_leaks(daemon.root)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pylxd_lxc_and_cove_cli(daemon: Coved, busybox_tar: Path, tmp_path: Path) -> None:
    api, name = daemon.api, new_name("pub")
    api.launch(name)
    api.sh(name, "echo clients > /c")
    # pylxd: instance.publish(wait=True) and image.export()
    client = pylxd.Client(endpoint="http+unix://" + urllib.parse.quote(str(daemon.socket),
                                                                      safe=""))
    image = client.instances.get(name).publish(wait=True)
    blob = image.export().read()
    assert hashlib.sha256(blob).hexdigest() == image.fingerprint
    # cove publish / cove image export
    env = daemon.cli_env()

    def cove(*args: str) -> str:
        p = subprocess.run([sys.executable, "-m", "cove.cli.main", *args], env=env,
                           capture_output=True, text=True, timeout=120, check=False)
        assert p.returncode == 0, (args, p.stderr)
        return p.stdout

    out = cove("publish", name, "--alias", "covetest-clipub", "description=from the cli",
               "--alias", "covetest-clipub2")
    fp = out.strip().rsplit(" ", 1)[-1]
    img = api.sync("GET", f"/1.0/images/{fp}")
    assert img["properties"]["description"] == "from the cli"
    assert sorted(a["name"] for a in img["aliases"]) == ["covetest-clipub", "covetest-clipub2"]
    cove("image", "export", "covetest-clipub", str(tmp_path))
    assert _sha(tmp_path / f"{fp}.tar") == fp
    # a split import exports split, as two files whose hash is the fingerprint
    meta, rootfs = tmp_path / "meta.tar", tmp_path / "rootfs.tar"
    with tarfile.open(busybox_tar) as src, tarfile.open(meta, "w") as m, \
            tarfile.open(rootfs, "w") as r:
        for member in src.getmembers():
            f = src.extractfile(member) if member.isreg() else None
            if member.name == "metadata.yaml":
                m.addfile(member, f)
            elif member.name.startswith("rootfs/"):
                member.name = member.name[len("rootfs/"):]
                r.addfile(member, f)
    split_fp = hashlib.sha256(meta.read_bytes() + rootfs.read_bytes()).hexdigest()
    body = (b"--B\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"m.tar\""
            b"\r\n\r\n" + meta.read_bytes() + b"\r\n--B\r\nContent-Disposition: form-data; "
            b"name=\"rootfs\"; filename=\"r.tar\"\r\n\r\n" + rootfs.read_bytes() +
            b"\r\n--B--\r\n")
    op = api.run("POST", "/1.0/images", body,
                 headers={"Content-Type": "multipart/form-data; boundary=B"})
    assert op["metadata"]["fingerprint"] == split_fp
    out_dir = tmp_path / "split"
    out_dir.mkdir()
    cove("image", "export", split_fp[:12], str(out_dir))
    names = sorted(os.listdir(out_dir))
    assert names == [f"{split_fp}.tar", f"meta-{split_fp}.tar"]
    assert (out_dir / f"meta-{split_fp}.tar").read_bytes() == meta.read_bytes()
    assert (out_dir / f"{split_fp}.tar").read_bytes() == rootfs.read_bytes()
    # lxc publish / lxc image export (lxc checks the hash of what it gets)
    lxc = shutil.which("lxc")
    if lxc is not None:
        home = mkroot("lxchome")
        (home / "conf").mkdir()
        lenv = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                "LXD_CONF": str(home / "conf"), "LANG": "C.UTF-8"}

        def run(*args: str) -> str:
            p = subprocess.run([lxc, *args], env=lenv, capture_output=True, text=True,
                               timeout=120, check=False)
            assert p.returncode == 0, (args, p.stderr)
            return p.stdout

        try:
            run("remote", "add", "covetest-r", f"unix://{daemon.socket}")
            api.action(name, "stop", force=True)
            # changed since pylxd's publish: the same files and metadata in
            # the same second would be the same image (its fingerprint)
            api.file_put(name, "/by-lxc", b"lxc\n")
            out = run("publish", f"covetest-r:{name}", "covetest-r:", "--alias", "covetest-lxcpub")
            lfp = out.strip().rsplit(" ", 1)[-1]
            (tmp_path / "lxc").mkdir()
            run("image", "export", "covetest-r:covetest-lxcpub", str(tmp_path / "lxc") + "/")
            assert _sha(tmp_path / "lxc" / f"{lfp}.tar") == lfp
            lxc_split = tmp_path / "lxcsplit"
            lxc_split.mkdir()
            run("image", "export", f"covetest-r:{split_fp}", str(lxc_split) + "/")
            assert sorted(os.listdir(lxc_split)) == names
        finally:
            shutil.rmtree(home, ignore_errors=True)
    api.remove(name)
    assert_no_leaks(daemon.root, [name])


def test_hostile_upper_layer(daemon: Coved) -> None:
    """What a container (or anyone with its files) left in its upper layer:
    device nodes, a socket, a huge sparse file, symlinks pointing out,
    overlay xattrs of its own mount. None reaches the host or the image."""
    import socket as sk
    import stat
    import time

    api, name = daemon.api, new_name("pub")
    api.create(name)
    upper = daemon.root / "instances" / name / "upper"
    os.mknod(upper / "sda", 0o600 | stat.S_IFBLK, os.makedev(8, 0))
    os.mknod(upper / "mem", 0o600 | stat.S_IFCHR, os.makedev(1, 1))
    s = sk.socket(sk.AF_UNIX)
    s.bind(str(upper / "sock"))
    s.close()
    with open(upper / "sparse", "wb") as f:
        f.truncate(64 << 30)  # 64 GiB of nothing
        f.seek(1 << 30)
        f.write(b"data")
    os.symlink("/etc/shadow", upper / "shadow")
    os.mkdir(upper / "moved")
    os.setxattr(upper / "moved", "trusted.overlay.redirect", b"/etc")
    started = time.monotonic()
    fp = _publish(daemon, name)
    layer = daemon.root / "images" / "layers" / _chain(daemon, fp)[-1]
    names = set(os.listdir(layer))
    assert {"sda", "mem", "sock"}.isdisjoint(names) and {"sparse", "shadow"} <= names
    assert os.lstat(layer / "sparse").st_blocks * 512 < (64 << 20)  # still sparse
    assert os.readlink(layer / "shadow") == "/etc/shadow"
    assert "trusted.overlay.redirect" not in os.listxattr(layer / "moved")
    blob, _ = _export(daemon, fp)
    assert time.monotonic() - started < 120 and len(blob) < (64 << 20)
    members = _members(blob)
    assert members["rootfs/shadow"].issym() and members["rootfs/shadow"].linkname == "/etc/shadow"
    assert members["rootfs/sparse"].size == 64 << 30  # a sparse member, holes not sent
    assert not any(m.isblk() or m.ischr() for m in members.values())
    api.run("DELETE", f"/1.0/images/{fp}")
    api.remove(name)
    assert_no_leaks(daemon.root, [name])


def test_coved_killed_during_export(daemon: Coved) -> None:
    import socket as sk

    from covetest import mounts_under, wait_until

    api, name = daemon.api, new_name("pub")
    api.create(name)
    with open(daemon.root / "instances" / name / "upper" / "big", "wb") as f:
        f.write(os.urandom(1 << 20) * 64)  # more than the socket buffers hold
    fp = _publish(daemon, name)
    conn = sk.socket(sk.AF_UNIX)
    conn.connect(str(daemon.socket))
    conn.sendall(f"GET /1.0/images/{fp}/export HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    got = 0
    while got < 1 << 20:  # the body is flowing: tar runs, the layers are mounted
        chunk = conn.recv(1 << 16)
        assert chunk
        got += len(chunk)
    store = daemon.root / "images"
    assert [n for n in os.listdir(store) if n.startswith(".tmp-export")]
    daemon.kill()
    conn.close()
    daemon.start()
    assert not [n for n in os.listdir(store) if n.startswith(".tmp-")]
    assert not [m for m in mounts_under(daemon.root) if "/images/" in m]
    wait_until(lambda: not [p for p in os.listdir("/proc") if p.isdigit() and _is_tar_of(p, store)],
               10, what="the export's tar gone")
    blob, _ = _export(daemon, fp)  # and it exports whole afterwards
    assert hashlib.sha256(blob).hexdigest() == fp
    api.remove(name)
    assert_no_leaks(daemon.root, [name])


def _is_tar_of(pid: str, store: Path) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"tar") and any(str(store).encode() in a for a in argv)


def test_publish_in_a_project(daemon: Coved, busybox_tar: Path) -> None:
    """A project with its own images (features.images): the published image
    is that project's, not the default project's, and exports from there."""
    api = daemon.api
    project = "covetest-p" + new_name()[-6:]
    q = f"?project={project}"
    api.sync("POST", "/1.0/projects", {"name": project, "config": {"features.images": "true",
                                                                   "features.profiles": "false"}})
    op = api.run("POST", f"/1.0/images{q}", busybox_tar.read_bytes(),
                 headers={"Content-Type": "application/octet-stream"})
    base = op["metadata"]["fingerprint"]
    name = new_name("pub")
    api.run("POST", f"/1.0/instances{q}", {"name": name,
                                           "source": {"type": "image", "fingerprint": base}})
    op = api.run("POST", f"/1.0/images{q}", {"source": {"type": "instance", "name": name},
                                             "aliases": [{"name": "projimg"}]})
    fp = op["metadata"]["fingerprint"]
    assert api.request("GET", f"/1.0/images/{fp}").status == 404  # not the default's
    assert api.sync("GET", f"/1.0/images/aliases/projimg{q}")["target"] == fp
    r = api.request("GET", f"/1.0/images/{fp}/export{q}")
    assert r.status == 200 and hashlib.sha256(r.body).hexdigest() == fp
    r = api.request("POST", "/1.0/images", {"source": {"type": "instance", "name": name}})
    assert r.status == 404  # the instance is the project's
    api.run("DELETE", f"/1.0/instances/{name}{q}")
    api.run("DELETE", f"/1.0/images/{fp}{q}")
    api.run("DELETE", f"/1.0/images/{base}{q}")
    api.sync("DELETE", f"/1.0/projects/{project}")
    assert not [n for n in os.listdir(daemon.root / "images") if len(n) == 64 and n != _bb(daemon)]
    assert_no_leaks(daemon.root)


def _bb(d: Coved) -> str:
    return str(d.api.sync("GET", "/1.0/images/aliases/busybox")["target"])


def test_killed_while_the_source_is_frozen(daemon: Coved) -> None:
    api, name = daemon.api, new_name("pub")
    api.launch(name)
    daemon.arm("publish.while-frozen")
    api.request("POST", "/1.0/images", {"source": {"type": "instance", "name": name}})
    daemon.revive()
    assert api.status(name) == "Frozen"  # runc's paused container, adopted as it is
    api.action(name, "unfreeze")
    assert api.sh(name, "echo alive") == b"alive\n"
    store = daemon.root / "images"
    assert not [n for n in os.listdir(store) if n.startswith(".tmp-")]
    assert len(api.sync("GET", "/1.0/images")) == 1
    api.remove(name)
    assert_no_leaks(daemon.root, [name])


def test_three_layers_whiteout_then_recreate(daemon: Coved) -> None:
    """A file deleted in the second layer (a whiteout over the image's) and
    made again in the third: each image sees its own view, the export of
    each is flattened from its own chain, and the layers are shared."""
    api = daemon.api
    one, two, three = new_name("pub"), new_name("pub"), new_name("pub")
    api.launch(one)
    api.sh(one, "rm /etc/group; rm -rf /usr; echo 1 > /gen")
    fp1 = _publish(daemon, one)
    api.launch(two, image=fp1)
    api.sh(two, "echo again > /etc/group; mkdir /usr; echo 2 > /gen")
    fp2 = _publish(daemon, two)
    assert _chain(daemon, fp2)[:2] == _chain(daemon, fp1)  # shared, not copied
    api.launch(three, image=fp2)
    assert api.sh(three, "cat /etc/group /gen; ls -A /usr | wc -l") == b"again\n2\n0\n"
    m1 = _members(_export(daemon, fp1)[0])
    m2 = _members(_export(daemon, fp2)[0])
    assert "rootfs/etc/group" not in m1 and "rootfs/usr" not in m1
    assert "rootfs/etc/group" in m2 and m2["rootfs/usr"].isdir()
    assert not [n for n in m2 if n.startswith("rootfs/usr/")]  # opaque over the image's
    for n in (three, two, one):
        api.remove(n)
    api.run("DELETE", f"/1.0/images/{fp1}")  # fp2 still stands on fp1's layer
    assert (daemon.root / "images" / "layers" / _chain(daemon, fp2)[1]).is_dir()
    api.run("DELETE", f"/1.0/images/{fp2}")
    assert os.listdir(daemon.root / "images" / "layers") == []
    assert_no_leaks(daemon.root, [one, two, three])


def test_publish_an_instance_rebuilt_empty(daemon: Coved) -> None:
    """An instance rebuilt from nothing (``source.type=none``) has no image:
    its image is its upper layer alone."""
    api, name = daemon.api, new_name("pubempty")
    api.create(name)
    api.run("POST", f"/1.0/instances/{name}/rebuild", {"source": {"type": "none"}})
    api.file_put(name, "/only", b"alone\n")
    fp = _publish(daemon, name)
    assert len(_chain(daemon, fp)) == 1
    blob, _ = _export(daemon, fp)
    assert hashlib.sha256(blob).hexdigest() == fp
    members = _members(blob)
    assert "rootfs/only" in members and "rootfs/bin/busybox" not in members
    api.remove(name)
    api.run("DELETE", f"/1.0/images/{fp}")
    assert_no_leaks(daemon.root, [name])
