"""Decompression bombs and cancelled imports: an archive that unpacks past
``cove.images.max_size`` is refused naming the member, a running import is
cancelled with ``DELETE /1.0/operations/ID``, and neither leaves a byte
behind. The bombs are gzip streams made of many gzip members of zeros (a
valid single stream to any reader), so building one costs milliseconds."""

from __future__ import annotations

import gzip
import os
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from covetest import Coved

_ZEROS = 64 << 20


def _bomb(path: Path, size: int, name: str = "rootfs/zero") -> None:
    """A .tar.gz holding ``metadata.yaml`` and one file of ``size`` zeros."""
    meta = b"architecture: x86_64\ncreation_date: 1700000000\n"
    head = tarfile.TarInfo("metadata.yaml")
    head.size = len(meta)
    dirs = tarfile.TarInfo("rootfs")
    dirs.type = tarfile.DIRTYPE
    dirs.mode = 0o755
    big = tarfile.TarInfo(name)
    big.size = size
    one = gzip.compress(b"\0" * _ZEROS, compresslevel=1)
    with path.open("wb") as f:
        pad = (-len(meta)) % 512
        f.write(gzip.compress(head.tobuf(format=tarfile.GNU_FORMAT) + meta + b"\0" * pad
                              + dirs.tobuf(format=tarfile.GNU_FORMAT)
                              + big.tobuf(format=tarfile.GNU_FORMAT)))
        assert size % _ZEROS == 0
        for _ in range(size // _ZEROS):
            f.write(one)
        f.write(gzip.compress(b"\0" * 1024))  # the end-of-archive blocks


def _nothing_left(d: Coved, images_before: list[str]) -> None:
    assert sorted(os.listdir(d.root / "images")) == images_before
    assert os.listdir(d.root / "tmp") == []
    assert d.api.sync("GET", "/1.0/images") == []


def test_bomb_past_the_cap_is_refused(make_coved: Callable[..., Coved], tmp_path: Path) -> None:
    d = make_coved("bomb")
    d.api.sync("PATCH", "/1.0", {"config": {"cove.images.max_size": "100MiB"}})
    bomb = tmp_path / "bomb.tar.gz"
    _bomb(bomb, 4 * _ZEROS)
    assert bomb.stat().st_size < 2 << 20
    before = sorted(os.listdir(d.root / "images"))
    t = time.monotonic()
    r = d.api.request("POST", "/1.0/images", bomb.read_bytes(),
                      headers={"Content-Type": "application/octet-stream"})
    op = d.api.wait(r)
    assert op["status"] == "Failure", op
    assert "rootfs/zero" in op["err"] and "cove.images.max_size" in op["err"], op["err"]
    assert time.monotonic() - t < 10  # refused at the header, not after writing
    _nothing_left(d, before)

    r = d.api.request("PATCH", "/1.0", {"config": {"cove.images.max_size": "lots"}})
    assert r.status == 400 and "cove.images.max_size" in r.json["error"]


def test_import_is_cancellable_and_leaves_nothing(make_coved: Callable[..., Coved],
                                                  tmp_path: Path) -> None:
    d = make_coved("cancel")
    bomb = tmp_path / "big.tar.gz"
    _bomb(bomb, 64 * _ZEROS)  # 4 GiB of zeros: a minute of writing if not stopped
    before = sorted(os.listdir(d.root / "images"))
    r = d.api.request("POST", "/1.0/images", bomb.read_bytes(),
                      headers={"Content-Type": "application/octet-stream"})
    assert r.status == 202
    op_id = r.json["operation"].rsplit("/", 1)[-1]
    assert r.json["metadata"]["may_cancel"] is True
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until it is writing
        meta = d.api.sync("GET", f"/1.0/operations/{op_id}")["metadata"] or {}
        if "progress" in meta:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    t = time.monotonic()
    d.api.sync("DELETE", f"/1.0/operations/{op_id}")
    op = d.api.wait(op_id)
    assert op["status"] == "Cancelled", op
    assert time.monotonic() - t < 5
    _nothing_left(d, before)
