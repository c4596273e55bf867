"""The image store adopts layers it already holds when asked (a deleted
image's layers kept for its instances), and keeps their run config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_images import reg, unified, write_tar

from cove.model.errors import Conflict
from cove.storage.images import ImageStore


def test_reuse_keeps_the_stored_tree_and_leaves_no_temp(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    path = write_tar(tmp_path / "covetest.tar", unified(reg("etc/x", b"1")))
    first = store.import_file(path)
    marker = store.rootfs(first.fingerprint) / "marker"
    marker.write_text("in use")  # stands for a lower layer a container has open
    with pytest.raises(Conflict):
        store.import_file(path)
    again = store.import_file(path, reuse=True)
    assert again.fingerprint == first.fingerprint and again.properties == first.properties
    assert marker.read_text() == "in use"  # the same tree, not a replacement
    assert os.listdir(store.root) == [first.fingerprint]  # no .tmp- left


def test_run_config_beside_the_layers(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    image = store.import_file(write_tar(tmp_path / "covetest.tar", unified(reg("etc/x"))))
    assert store.run_config(image.fingerprint) is None
    store.save_run_config(image.fingerprint, ["/bin/app", "-x"], {"A": "1"})
    assert store.run_config(image.fingerprint) == (["/bin/app", "-x"], {"A": "1"})
    store.delete(image.fingerprint)
    assert store.run_config(image.fingerprint) is None
