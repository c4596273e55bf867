"""Storage on every driver, cove and a real LXD alike: the pools, custom
volumes (convergent create, update, rename, delete; delete of a volume in
use refused) and a volume mounted in an instance as a disk device."""

from __future__ import annotations

import secrets

import pytest
from conftest import FEATURE_DRIVERS, Host
from lxdhost import POOL

from cove import api
from cove.model.errors import BadRequest, CoveError, NotFound

# every driver but cli-lxc: conftest.FEATURE_DRIVERS says why
pytestmark = pytest.mark.parametrize("host", FEATURE_DRIVERS, indirect=True)


def _pool(host: Host) -> str:
    return POOL if host.lxd else "default"  # the LXD's dir pool; cove's one pool


def test_storage_pools(host: Host) -> None:
    pools = {p.name: p for p in host.driver.storage_pools()}
    pool = pools[_pool(host)]
    assert isinstance(pool, api.StoragePool) and pool.driver == "dir"
    assert pool.status == "Created"


def test_volumes(host: Host) -> None:
    d = host.driver
    pool = _pool(host)
    name = f"covetest-v{secrets.token_hex(3)}"
    renamed = name + "b"
    inst = host.name("vol")
    try:
        v = d.create_volume(pool, name, config={"user.k": "1"}, description="covetest")
        assert isinstance(v, api.StorageVolume)
        assert (v.name, v.type, v.pool, v.description, v.content_type, v.used_by) == (
            name, "custom", pool, "covetest", "filesystem", [])
        assert v.config.get("user.k") == "1"
        # exists: left as it is
        assert d.create_volume(pool, name, config={"user.k": "2"}).config.get("user.k") == "1"
        assert name in [x.name for x in d.volumes(pool)]
        d.update_volume(pool, name, config={"user.x": "2"}, description="changed")
        got = d.volume(pool, name)
        assert (got.config.get("user.k"), got.config.get("user.x"), got.description) == (
            "1", "2", "changed")
        d.update_volume(pool, name, config={"user.x": None})
        assert "user.x" not in d.volume(pool, name).config

        d.create_container(inst, alias=host.image, autostart=False)
        disk = {"pool": pool, "source": name, "path": "/mnt/covetest"}
        d.attach_disk(inst, "data", disk)
        d.attach_disk(inst, "data", disk)  # there: nothing
        assert d.volume(pool, name).used_by == [f"/1.0/instances/{inst}"]
        with pytest.raises(CoveError, match="still in use") as e:
            d.delete_volume(pool, name)
        # a CLI has only the command's text; REST and local keep LXD's 400
        assert isinstance(e.value, BadRequest) or host.kind.startswith("cli")
        d.start_container(inst)
        t = d.transport_for(inst)
        t.execute("echo kept > /mnt/covetest/f").check()
        d.stop_container(inst, force=True)
        d.detach_disk(inst, "data")
        d.detach_disk(inst, "data")  # gone: nothing
        assert d.volume(pool, name).used_by == []

        d.rename_volume(pool, name, renamed)
        d.rename_volume(pool, name, renamed)  # done already: nothing
        with pytest.raises(NotFound):
            d.volume(pool, name)
        d.start_container(inst)
        # hot-plugged into the running instance, on LXD as on cove
        d.attach_disk(inst, "again", {"pool": pool, "source": renamed, "path": "/mnt/v2"})
        assert t.execute("cat /mnt/v2/f").check().stdout == b"kept\n"  # the data moved along
        d.detach_disk(inst, "again")
        assert t.execute("test -e /mnt/v2/f").exit_code != 0  # and unplugged
        d.delete_container(inst)
        d.delete_volume(pool, renamed)
        d.delete_volume(pool, renamed)  # gone: nothing
        assert renamed not in [x.name for x in d.volumes(pool)]
        with pytest.raises(NotFound):
            d.volumes("covetest-no-such-pool")
    finally:
        d.delete_container(inst)
        for n in (name, renamed):
            d.delete_volume(pool, n)
