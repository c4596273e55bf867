"""Snapshots on every driver, cove and a real LXD alike: convergent take,
rename and delete, restore of a running instance (its files back as they
were), and NotFound for what is missing."""

from __future__ import annotations

import pytest
from conftest import FEATURE_DRIVERS, Host

from cove import api
from cove.model.errors import BadRequest, CoveError, NotFound

# every driver but cli-lxc: conftest.FEATURE_DRIVERS says why
pytestmark = pytest.mark.parametrize("host", FEATURE_DRIVERS, indirect=True)


def test_snapshots(host: Host) -> None:
    d = host.driver
    inst = host.name("snap")
    try:
        d.create_container(inst, alias=host.image, autostart=False)
        d.start_container(inst)
        t = d.transport_for(inst)
        t.execute("echo one > /root/covetest").check()
        s = d.create_snapshot(inst, "s0")
        assert isinstance(s, api.InstanceSnapshot) and s.name == "s0" and not s.stateful
        assert d.create_snapshot(inst, "s0").created_at == s.created_at  # there: left
        t.execute("echo two > /root/covetest").check()
        assert [x.name for x in d.snapshots(inst)] == ["s0"]
        d.restore_snapshot(inst, "s0")
        t = d.transport_for(inst)
        assert t.execute("cat /root/covetest").check().stdout == b"one\n"
        d.rename_snapshot(inst, "s0", "first")
        d.rename_snapshot(inst, "s0", "first")  # done already: nothing
        assert d.snapshot(inst, "first").name == "first"
        with pytest.raises(NotFound):
            d.snapshot(inst, "s0")
        with pytest.raises((BadRequest, CoveError)):
            d.create_snapshot(inst, "a/b")
        d.delete_snapshot(inst, "first")
        d.delete_snapshot(inst, "first")  # gone: nothing
        assert d.snapshots(inst) == []
        with pytest.raises(NotFound):
            d.restore_snapshot(inst, "first")
    finally:
        d.delete_container(inst)
    with pytest.raises(NotFound):
        d.snapshots(inst)
