"""An image's last_used_at, and deleting an image that instances use: the
row goes, the layers stay for the instances and go with the last of them
(or at the next start after a crash); importing it again adopts them."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

from covetest import Coved, new_name

ZERO = "0001-01-01T00:00:00Z"  # LXD's "never"


def _import(d: Coved, tarball: Path, alias: str) -> str:
    return d.api.import_image(tarball, alias)


def test_delete_an_image_in_use_keeps_its_layers_until_the_last_user_goes(
        make_coved: Callable[..., Coved], busybox_tar: Path, workdir: Path) -> None:
    d = make_coved("imgkeep")
    api = d.api
    fp = _import(d, busybox_tar, "bb")
    layers = d.root / "images" / fp
    assert api.sync("GET", f"/1.0/images/{fp}")["last_used_at"] == ZERO
    a, b = new_name("ka"), new_name("kb")
    api.launch(a, image="bb")
    api.create(b, image="bb")
    used = api.sync("GET", f"/1.0/images/{fp}")["last_used_at"]
    assert used != ZERO and used[:2] == "20", used  # set when an instance was made from it

    op = api.run("DELETE", f"/1.0/images/{fp}")
    assert op["status"] == "Success", op
    assert api.request("GET", f"/1.0/images/{fp}").status == 404
    assert api.request("GET", "/1.0/images/aliases/bb").status == 404
    assert (layers / "rootfs").is_dir()
    # the instances keep working, and start again from the kept layers
    assert api.sh(a, "cat /etc/hostname") == b"busybox\n"
    api.action(a, "restart", force=True)
    assert api.status(a) == "Running"
    api.action(b, "start")
    assert api.sh(b, "echo ok") == b"ok\n"

    # importing the same image again adopts the kept layers (no conflict)
    assert _import(d, busybox_tar, "bb2") == fp
    assert api.sync("GET", f"/1.0/images/{fp}")["aliases"][0]["name"] == "bb2"
    api.run("DELETE", f"/1.0/images/{fp}")
    assert (layers / "rootfs").is_dir()

    api.remove(a)
    assert (layers / "rootfs").is_dir()  # b still uses them
    api.remove(b)
    assert not layers.exists()
    assert not [p for p in (d.root / "images").iterdir() if not p.name.startswith(".")]


def test_layers_of_a_deleted_image_go_at_start_after_a_crash(
        make_coved: Callable[..., Coved], busybox_tar: Path) -> None:
    d = make_coved("imgcrash")
    api = d.api
    fp = _import(d, busybox_tar, "bb")
    name = new_name("kc")
    api.create(name, image="bb")
    api.run("DELETE", f"/1.0/images/{fp}")
    layers = d.root / "images" / fp
    assert (layers / "rootfs").is_dir()
    # a crash between deleting the instance's row and collecting the layers:
    # coved is killed, and the row and directory are gone as that delete left them
    d.kill()
    with sqlite3.connect(d.root / "cove.db") as db:
        db.execute("DELETE FROM instances WHERE name=?", (name,))
    shutil.rmtree(d.root / "instances" / name)
    d.start()
    assert not layers.exists()
    assert api.names() == []
