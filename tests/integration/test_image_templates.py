"""LXD image templates against the shared coved: an image built here with
``metadata.yaml`` templates like those of LXD's image servers (hostname,
hosts, a ``create_only`` one, a ``when: copy`` one, a property, a ``start``
one), then launch, restart, copy, rename and publish, checking the files
(through the API and inside the container) and ``volatile.apply_template``
as LXD records it; an image whose template target is a symlink out of the
root; pylxd launching such an image; and coved killed between rendering
and clearing the pending trigger."""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pylxd
import pytest
import yaml
from covetest import Api, Coved, new_name, rand
from templated_image import RULES, TEMPLATES, templated_image

KEY = "volatile.apply_template"


@pytest.fixture(scope="module")
def image(coved: Coved, busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[str]:
    alias = f"covetest-tpl-{rand()}"
    tar = templated_image(busybox_tar, tmp_path_factory.mktemp("tpl") / "tpl.tar.gz",
                          RULES, TEMPLATES)
    fp = coved.api.import_image(tar, alias)
    yield alias
    coved.api.request("DELETE", f"/1.0/images/{fp}?wait=60", timeout=90)


def _file(api: Api, name: str, path: str) -> str:
    r = api.file_get(name, path)
    assert r.status == 200, f"{path}: HTTP {r.status} {r.body[:200]!r}"
    return r.body.decode()


def _config(api: Api, name: str) -> dict[str, str]:
    return dict(api.instance(name)["config"])


def test_launch_restart_copy_rename_publish(api: Api, image: str) -> None:
    c1, c2, c3, c4 = (new_name("tpl") for _ in range(4))
    image_group = None
    api.create(c1, image=image, config={"cove.cmd": "sleep 1000"})
    assert _config(api, c1)[KEY] == "create"
    # applied at the first start, not before (LXD's DeferTemplateApply)
    assert _file(api, c1, "/etc/hostname") == "busybox\n"
    image_group = _file(api, c1, "/etc/group")
    api.action(c1, "start")
    assert KEY not in _config(api, c1)
    assert _file(api, c1, "/etc/hostname") == f"{c1}\n"
    assert _file(api, c1, "/etc/hosts").startswith(f"127.0.1.1\t{c1}\n")
    assert _file(api, c1, "/etc/motd") == f"welcome to {c1}, hello\n"
    assert _file(api, c1, "/etc/group") == image_group  # create_only: it existed
    assert api.file_get(c1, "/var/lib/covetest/copied").status == 404
    assert _file(api, c1, "/var/lib/covetest/started") == "start _unset_\n"
    # what the container itself sees, with LXD's modes
    assert api.sh(c1, "cat /etc/hostname; stat -c '%a %u %g' /etc/motd /var/lib/covetest") \
        .decode() == f"{c1}\n644 0 0\n755 0 0\n"

    # start templates run at every start, the create ones only once
    api.file_put(c1, "/etc/hostname", b"changed\n")
    api.sync("PATCH", f"/1.0/instances/{c1}", {"config": {"user.foo": "bar"}})
    api.action(c1, "restart", force=True)
    assert _file(api, c1, "/var/lib/covetest/started") == "start bar\n"
    assert _file(api, c1, "/etc/hostname") == "changed\n"
    api.action(c1, "stop", force=True)

    # a copy: its own name, the copy rule, create_only files as copied
    api.made.append(c2)
    api.run("POST", "/1.0/instances", {"name": c2, "source": {"type": "copy", "source": c1}})
    assert _config(api, c2)[KEY] == "copy"
    api.action(c2, "start")
    assert _file(api, c2, "/etc/hostname") == f"{c2}\n"
    assert _file(api, c2, "/var/lib/covetest/copied") == f"copied to {c2} (copy)\n"
    assert _file(api, c2, "/etc/motd") == f"welcome to {c1}, hello\n"
    assert _file(api, c2, "/var/lib/covetest/started") == "start bar\n"
    api.action(c2, "stop", force=True)

    # a rename: pending until the next start
    api.made.append(c3)
    api.run("POST", f"/1.0/instances/{c2}", {"name": c3})
    assert _config(api, c3)[KEY] == "rename"
    api.action(c3, "start")
    assert _file(api, c3, "/etc/hostname") == f"{c3}\n"
    assert _file(api, c3, "/var/lib/covetest/copied") == f"copied to {c2} (copy)\n"
    api.action(c3, "stop", force=True)

    # published, the image keeps its templates (and the export carries them)
    op = api.run("POST", "/1.0/images", {"source": {"type": "instance", "name": c1}},
                 timeout=120)
    fp = op["metadata"]["fingerprint"]
    try:
        r = api.request("GET", f"/1.0/images/{fp}/export", timeout=120)
        assert r.status == 200
        with tarfile.open(fileobj=io.BytesIO(r.body)) as tf:
            names = set(tf.getnames())
            meta = yaml.safe_load(tf.extractfile("metadata.yaml").read())  # type: ignore[union-attr]
        assert {"templates/hostname.tpl", "templates/started.tpl"} <= names
        assert meta["templates"] == json.loads(json.dumps(RULES))
        api.made.append(c4)
        api.run("POST", "/1.0/instances", {"name": c4, "source": {"type": "image",
                                                                  "fingerprint": fp},
                                           "config": {"cove.cmd": "sleep 1000"}})
        api.action(c4, "start")
        assert _file(api, c4, "/etc/hostname") == f"{c4}\n"
        api.action(c4, "stop", force=True)
        api.remove(c4)
    finally:
        api.request("DELETE", f"/1.0/images/{fp}?wait=60", timeout=90)


def test_symlinked_target_fails_the_start_and_writes_nothing(
        coved: Coved, api: Api, busybox_tar: Path, tmp_path: Path) -> None:
    host_file = tmp_path / "host-owned"
    tar = templated_image(busybox_tar, tmp_path / "evil.tar.gz",
                 {"/etc/evil": {"when": ["create"], "template": "hostname.tpl"}},
                 {"hostname.tpl": "{{ instance.name }}\n"},
                 symlinks={"/etc/evil": str(host_file)})
    alias = f"covetest-tpl-evil-{rand()}"
    fp = api.import_image(tar, alias)
    try:
        name = new_name("tplevil")
        api.create(name, image=alias, config={"cove.cmd": "sleep 1000"})
        r = api.request("PUT", f"/1.0/instances/{name}/state", {"action": "start"})
        op = api.wait(r)
        assert op["status"] == "Failure"
        assert "Template /etc/evil: /etc/evil is a symbolic link" in op["err"]
        assert api.status(name) == "Stopped"
        assert _config(api, name)[KEY] == "create"  # still pending
        assert not host_file.exists()
        assert not list(tmp_path.glob("**/host-owned"))
    finally:
        api.remove(name)
        api.request("DELETE", f"/1.0/images/{fp}?wait=60", timeout=90)


def test_pylxd_launches_a_templated_image(coved: Coved, api: Api, image: str) -> None:
    client = pylxd.Client(endpoint="http+unix://" + urllib.parse.quote(str(coved.socket),
                                                                         safe=""))
    name = new_name("tplpylxd")
    api.made.append(name)
    inst = client.instances.create({"name": name, "source": {"type": "image", "alias": image},
                                    "config": {"cove.cmd": "sleep 1000"}}, wait=True)
    assert inst.config[KEY] == "create"
    inst.start(wait=True)
    assert KEY not in client.instances.get(name).config  # (sync keeps a read dict)
    assert inst.files.get("/etc/hostname") == f"{name}\n".encode()
    res = inst.execute(["cat", "/etc/motd"])
    assert res.stdout == f"welcome to {name}, hello\n"
    inst.stop(wait=True, force=True)


def test_killed_after_rendering_renders_again(coved: Coved, api: Api, image: str) -> None:
    # the shared coved, restarted armed and revived (the api fixture copes)
    name = new_name("tplcrash")
    api.create(name, image=image, config={"cove.cmd": "sleep 1000"})
    coved.arm("templates.after-apply")
    with contextlib.suppress(OSError):  # coved dies before it answers, or after
        api.request("PUT", f"/1.0/instances/{name}/state", {"action": "start"})
    coved.revive()
    assert api.status(name) == "Stopped"
    assert _config(api, name)[KEY] == "create"  # rendered, but still pending
    assert _file(api, name, "/etc/hostname") == f"{name}\n"
    api.file_put(name, "/etc/hostname", b"edited\n")
    api.action(name, "start")
    assert _file(api, name, "/etc/hostname") == f"{name}\n"  # rendered again, once
    assert KEY not in _config(api, name)
