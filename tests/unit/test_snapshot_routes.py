"""``/1.0/instances/NAME/snapshots`` and the restore PUT against the fake
engine: LXD's URLs, bodies, operations, and a 400 naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from test_server_fakes import FakeEngine, run_app

from cove.api import InstanceSnapshot, parse_time
from cove.model.errors import BadRequest
from cove.model.states import Status


async def _wait(client: Any, resp: Any) -> dict[str, Any]:
    assert resp.status == 202, await resp.text()
    op = (await resp.json())["operation"]
    done = await client.get(op + "/wait?timeout=10")
    return dict((await done.json())["metadata"])


def test_snapshot_routes(tmp_path: Any) -> None:
    fake = FakeEngine(tmp_path)
    fake.add("c1", Status.STOPPED, config={"user.k": "v"})

    async def body(client: Any) -> None:
        op = await _wait(client, await client.post("/1.0/instances/c1/snapshots",
                                                   json={"name": "s0"}))
        assert op["status"] == "Success"
        op = await _wait(client, await client.post("/1.0/instances/c1/snapshots", json={}))
        assert op["status"] == "Success"
        urls = (await (await client.get("/1.0/instances/c1/snapshots")).json())["metadata"]
        assert urls == ["/1.0/instances/c1/snapshots/s0", "/1.0/instances/c1/snapshots/snap1"]
        urls = (await (await client.get("/1.0/containers/c1/snapshots")).json())["metadata"]
        assert urls[0] == "/1.0/containers/c1/snapshots/s0"
        objs = (await (await client.get("/1.0/instances/c1/snapshots?recursion=1")
                       ).json())["metadata"]
        assert [o["name"] for o in objs] == ["s0", "snap1"]
        one = (await (await client.get("/1.0/instances/c1/snapshots/s0")).json())["metadata"]
        assert set(one) == {"architecture", "config", "created_at", "devices", "ephemeral",
                            "expanded_config", "expanded_devices", "expires_at",
                            "last_used_at", "name", "profiles", "size", "stateful"}
        assert one["config"] == {"user.k": "v"} and one["stateful"] is False
        assert one["created_at"] == "2023-11-14T22:13:21Z"
        assert one["expires_at"] == "0001-01-01T00:00:00Z" and one["size"] == 4096
        assert InstanceSnapshot.from_wire(one).to_wire() == one
        # the full instance lists them (lxc info reads this)
        full = (await (await client.get("/1.0/instances/c1?recursion=1")).json())["metadata"]
        assert [s["name"] for s in full["snapshots"]] == ["s0", "snap1"]
        # expiry, rename, restore, delete
        resp = await client.patch("/1.0/instances/c1/snapshots/s0",
                                  json={"expires_at": "2030-01-01T00:00:00.123456789+01:00"})
        assert resp.status == 200
        one = (await (await client.get("/1.0/instances/c1/snapshots/s0")).json())["metadata"]
        assert one["expires_at"] == "2029-12-31T23:00:00.123456Z"
        op = await _wait(client, await client.post("/1.0/instances/c1/snapshots/s0",
                                                   json={"name": "first"}))
        assert op["status"] == "Success"
        op = await _wait(client, await client.put("/1.0/instances/c1",
                                                  json={"restore": "c1/first"}))
        assert op["status"] == "Success" and fake.snapshots.restored == [("c1", "first")]
        op = await _wait(client, await client.delete("/1.0/instances/c1/snapshots/first"))
        assert op["status"] == "Success"
        assert (await client.get("/1.0/instances/c1/snapshots/first")).status == 404
    run_app(fake, body)


@pytest.mark.parametrize("method, path, payload, words", [
    ("post", "/1.0/instances/c1/snapshots", {"name": "a/b"}, "snapshot name"),
    ("post", "/1.0/instances/c1/snapshots", {"name": ".."}, "snapshot name"),
    ("post", "/1.0/instances/c1/snapshots", {"name": 7}, "'name'"),
    ("post", "/1.0/instances/c1/snapshots", {"name": "s", "expires_at": "soon"}, "expires_at"),
    ("post", "/1.0/instances/c1/snapshots", [], "JSON object"),
    ("put", "/1.0/instances/c1/snapshots/s", {"expires_at": 5}, "expires_at"),
    ("post", "/1.0/instances/c1/snapshots/s", {}, "'name'"),
    ("post", "/1.0/instances/c1/snapshots/s", {"name": "x", "migration": True}, "migration"),
    ("put", "/1.0/instances/c1", {"restore": 3}, "'restore'"),
])
def test_snapshot_bad_bodies(tmp_path: Any, method: str, path: str, payload: Any,
                             words: str) -> None:
    fake = FakeEngine(tmp_path)
    fake.add("c1", Status.STOPPED)

    async def body(client: Any) -> None:
        resp = await getattr(client, method)(path, json=payload)
        assert resp.status == 400, await resp.text()
        assert words in (await resp.json())["error"]
        assert fake.snapshots.by_key == {}  # nothing made
    run_app(fake, body)


def test_snapshot_unknown_instance_is_404(tmp_path: Any) -> None:
    fake = FakeEngine(tmp_path)

    async def body(client: Any) -> None:
        for resp in (await client.get("/1.0/instances/nope/snapshots"),
                     await client.post("/1.0/instances/nope/snapshots", json={"name": "s"}),
                     await client.get("/1.0/instances/nope/snapshots/s")):
            assert resp.status == 404
    run_app(fake, body)


def test_parse_time() -> None:
    assert parse_time("0001-01-01T00:00:00Z", "t") == 0.0
    assert parse_time("", "t") == 0.0
    assert parse_time("1970-01-01T00:01:00Z", "t") == 60.0
    assert parse_time("1970-01-01T01:01:00+01:00", "t") == 60.0
    with pytest.raises(BadRequest, match="'t'"):
        parse_time("yesterday", "t")
