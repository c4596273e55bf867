"""Backups on every driver, cove and a real LXD alike: convergent make and
delete, ``export_instance`` (LXD's tarball, snapshots included) and
``import_instance`` of it under a new name with its files, Conflict for a
taken name and NotFound for what is missing."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from conftest import FEATURE_DRIVERS, Host

from cove import api
from cove.model.errors import BadRequest, Conflict, CoveError, NotFound

# every driver but cli-lxc: conftest.FEATURE_DRIVERS says why
pytestmark = pytest.mark.parametrize("host", FEATURE_DRIVERS, indirect=True)


def test_backups(host: Host, workdir: Path) -> None:
    d = host.driver
    inst, copy = host.name("bk"), host.name("bkc")
    out = workdir / f"{inst}.tar.gz"
    try:
        d.create_container(inst, alias=host.image, autostart=False)
        d.start_container(inst)
        d.transport_for(inst).execute("echo one > /root/covetest").check()
        d.create_snapshot(inst, "s0")
        b = d.create_backup(inst, "b0")
        assert isinstance(b, api.InstanceBackup) and b.name == "b0" and not b.instance_only
        assert d.create_backup(inst, "b0").created_at == b.created_at  # there: left
        assert [x.name for x in d.backups(inst)] == ["b0"]
        assert d.backup(inst, "b0") == b
        with pytest.raises((BadRequest, CoveError)):
            d.create_backup(inst, "a/b")
        d.delete_backup(inst, "b0")
        d.delete_backup(inst, "b0")  # gone: nothing
        assert d.backups(inst) == []
        with pytest.raises(NotFound):
            d.backup(inst, "b0")

        d.export_instance(inst, str(out))
        with tarfile.open(out) as tar:
            names = tar.getnames()
        assert names[0] == "backup/index.yaml"
        assert "backup/snapshots/s0" in names and "backup/container/rootfs/root/covetest" in names
        assert d.backups(inst) == []  # the export's own backup is deleted after
        with pytest.raises(Conflict):
            d.import_instance(str(out), inst)
        d.import_instance(str(out), copy)
        assert [s.name for s in d.snapshots(copy)] == ["s0"]
        d.start_container(copy)
        assert d.transport_for(copy).execute("cat /root/covetest").check().stdout == b"one\n"
    finally:
        out.unlink(missing_ok=True)
        d.delete_container(copy)
        d.delete_container(inst)
    with pytest.raises(NotFound):
        d.backups(inst)
