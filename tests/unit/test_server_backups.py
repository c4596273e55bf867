"""coved's backup routes against the fake engine: wire shapes, the streamed
export, the import dispatch on ``POST /1.0/instances`` and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from test_server_fakes import FakeEngine, run_app, wait_op

from cove.model.states import Status

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    f = FakeEngine(root=tmp_path)
    f.add("c1", Status.STOPPED)
    return f


def test_backup_routes(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        resp = await client.post("/1.0/instances/c1/backups",
                                 json={"name": "b0", "instance_only": True,
                                       "expires_at": "2030-01-01T00:00:00Z"})
        assert resp.status == 202
        assert (await wait_op(client, (await resp.json())["operation"]))["status"] == "Success"
        doc = await (await client.get("/1.0/instances/c1/backups")).json()
        assert doc["metadata"] == ["/1.0/instances/c1/backups/b0"]
        doc = await (await client.get("/1.0/containers/c1/backups")).json()
        assert doc["metadata"] == ["/1.0/containers/c1/backups/b0"]
        obj = (await (await client.get("/1.0/instances/c1/backups/b0")).json())["metadata"]
        assert obj == {"name": "b0", "created_at": "2023-11-14T22:13:21Z",
                       "expires_at": "2030-01-01T00:00:00Z", "instance_only": True,
                       "container_only": True, "optimized_storage": False}
        resp = await client.get("/1.0/instances/c1/backups/b0/export")
        assert resp.status == 200 and resp.content_type == "application/octet-stream"
        assert await resp.read() == b"tarball of c1"
        assert resp.headers["Content-Length"] == str(len(b"tarball of c1"))
        resp = await client.get("/1.0/instances/c1/backups/nope/export")
        assert resp.status == 404 and (await resp.json())["error"] == "Backup not found: nope"

        for bad, field in (({"name": "a/b"}, "slashes"), ({"expires_at": 5}, "expires_at"),
                           ({"instance_only": "yes"}, "instance_only")):
            resp = await client.post("/1.0/instances/c1/backups", json=bad)
            doc = await resp.json()
            assert resp.status == 400 and field in doc["error"], (bad, doc)
        resp = await client.post("/1.0/instances/c1/backups/b0", json={})
        assert resp.status == 400 and "name" in (await resp.json())["error"]

        # the import: the body is spooled and handed over with the headers
        resp = await client.post("/1.0/instances", data=b"\x1f\x8b" + b"x" * 100, headers={
            "Content-Type": "application/octet-stream", "X-LXD-name": "c2",
            "X-LXD-pool": "default"})
        assert resp.status == 202
        data, name, pool, project = fake.backups.imported[-1]
        assert (data[:2], len(data), name, pool, project) == (b"\x1f\x8b", 102, "c2",
                                                              "default", "default")
        resp = await client.post("/1.0/instances", data=b"junk",
                                 headers={"Content-Type": "application/octet-stream"})
        assert resp.status == 400
        assert not list((fake.root / "tmp").iterdir())  # refused uploads are removed
    run_app(fake, body)
