"""An instance's own metadata.yaml and templates (LXD's
``/1.0/instances/NAME/metadata`` and ``.../metadata/templates?path=``),
driven with ``lxc config metadata`` / ``lxc config template`` against the
shared coved: read from the image, edited per instance (the image and its
other instances untouched), rendered at the next start from the
instance's copy, carried by a copy; hostile template names and rules
refused with nothing written."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from covetest import Api, Coved, mkroot, new_name, rand
from templated_image import RULES, TEMPLATES, templated_image

LXC = shutil.which("lxc")
pytestmark = pytest.mark.skipif(LXC is None, reason="lxc is not installed")


@pytest.fixture(scope="module")
def image(coved: Coved, busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[str]:
    alias = f"covetest-meta-{rand()}"
    tar = templated_image(busybox_tar, tmp_path_factory.mktemp("meta") / "meta.tar.gz",
                          RULES, TEMPLATES)
    fp = coved.api.import_image(tar, alias)
    yield alias
    coved.api.request("DELETE", f"/1.0/images/{fp}?wait=60", timeout=90)


@pytest.fixture
def lxc(coved: Coved) -> Iterator[Callable[..., str]]:
    home = mkroot("metahome")
    (home / "lxdconf").mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "LXD_CONF": str(home / "lxdconf"), "LANG": "C.UTF-8"}

    def run(*args: str, input: str = "") -> str:
        p = subprocess.run([str(LXC), *args], env=env, input=input.encode(),
                           capture_output=True, timeout=60, check=False)
        assert p.returncode == 0, f"lxc {' '.join(args)}: {p.stderr.decode(errors='replace')}"
        return p.stdout.decode()

    run("remote", "add", "cv", f"unix://{coved.socket}")
    try:
        yield run
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _file(api: Api, name: str, path: str) -> str:
    r = api.file_get(name, path)
    assert r.status == 200, f"{path}: HTTP {r.status} {r.body[:200]!r}"
    return r.body.decode()


def test_metadata_and_templates_per_instance(coved: Coved, api: Api, image: str,
                                            lxc: Callable[..., str]) -> None:
    c1, c2, other = new_name("meta"), new_name("meta"), new_name("meta")
    api.create(c1, image=image, config={"cove.cmd": "sleep 1000"})
    api.create(other, image=image, config={"cove.cmd": "sleep 1000"})
    base = f"/1.0/instances/{c1}/metadata"

    # read: the image's, as LXD's ImageMetadata (every template field)
    meta = api.sync("GET", base)
    assert set(meta) == {"architecture", "creation_date", "expiry_date", "properties",
                         "templates"}
    assert meta["templates"]["/etc/motd"] == {"when": ["create"], "create_only": True,
                                              "template": "motd.tpl",
                                              "properties": {"greeting": "hello"}}
    assert set(meta["templates"]) == set(RULES)
    # (lxc, a Go client, shows a null map as {})
    assert yaml.safe_load(lxc("config", "metadata", "show", f"cv:{c1}"))["templates"] \
        == {k: {**v, "properties": v["properties"] or {}} for k, v in meta["templates"].items()}
    listed = lxc("config", "template", "list", f"cv:{c1}", "--format", "csv").split()
    assert listed == sorted(TEMPLATES)
    assert lxc("config", "template", "show", f"cv:{c1}", "hostname.tpl") \
        == TEMPLATES["hostname.tpl"]

    # edited: a template changed, one added with its rule, one deleted
    lxc("config", "template", "edit", f"cv:{c1}", "hostname.tpl",
        input="edited-{{ instance.name }}\n")
    lxc("config", "template", "create", f"cv:{c1}", "extra.tpl")
    lxc("config", "template", "edit", f"cv:{c1}", "extra.tpl", input="extra {{ trigger }}\n")
    lxc("config", "template", "delete", f"cv:{c1}", "copied.tpl")
    rules = dict(meta["templates"])
    rules["/etc/covetest-extra"] = {"when": ["create"], "template": "extra.tpl"}
    del rules["/var/lib/covetest/copied"]
    lxc("config", "metadata", "edit", f"cv:{c1}",
        input=yaml.safe_dump({**meta, "templates": rules}))
    assert set(api.sync("GET", base)["templates"]) == set(rules)
    assert "copied.tpl" not in api.sync("GET", base + "/templates")

    # hostile names and rules: refused, nothing written
    before = api.sync("GET", base)
    for path in ("../escape", "a/b", "..", "", "x\\y"):
        r = api.request("POST", f"{base}/templates?path={path}", b"x")
        assert r.status == 400, (path, r.status)
        assert api.request("DELETE", f"{base}/templates?path={path}").status == 400
    assert api.request("GET", f"{base}/templates?path=../metadata.yaml").status == 400
    bad = {**before, "templates": {"/etc/x": {"when": ["create"], "template": "../../x"}}}
    r = api.request("PUT", base, bad)
    assert r.status == 400 and "'..' in the path" in r.error
    r = api.request("PUT", base, {**before, "templates": {"/../etc/x": {"template": "a"}}})
    assert r.status == 400
    assert api.request("PUT", base, {"creation_date": "x"}).status == 400
    assert api.sync("GET", base) == before
    assert api.request("DELETE", f"{base}/templates?path=nothere.tpl").status == 404
    assert api.request("GET", f"{base}/templates?path=nothere.tpl").status == 404
    d = coved.root / "instances" / c1
    assert not (d.parent / "escape").exists() and not (d / "escape").exists()

    # the first start renders the instance's copy; the image and its other
    # instance are untouched
    api.action(c1, "start")
    assert _file(api, c1, "/etc/hostname") == f"edited-{c1}\n"
    assert _file(api, c1, "/etc/covetest-extra") == "extra create\n"
    api.action(c1, "stop", force=True)
    assert api.sync("GET", f"/1.0/instances/{other}/metadata/templates") == sorted(TEMPLATES)
    api.action(other, "start")
    assert _file(api, other, "/etc/hostname") == f"{other}\n"
    api.action(other, "stop", force=True)

    # a copy carries them
    api.made.append(c2)
    api.run("POST", "/1.0/instances", {"name": c2, "source": {"type": "copy", "source": c1}})
    assert api.sync("GET", f"/1.0/instances/{c2}/metadata")["templates"] == \
        api.sync("GET", base)["templates"]
    assert lxc("config", "template", "show", f"cv:{c2}", "hostname.tpl") \
        == "edited-{{ instance.name }}\n"
    api.action(c2, "start")
    assert _file(api, c2, "/etc/hostname") == f"edited-{c2}\n"
    api.action(c2, "stop", force=True)

    # published: the image has the instance's metadata and templates (as LXD's)
    op = api.run("POST", "/1.0/images", {"source": {"type": "instance", "name": c1}},
                 timeout=120)
    fp = op["metadata"]["fingerprint"]
    try:
        c3 = new_name("meta")
        api.made.append(c3)
        api.run("POST", "/1.0/instances", {"name": c3, "source": {"type": "image",
                                                                  "fingerprint": fp}})
        assert set(api.sync("GET", f"/1.0/instances/{c3}/metadata")["templates"]) == set(rules)
        assert api.request("GET", f"/1.0/instances/{c3}/metadata/templates?path=hostname.tpl"
                           ).body == b"edited-{{ instance.name }}\n"
        api.remove(c3)
    finally:
        api.request("DELETE", f"/1.0/images/{fp}?wait=60", timeout=90)
    for n in (c1, c2, other):
        api.remove(n)


def _member(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        f = tf.extractfile(name)
        assert f is not None, name
        return f.read()


def test_backup_carries_metadata_and_templates(api: Api, image: str,
                                               lxc: Callable[..., str]) -> None:
    name, imported = new_name("metabk"), new_name("metabk")
    api.create(name, image=image, config={"cove.cmd": "sleep 1000"})
    lxc("config", "template", "edit", f"cv:{name}", "started.tpl",
        input="edited start {{ instance.name }}\n")
    rules = api.sync("GET", f"/1.0/instances/{name}/metadata")["templates"]
    api.run("POST", f"/1.0/instances/{name}/backups", {"name": "b0"}, timeout=120)
    r = api.request("GET", f"/1.0/instances/{name}/backups/b0/export", timeout=120)
    assert r.status == 200
    # LXD's layout: the instance's metadata.yaml and its templates/ beside rootfs/
    assert yaml.safe_load(_member(r.body, "backup/container/metadata.yaml"))["templates"] \
        == rules
    assert _member(r.body, "backup/container/templates/started.tpl") \
        == b"edited start {{ instance.name }}\n"
    assert _member(r.body, "backup/container/templates/hostname.tpl") \
        == TEMPLATES["hostname.tpl"].encode()

    # imported (no image): its templates are the backup's, rendered at start
    api.made.append(imported)
    op = api.wait(api.request("POST", "/1.0/instances", r.body, headers={
        "Content-Type": "application/octet-stream", "X-LXD-name": imported}), timeout=120)
    assert op["status"] == "Success", op
    assert api.sync("GET", f"/1.0/instances/{imported}/metadata")["templates"] == rules
    api.action(imported, "start")
    assert _file(api, imported, "/var/lib/covetest/started") == f"edited start {imported}\n"
    api.action(imported, "stop", force=True)
    api.remove(imported)
    api.remove(name)


def _tpl(api: Api, name: str, path: str = "hostname.tpl") -> bytes:
    r = api.request("GET", f"/1.0/instances/{name}/metadata/templates?path={path}")
    assert r.status == 200, (name, path, r.status)
    return r.body


def _set_tpl(api: Api, name: str, data: bytes, path: str = "hostname.tpl") -> None:
    r = api.request("POST", f"/1.0/instances/{name}/metadata/templates?path={path}", data)
    assert r.status == 200, (name, path, r.status, r.body[:200])


def test_snapshots_keep_metadata_and_templates(coved: Coved, api: Api, image: str,
                                               lxc: Callable[..., str]) -> None:
    # LXD keeps both in the instance's volume: a snapshot holds them, a
    # restore brings them back, a copy or publish of a snapshot uses its own
    c1, c2, c3, c4 = (new_name("metasnap") for _ in range(4))
    image_tpl = TEMPLATES["hostname.tpl"].encode()
    api.create(c1, image=image, config={"cove.cmd": "sleep 1000"})
    lxc("snapshot", f"cv:{c1}", "plain")  # no edits yet: the image's apply
    _set_tpl(api, c1, b"snap1 {{ instance.name }}\n")
    lxc("snapshot", f"cv:{c1}", "edited")
    _set_tpl(api, c1, b"later\n")
    _set_tpl(api, c1, b"x", "later.tpl")

    api.made += [c2, c3]
    api.run("POST", "/1.0/instances", {"name": c2, "source": {"type": "copy",
                                                              "source": f"{c1}/edited"}})
    assert _tpl(api, c2) == b"snap1 {{ instance.name }}\n"
    assert "later.tpl" not in api.sync("GET", f"/1.0/instances/{c2}/metadata/templates")
    api.run("POST", "/1.0/instances", {"name": c3, "source": {"type": "copy",
                                                              "source": f"{c1}/plain"}})
    assert _tpl(api, c3) == image_tpl
    op = api.run("POST", "/1.0/images", {"source": {"type": "snapshot",
                                                    "name": f"{c1}/edited"}}, timeout=120)
    fp = op["metadata"]["fingerprint"]
    try:
        api.made.append(c4)
        api.run("POST", "/1.0/instances", {"name": c4, "source": {"type": "image",
                                                                  "fingerprint": fp}})
        assert _tpl(api, c4) == b"snap1 {{ instance.name }}\n"
    finally:
        api.request("DELETE", f"/1.0/images/{fp}?wait=60", timeout=90)

    lxc("restore", f"cv:{c1}", "edited")
    assert _tpl(api, c1) == b"snap1 {{ instance.name }}\n"
    assert "later.tpl" not in api.sync("GET", f"/1.0/instances/{c1}/metadata/templates")
    lxc("restore", f"cv:{c1}", "plain")
    assert _tpl(api, c1) == image_tpl
    assert not (coved.root / "instances" / c1 / "metadata.yaml").exists()  # the image's again
    for n in (c4, c3, c2, c1):
        api.remove(n)


def test_backups_keep_snapshot_templates_and_increments_restore(api: Api, image: str) -> None:
    name, imported = new_name("metabk"), new_name("metabk")
    api.create(name, image=image, config={"cove.cmd": "sleep 1000"})
    _set_tpl(api, name, b"in snapshot\n")
    api.run("POST", f"/1.0/instances/{name}/snapshots", {"name": "s0"})
    _set_tpl(api, name, b"in instance\n")
    api.run("POST", f"/1.0/instances/{name}/backups", {"name": "b0"}, timeout=120)
    base = api.request("GET", f"/1.0/instances/{name}/backups/b0/export", timeout=120).body
    # LXD's layout: each snapshot's own metadata.yaml and templates/ beside its rootfs/
    assert _member(base, "backup/snapshots/s0/templates/hostname.tpl") == b"in snapshot\n"
    assert _member(base, "backup/container/templates/hostname.tpl") == b"in instance\n"
    _set_tpl(api, name, b"in increment\n")
    api.run("POST", f"/1.0/instances/{name}/backups", {"name": "b1", "cove_since": "b0"},
            timeout=120)
    incr = api.request("GET", f"/1.0/instances/{name}/backups/b1/export", timeout=120).body

    api.made.append(imported)
    for body in (base, incr):  # the base, then the increment onto it
        op = api.wait(api.request("POST", "/1.0/instances", body, headers={
            "Content-Type": "application/octet-stream", "X-LXD-name": imported}), timeout=120)
        assert op["status"] == "Success", op
    assert _tpl(api, imported) == b"in increment\n"
    api.run("PUT", f"/1.0/instances/{imported}", {"restore": "s0"})
    assert _tpl(api, imported) == b"in snapshot\n"
    api.remove(imported)
    api.remove(name)


def test_hosts_template_seen_with_a_nic(api: Api, image: str) -> None:
    # LXD mounts no /etc/hosts: the image's template is what the instance
    # sees; cove's bind-mounted file (for a NIC) keeps it and adds its address
    net = f"covetest{rand(6)}"
    api.sync("POST", "/1.0/networks", {"name": net, "config": {}})
    name, plain = new_name("metanet"), new_name("metanet")
    try:
        for n, img in ((name, image), (plain, "busybox")):
            api.made.append(n)
            op = api.run("POST", "/1.0/instances", {
                "name": n, "source": {"type": "image", "alias": img},
                "config": {"cove.cmd": "sleep 1000"}, "start": True,
                "devices": {"eth0": {"type": "nic", "network": net}}})
            assert op["status"] == "Success", op
        ip = api.state(name)["network"]["eth0"]["addresses"][0]["address"]
        seen = api.exec(name, ["cat", "/etc/hosts"])[1].decode()
        rendered = TEMPLATES["hosts.tpl"].replace("{{ container.name }}", name)
        assert seen.startswith(rendered), seen
        assert f"{ip}\t" in seen and seen.rstrip().endswith(name), seen
        # an image without a hosts template: cove's own file, as before
        seen = api.exec(plain, ["cat", "/etc/hosts"])[1].decode()
        assert seen.startswith("127.0.0.1\tlocalhost\n") and "127.0.1.1" not in seen, seen
        for n in (name, plain):
            api.remove(n)
    finally:
        api.request("DELETE", f"/1.0/networks/{net}")
