"""A full disk under cove's root: a 507 that says so, an intact database,
nothing half-written left behind, and everything works again once there is
room. The root is a small tmpfs of the test's own."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from covetest import Coved, new_name

NO_SPACE = "No space left on the device holding the cove root"


def _fill(path: Path) -> None:
    """Write zeros to ``path`` until the filesystem refuses."""
    with path.open("wb", buffering=0) as f:
        block = b"\0" * (1 << 20)
        with contextlib.suppress(OSError):
            while True:
                f.write(block)
        with contextlib.suppress(OSError):  # the last partial block
            while True:
                f.write(b"\0" * 4096)


def test_full_disk_is_a_507_and_loses_nothing(make_coved: Callable[..., Coved],
                                              busybox_tar: Path) -> None:
    d = make_coved("full", start=False)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "covetest-full",
                    str(d.root)], check=True)
    try:
        d.start()
        d.api.import_image(busybox_tar, "busybox")
        name = new_name("full")
        d.api.create(name)
        filler = d.root / "covetest-filler"
        _fill(filler)

        r = d.api.request("POST", "/1.0/images", busybox_tar.read_bytes(),
                          headers={"Content-Type": "application/octet-stream"})
        assert r.status == 507, (r.status, r.body[:300])
        assert r.json["error"] == NO_SPACE and r.json["error_code"] == 507
        assert list((d.root / "tmp").iterdir()) == []  # the spooled upload is gone

        r = d.api.request("PATCH", f"/1.0/instances/{name}",
                          {"config": {"user.note": "x" * 200_000}})
        assert r.status in (200, 507), (r.status, r.body[:300])
        if r.status == 507:
            assert r.json["error"] == NO_SPACE
        assert "Internal error" not in d.log_tail(200)

        filler.unlink()
        images_before = sorted(os.listdir(d.root / "images"))
        other = new_name("room")
        d.api.create(other)  # room again: all works
        d.api.remove(other)
        assert d.api.sync("GET", f"/1.0/instances/{name}")["name"] == name
        d.stop()
        d.start()  # the database is intact after a restart
        assert d.api.names() == [name]
        assert sorted(os.listdir(d.root / "images")) == images_before
        d.api.remove(name)
    finally:
        d.stop()
        subprocess.run(["umount", "-l", str(d.root)], check=False)
