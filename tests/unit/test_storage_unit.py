"""Storage: disk device checks, the volumes table, the storage service on a real
store and directory (crash states included), mount targets resolved inside a
root, and /1.0/storage-pools in LXD's shapes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from test_server_fakes import FakeEngine, run_app

from cove import api
from cove.engine._storage import Storage
from cove.engine.events import EventBus
from cove.model.disks import Disk, Volume, disk_from_device, parse_size, validate_volume_config
from cove.model.errors import BadRequest, Conflict, NotFound
from cove.model.records import Instance
from cove.model.states import Status
from cove.server.routes_server import API_EXTENSIONS
from cove.store import Store

Client = TestClient[web.Request, web.Application]


# -- model ---------------------------------------------------------------------------------

def test_disk_devices() -> None:
    assert disk_from_device("root", {"type": "disk", "path": "/"}) is None
    assert disk_from_device("root", {"type": "disk", "path": "/", "pool": "default"}) is None
    d = disk_from_device("d", {"type": "disk", "source": "/srv/x", "path": "/data",
                               "readonly": "true", "required": "false"})
    assert d == Disk(name="d", path="/data", source="/srv/x", readonly=True, required=False)
    v = disk_from_device("v", {"type": "disk", "pool": "default", "source": "vol1",
                               "path": "/v"})
    assert v is not None and v.is_volume and v.source == "vol1" and v.required


@pytest.mark.parametrize(("dev", "word"), [
    ({"path": "/", "pool": "zfs1"}, "zfs1"),
    ({"path": "/", "size": "10GiB"}, "size"),
    ({"path": "/d", "source": "/x", "shift": "true"}, "shift"),
    ({"path": "/d"}, "source"),
    ({"source": "/x"}, "path"),
    ({"path": "d", "source": "/x"}, "absolute"),
    ({"path": "/d", "source": "rel"}, "absolute host path"),
    ({"path": "/d", "source": "v", "pool": "other"}, "other"),
    ({"path": "/d", "source": "../v", "pool": "default"}, "volume name"),
    ({"path": "/d", "source": "/x", "readonly": "maybe"}, "readonly"),
])
def test_bad_disk_devices_name_the_problem(dev: dict[str, str], word: str) -> None:
    with pytest.raises(BadRequest, match=word):
        disk_from_device("dev1", {"type": "disk", **dev})


def test_volume_config_and_sizes() -> None:
    assert parse_size("10GiB") == 10 * 2**30 and parse_size("500MB") == 500 * 10**6
    assert validate_volume_config({"size": "1GiB", "user.x": "y"}) == {"size": "1GiB",
                                                                      "user.x": "y"}
    for bad in ({"size": "lots"}, {"block.filesystem": "ext4"}, {"size": 5}):
        with pytest.raises(BadRequest):
            validate_volume_config(bad)


# -- the table --------------------------------------------------------------------------------

def test_volume_rows(tmp_path: Path) -> None:
    s = Store(tmp_path / "db")
    s.volumes.add(Volume(name="a", config={"size": "1GiB"}, created_at=1.5, dir="a"))
    with pytest.raises(Conflict):
        s.volumes.add(Volume(name="a", dir="a"))
    s.volumes.add(Volume(name="a", project="p2", dir="p2_a"))  # another project: fine
    assert [v.name for v in s.volumes.all("default")] == ["a"]
    assert len(s.volumes.all(project=None)) == 2
    s.volumes.rename("default", "a", "b")
    got = s.volumes.get("default", "b")
    assert (got.config, got.created_at, got.dir) == ({"size": "1GiB"}, 1.5, "a")
    with pytest.raises(NotFound):
        s.volumes.get("default", "a")
    s.volumes.delete("default", "b")
    s.volumes.delete("default", "b")  # idempotent
    s.close()
    assert Store(tmp_path / "db").volumes.all(project="p2")[0].dir == "p2_a"  # reopened


# -- the service ---------------------------------------------------------------------------

class Devices:
    def expanded_devices(self, inst: Instance) -> dict[str, dict[str, str]]:
        return dict(inst.devices)


def _storage(root: Path) -> tuple[Storage, Store]:
    root.mkdir(exist_ok=True)
    store = Store(root / "cove.db")
    return Storage(root, store, Devices(), EventBus(), lambda: 1700000000.0), store


def test_volume_service(tmp_path: Path) -> None:
    st, store = _storage(tmp_path)
    custom = tmp_path / "storage" / "custom"
    st.create_volume("default", "v1", config={"size": "1GiB"})
    assert (custom / "v1").is_dir() and (custom / "v1").stat().st_mode & 0o777 == 0o711
    with pytest.raises(Conflict):
        st.create_volume("default", "v1")
    with pytest.raises(NotFound):
        st.create_volume("other", "v2")
    with pytest.raises(BadRequest, match="custom volumes only"):
        st.create_volume("default", "v2", type="image")
    with pytest.raises(BadRequest, match="block"):
        st.create_volume("default", "v2", content_type="block")
    assert st.update_volume("default", "v1", config={"user.a": "b"}, patch=True).config == {
        "size": "1GiB", "user.a": "b"}
    assert st.update_volume("default", "v1", config={}, description="x").config == {}

    (custom / "v1" / "data").write_text("x")
    store.add_instance(Instance(name="c1", image="f", devices={
        "d": {"type": "disk", "pool": "default", "source": "v1", "path": "/d"}},
        status=Status.RUNNING))
    assert st.volume_used_by("default", "v1") == ["/1.0/instances/c1"]
    assert "/1.0/storage-pools/default/volumes/custom/v1" in st.pool_used_by("default")
    with pytest.raises(BadRequest, match="still in use"):
        st.delete_volume("default", "v1")
    with pytest.raises(BadRequest, match="running"):
        st.rename_volume("default", "v1", "v2")
    inst = store.get_instance("c1")
    inst.status = Status.STOPPED
    store.update_instance(inst)
    st.rename_volume("default", "v1", "v2")
    assert store.get_instance("c1").devices["d"]["source"] == "v2"
    assert (custom / "v2" / "data").read_text() == "x" and not (custom / "v1").exists()
    store.delete_instance("c1")
    st.delete_volume("default", "v2")
    assert os.listdir(custom) == []
    with pytest.raises(NotFound):
        st.delete_volume("default", "v2")


def test_volume_directories_never_collide(tmp_path: Path) -> None:
    st, _ = _storage(tmp_path)
    custom = tmp_path / "storage" / "custom"
    st.create_volume("default", "b_c", project="a")  # a_b_c
    (custom / "a_b_c" / "data").write_text("mine")
    with pytest.raises(Conflict, match="belongs"):
        st.create_volume("default", "c", project="a_b")  # a_b_c again
    st.create_volume("default", "d", project="a_b")
    with pytest.raises(Conflict, match="belongs"):
        st.rename_volume("default", "d", "c", project="a_b")
    assert (custom / "a_b_c" / "data").read_text() == "mine"


def test_sweep_finishes_what_a_crash_left(tmp_path: Path) -> None:
    st, store = _storage(tmp_path)
    custom = tmp_path / "storage" / "custom"
    # a rename killed after the row moved, before the directory did
    st.create_volume("default", "old")
    (custom / "old" / "f").write_text("data")
    store.volumes.rename("default", "old", "new")
    # a create killed after the row, before the directory
    store.volumes.add(Volume(name="bare", dir="bare"))
    # a delete killed after the row went, before the directory did
    (custom / "orphan").mkdir()
    st.sweep()
    assert sorted(os.listdir(custom)) == ["bare", "new"]
    assert (custom / "new" / "f").read_text() == "data"
    assert store.volumes.get("default", "new").dir == "new"
    st.sweep()  # idempotent
    assert sorted(os.listdir(custom)) == ["bare", "new"]


def test_mount_targets_resolve_inside_the_root(tmp_path: Path) -> None:
    st, _ = _storage(tmp_path / "r")
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    host = tmp_path / "host-secret"
    host.mkdir()
    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_text("f")
    os.symlink(str(host), rootfs / "abs")  # names a host path
    os.symlink("../../../../../../../" + str(host).lstrip("/"), rootfs / "rel")
    os.symlink("/etc", rootfs / "etcl")
    os.symlink("..", rootfs / "up")

    def mounts(devices: dict[str, dict[str, str]]) -> list[tuple[str, list[str]]]:
        return [(m["destination"], m["options"]) for m in st.mounts(devices, rootfs)]

    (rootfs / str(host).lstrip("/")).mkdir(parents=True)
    got = mounts({"a": {"type": "disk", "source": str(src), "path": "/abs/x"},
                  "b": {"type": "disk", "source": str(src), "path": "/rel",
                        "readonly": "true"},
                  "c": {"type": "disk", "source": str(src / "file"), "path": "/etcl/one"},
                  "d": {"type": "disk", "source": str(src / "nope"), "path": "/n",
                        "required": "false"}})
    assert got == [(f"{host}/x", ["bind", "rprivate"]),
                   (str(host), ["bind", "rprivate", "ro"]),
                   ("/etc/one", ["bind", "rprivate"])]
    assert os.listdir(host) == []  # nothing made on the host
    assert (rootfs / str(host).lstrip("/") / "x").is_dir()
    assert (rootfs / "etc" / "one").is_file()
    with pytest.raises(BadRequest, match="is a directory in the instance"):
        mounts({"f": {"type": "disk", "source": str(src / "file"), "path": "/etc"}})
    with pytest.raises(BadRequest, match="is a file in the instance"):
        mounts({"f": {"type": "disk", "source": str(src), "path": "/etc/one"}})
    with pytest.raises(BadRequest, match="root directory"):
        mounts({"u": {"type": "disk", "source": str(src), "path": "/up"}})
    with pytest.raises(BadRequest, match="missing source"):
        mounts({"m": {"type": "disk", "source": str(src / "nope"), "path": "/n"}})
    with pytest.raises(NotFound, match="vol9"):
        mounts({"v": {"type": "disk", "pool": "default", "source": "vol9", "path": "/v"}})
    os.symlink(str(tmp_path / "missing"), rootfs / "dangling")
    with pytest.raises(BadRequest, match="mount point"):
        mounts({"g": {"type": "disk", "source": str(src), "path": "/dangling"}})
    assert not (tmp_path / "missing").exists()
    with pytest.raises(BadRequest, match="already used"):
        st.check_disks({"a": {"type": "disk", "source": "/x", "path": "/d"},
                        "b": {"type": "disk", "source": "/y", "path": "/d/"}})


# -- the routes ---------------------------------------------------------------------------------

@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    return FakeEngine(root=tmp_path)


def test_storage_routes(fake: FakeEngine) -> None:
    base = "/1.0/storage-pools/default"

    async def body(client: Client) -> None:
        async def md(method: str, path: str, status: int = 200, **kw: Any) -> Any:
            resp = await client.request(method, path, **kw)
            doc = await resp.json()
            assert resp.status == status, doc
            return doc["metadata"] if status < 400 else doc["error"]

        pools = await md("GET", "/1.0/storage-pools?recursion=1")
        pool = api.StoragePool.from_wire(pools[0])
        assert (pool.name, pool.driver, pool.config["source"]) == (
            "default", "dir", str(fake.root))
        res = api.ResourcesStoragePool.from_wire(await md("GET", f"{base}/resources"))
        assert res.space_total > 0
        assert "one storage pool" in await md("POST", "/1.0/storage-pools", 400,
                                              json={"name": "p", "driver": "zfs"})
        assert "not found" in await md("GET", "/1.0/storage-pools/zfs/volumes", 404)

        assert await md("POST", f"{base}/volumes/custom", json={"name": "v1"}) == {}
        await md("POST", f"{base}/volumes", json={"name": "v2", "type": "custom"})
        assert await md("GET", f"{base}/volumes") == [
            f"{base}/volumes/custom/v1", f"{base}/volumes/custom/v2"]
        assert await md("GET", f"{base}/volumes/container") == []
        fake.store.add_instance(Instance(name="c9", image="f", created_at=1.0))
        assert await md("GET", f"{base}/volumes/container") == [f"{base}/volumes/container/c9"]
        got = await md("GET", f"{base}/volumes/container/c9")
        assert (got["type"], got["name"], got["used_by"]) == (
            "container", "c9", ["/1.0/instances/c9"])
        await md("GET", f"{base}/volumes/container/c8", 404)
        assert "custom volumes only" in await md("DELETE", f"{base}/volumes/container/c9", 400)
        assert [v["type"] for v in await md("GET", f"{base}/volumes?recursion=1")] == [
            "container", "custom", "custom"]
        fake.store.delete_instance("c9")
        vols = await md("GET", f"{base}/volumes/custom?recursion=1")
        v = api.StorageVolume.from_wire(vols[0])
        assert (v.name, v.type, v.pool, v.project, v.content_type, v.created_at) == (
            "v1", "custom", "default", "default", "filesystem", v.created_at)
        assert v.created_at.endswith("Z")
        resp = await client.get(f"{base}/volumes/custom/v1")
        assert resp.headers["ETag"]
        etag = resp.headers["ETag"]
        await md("PATCH", f"{base}/volumes/custom/v1", json={"description": "d"},
                 headers={"If-Match": etag})
        assert "ETag" in await md("PUT", f"{base}/volumes/custom/v1", 412,
                                  json={"description": "x"}, headers={"If-Match": etag})
        assert (await md("GET", f"{base}/volumes/custom/v1"))["description"] == "d"
        resp = await client.post(f"{base}/volumes/custom/v1", json={"name": "v3"})
        assert resp.status == 201 and resp.headers["Location"] == f"{base}/volumes/custom/v3"
        assert "already exists" in await md("POST", f"{base}/volumes/custom/v3", 409,
                                            json={"name": "v2"})
        await md("DELETE", f"{base}/volumes/custom/v3")
        await md("GET", f"{base}/volumes/custom/v3", 404)

    run_app(fake, body)


@pytest.mark.parametrize(("method", "path", "payload", "word"), [
    ("POST", "/volumes/custom", {"name": ""}, "name"),
    ("POST", "/volumes/custom", {"name": "a/b"}, "Invalid volume name"),
    ("POST", "/volumes/custom", {"name": "v", "config": {"size": 1}}, "config"),
    ("POST", "/volumes/custom", {"name": "v", "config": {"size": "big"}}, "size"),
    ("POST", "/volumes/custom", {"name": "v", "type": "image"}, "type"),
    ("POST", "/volumes/image", {"name": "v"}, "custom volumes only"),
    ("POST", "/volumes/custom", {"name": "v", "source": {"name": "x", "type": "copy"}},
     "source"),
    ("POST", "/volumes/custom", {"name": "v", "content_type": "block"}, "block"),
    ("POST", "/volumes/custom/v0", {"name": "w", "pool": "other"}, "pool"),
    ("POST", "/volumes/custom/v0", {"name": "w", "migration": True}, "migration"),
    ("PUT", "/volumes/custom/v0", {"restore": "snap0"}, "restore"),
    ("PUT", "/volumes/custom/v0", {"config": {"zfs.x": "1"}}, "zfs.x"),
    ("PATCH", "/volumes/custom/v0", {"description": 5}, "description"),
])
def test_storage_bad_input_is_400(fake: FakeEngine, method: str, path: str,
                                  payload: dict[str, Any], word: str) -> None:
    base = "/1.0/storage-pools/default"
    fake.storage.create_volume("default", "v0")

    async def body(client: Client) -> None:
        resp = await client.request(method, base + path, json=payload)
        doc = await resp.json()
        assert resp.status == 400 and word in doc["error"], doc

    run_app(fake, body)
    assert [v.name for v in fake.storage.volumes("default")] == ["v0"]  # nothing made


def test_storage_extensions_are_advertised() -> None:
    for ext in ("storage", "storage_api_volume_rename", "resources"):
        assert ext in API_EXTENSIONS


# -- the wire classes ----------------------------------------------------------------------------

def test_storage_wire_classes_read_lxd_answers() -> None:
    # LXD 5.0's volume has no "pool"; its pool has no "description" when empty
    vol = api.StorageVolume.from_wire({
        "config": {"size": "1GiB"}, "description": "", "name": "v", "type": "custom",
        "used_by": ["/1.0/instances/c"], "location": "none", "content_type": "filesystem",
        "project": "default", "created_at": "2026-12-01T00:00:00Z"})
    assert (vol.pool, vol.config, vol.used_by) == ("", {"size": "1GiB"}, ["/1.0/instances/c"])
    pool = api.StoragePool.from_wire({"name": "p", "driver": "dir", "status": "Created",
                                      "config": {"source": "/x"}, "used_by": None})
    assert (pool.description, pool.used_by, pool.locations) == ("", [], [])
    res = api.ResourcesStoragePool.from_wire({"space": {"used": 1, "total": 2}})
    assert (res.space_used, res.space_total, res.inodes_total) == (1, 2, 0)
    assert api.StoragePool.from_wire(pool.to_wire()) == pool


def test_storage_requests_parse_strictly() -> None:
    post = api.StorageVolumesPost.parse({"name": "v"}, type="custom")
    assert (post.type, post.content_type, post.config) == ("custom", "filesystem", {})
    assert api.StorageVolumesPost.parse(post.to_wire()) == post
    with pytest.raises(BadRequest, match="differs"):
        api.StorageVolumesPost.parse({"name": "v", "type": "image"}, type="custom")
    with pytest.raises(BadRequest, match="config"):
        api.StorageVolumesPost.parse({"name": "v", "config": ["size"]})
    assert api.StorageVolumePut.parse({}).to_wire() == {}
    assert api.StorageVolumePost.parse({"name": "w", "pool": "default"}).pool == "default"
    with pytest.raises(BadRequest, match="project"):
        api.StorageVolumePost.parse({"name": "w", "project": "p2"})
