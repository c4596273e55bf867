"""coved killed between two steps of a change (failpoints, see
``cove.engine._failpoints``): the next coved leaves the old state or the new
one, never a row without its files or files without their row, and the
instance still works."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from covetest import Coved, assert_no_leaks, new_name, point_of


def _dirs(d: Coved) -> list[str]:
    return sorted(os.listdir(d.root / "instances"))


@pytest.fixture
def daemon(make_coved: Callable[..., Coved], busybox_tar: Path,
           request: pytest.FixtureRequest) -> Coved:
    # started armed at the test's point: its arm() then needs no restart
    d = make_coved("crash", failpoints=point_of(request))
    d.api.import_image(busybox_tar, "busybox")
    return d


@pytest.mark.parametrize("point", ["rename.after-row", "rename.after-dir"])
def test_rename_killed_half_way(daemon: Coved, point: str) -> None:
    old, new = new_name("ren"), new_name("ren")
    daemon.api.create(old)
    daemon.api.file_put(old, "/keep", b"data that must survive\n")
    daemon.arm(point)
    with contextlib.suppress(OSError):  # coved may die before it answers
        daemon.api.request("POST", f"/1.0/instances/{old}", {"name": new})
    daemon.revive()
    # the row had moved before the kill, so the rename completes
    assert daemon.api.names() == [new]
    assert _dirs(daemon) == [new]
    daemon.api.run("PUT", f"/1.0/instances/{new}/state", {"action": "start"})
    r = daemon.api.request("GET", f"/1.0/instances/{new}/files?path=/keep")
    assert r.status == 200 and r.body == b"data that must survive\n"
    daemon.api.remove(new)
    assert_no_leaks(daemon.root, [old, new])


@pytest.mark.parametrize("point", ["delete.after-runtime", "delete.after-row"])
def test_delete_killed_half_way(daemon: Coved, point: str) -> None:
    name = new_name("del")
    daemon.api.launch(name)
    daemon.api.run("PUT", f"/1.0/instances/{name}/state", {"action": "stop", "force": True})
    daemon.arm(point)
    with contextlib.suppress(OSError):  # coved may die before it answers
        r = daemon.api.request("DELETE", f"/1.0/instances/{name}")
        assert r.status == 202, r.body[:300]
    daemon.revive()
    names = daemon.api.names()
    if point == "delete.after-row":
        assert names == [] and _dirs(daemon) == []  # the sweep took the files
    else:  # the old state: the instance, whole, stopped
        assert names == [name] and _dirs(daemon) == [name]
        assert daemon.api.status(name) == "Stopped"
        daemon.api.run("PUT", f"/1.0/instances/{name}/state", {"action": "start"})
        daemon.api.remove(name)
    assert_no_leaks(daemon.root, [name])


@pytest.mark.parametrize("point", ["create.after-dir", "create.after-row"])
def test_create_killed_half_way(daemon: Coved, point: str) -> None:
    name = new_name("new")
    daemon.arm(point)
    with contextlib.suppress(OSError):
        daemon.api.request("POST", "/1.0/instances", {
            "name": name, "source": {"type": "image", "alias": "busybox"}})
    daemon.revive()
    if point == "create.after-dir":  # the old state: nothing
        assert daemon.api.names() == [] and _dirs(daemon) == []
    else:  # the new state: a whole, stopped instance that starts
        assert daemon.api.names() == [name] and _dirs(daemon) == [name]
        daemon.api.made.append(name)
        daemon.api.run("PUT", f"/1.0/instances/{name}/state", {"action": "start"})
        daemon.api.remove(name)
    assert_no_leaks(daemon.root, [name])


def test_image_import_killed_before_it_is_recorded(daemon: Coved, busybox_plain_tar: Path) -> None:
    before = sorted(os.listdir(daemon.root / "images"))
    daemon.arm("image-import.after-layers")
    with contextlib.suppress(OSError):
        daemon.api.request("POST", "/1.0/images", busybox_plain_tar.read_bytes(),
                           headers={"Content-Type": "application/octet-stream"})
    daemon.revive()
    assert sorted(os.listdir(daemon.root / "images")) == before
    assert len(daemon.api.sync("GET", "/1.0/images")) == 1  # the fixture's busybox only
    assert os.listdir(daemon.root / "tmp") == []
