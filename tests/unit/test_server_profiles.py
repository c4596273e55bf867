"""coved's ``/1.0/profiles``: LXD's bodies, statuses, ETag and If-Match, on the
fake engine (the real profiles service over a store in ``tmp_path``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from test_server_fakes import FakeEngine, run_app

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    return FakeEngine(root=tmp_path)


async def _json(resp: Any) -> dict[str, Any]:
    body: dict[str, Any] = await resp.json()
    return body


async def _error(resp: Any, status: int) -> str:
    assert resp.status == status, await resp.text()
    body = await _json(resp)
    assert body["type"] == "error" and body["error_code"] == status
    return str(body["error"])


def test_create_get_list(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        resp = await client.post("/1.0/profiles", json={
            "name": "web", "description": "d", "config": {"limits.memory": "128MiB"},
            "devices": {"http": {"type": "proxy", "listen": "tcp:0.0.0.0:80",
                                 "connect": "tcp:0.0.0.0:80"}}})
        assert resp.status == 201 and resp.headers["Location"] == "/1.0/profiles/web"
        assert (await _json(resp))["type"] == "sync"
        resp = await client.get("/1.0/profiles/web")
        assert resp.status == 200 and resp.headers["ETag"]
        prof = (await _json(resp))["metadata"]
        assert prof == {"name": "web", "description": "d", "config": {"limits.memory": "128MiB"},
                        "devices": {"http": {"type": "proxy", "listen": "tcp:0.0.0.0:80",
                                             "connect": "tcp:0.0.0.0:80"}},
                        "used_by": [], "project": "default"}
        doc = await _json(await client.get("/1.0/profiles"))
        assert doc["metadata"] == ["/1.0/profiles/default", "/1.0/profiles/web"]
        doc = await _json(await client.get("/1.0/profiles?recursion=1"))
        assert [p["name"] for p in doc["metadata"]] == ["default", "web"]
        # a name with a space is LXD's too, escaped in the URL
        resp = await client.post("/1.0/profiles", json={"name": "with space"})
        assert resp.headers["Location"] == "/1.0/profiles/with%20space"
        assert (await client.get("/1.0/profiles/with%20space")).status == 200
    run_app(fake, body)


def test_bad_creates_are_400_or_409_and_make_nothing(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        for payload, status, text in (
                ({}, 400, "No name provided"),
                ({"name": ""}, 400, "No name provided"),
                ({"name": "a/b"}, 400, "slashes"),
                ({"name": ".."}, 400, 'Invalid profile name ".."'),
                ({"name": "x", "config": {"nope": "1"}}, 400, "Unknown configuration key"),
                ({"name": "x", "config": {"limits.memory": 5}}, 400, "must be a string"),
                ({"name": "x", "config": {"volatile.a": "1"}}, 400, "Volatile keys"),
                ({"name": "x", "devices": {"d": {"type": "bad"}}}, 400, "'bad'"),
                ({"name": "x", "devices": []}, 400, "devices"),
                ({"name": "default"}, 409, "The profile already exists")):
            resp = await client.post("/1.0/profiles", json=payload)
            assert text in await _error(resp, status), payload
        resp = await client.post("/1.0/profiles", data=b"[1]")
        await _error(resp, 400)
        assert (await client.get("/1.0/profiles/x")).status == 404
    run_app(fake, body)


def test_put_patch_and_etag(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        await client.post("/1.0/profiles", json={"name": "p", "description": "d",
                                                 "config": {"user.a": "1"}})
        resp = await client.get("/1.0/profiles/p")
        etag = resp.headers["ETag"]
        # PATCH merges config and devices, keeps what is not sent
        resp = await client.patch("/1.0/profiles/p", json={"config": {"user.b": "2"}},
                                  headers={"If-Match": etag})
        assert resp.status == 200
        prof = (await _json(await client.get("/1.0/profiles/p")))["metadata"]
        assert prof["config"] == {"user.a": "1", "user.b": "2"} and prof["description"] == "d"
        # the old ETag no longer matches: 412, nothing changed
        resp = await client.put("/1.0/profiles/p", json={"config": {}},
                                headers={"If-Match": etag})
        assert "ETag" in await _error(resp, 412)
        resp = await client.get("/1.0/profiles/p")
        assert resp.headers["ETag"] != etag
        # PUT replaces: what is not sent is empty
        resp = await client.put("/1.0/profiles/p", json={"config": {"user.c": "3"}},
                                headers={"If-Match": f'"{resp.headers["ETag"]}"'})
        assert resp.status == 200
        prof = (await _json(await client.get("/1.0/profiles/p")))["metadata"]
        assert (prof["config"], prof["devices"], prof["description"]) == ({"user.c": "3"}, {},
                                                                          "")
        resp = await client.put("/1.0/profiles/p", json={"config": {"limits.cpu": "x"}})
        assert "limits.cpu" in await _error(resp, 400)
        resp = await client.patch("/1.0/profiles/p", json={"devices": "x"})
        await _error(resp, 400)
        assert (await client.put("/1.0/profiles/none", json={})).status == 404
        assert (await client.patch("/1.0/profiles/none", json={})).status == 404
    run_app(fake, body)


def test_update_applies_to_the_instances_that_use_it(fake: FakeEngine) -> None:
    fake.add("c1", profiles=["default", "p"], config={"user.x": "own"})
    fake.add("c2", profiles=["default"])

    async def body(client: Client) -> None:
        await client.post("/1.0/profiles", json={"name": "p", "config": {"user.x": "p"}})
        resp = await client.patch("/1.0/profiles/p", json={"config": {"limits.memory": "1GiB"}})
        assert resp.status == 200
        applied = fake.profiles.users.applied
        assert [(n, c) for n, c, _ in applied] == [
            ("c1", {"user.x": "own", "limits.memory": "1GiB"})]
        prof = (await _json(await client.get("/1.0/profiles/p")))["metadata"]
        assert prof["used_by"] == ["/1.0/instances/c1"]
    run_app(fake, body)


def test_rename_and_delete(fake: FakeEngine) -> None:
    fake.add("c1", profiles=["default", "used"])

    async def body(client: Client) -> None:
        for name in ("p", "q", "used"):
            await client.post("/1.0/profiles", json={"name": name})
        resp = await client.post("/1.0/profiles/p", json={"name": "p2"})
        assert resp.status == 201 and resp.headers["Location"] == "/1.0/profiles/p2"
        assert (await client.get("/1.0/profiles/p")).status == 404
        assert (await client.get("/1.0/profiles/p2")).status == 200
        assert 'Name "q" already in use' in await _error(
            await client.post("/1.0/profiles/p2", json={"name": "q"}), 409)
        assert "No name provided" in await _error(
            await client.post("/1.0/profiles/p2", json={}), 400)
        assert "slashes" in await _error(
            await client.post("/1.0/profiles/p2", json={"name": "a/b"}), 400)
        assert await _error(await client.post("/1.0/profiles/none", json={"name": "z"}), 404)
        assert await _error(await client.post("/1.0/profiles/default", json={"name": "z"}),
                            403) == 'The "default" profile cannot be renamed'
        assert await _error(await client.delete("/1.0/profiles/default"),
                            403) == 'The "default" profile cannot be deleted'
        assert await _error(await client.delete("/1.0/profiles/used"),
                            400) == "Profile is currently in use"
        resp = await client.delete("/1.0/profiles/p2")
        assert resp.status == 200 and (await _json(resp))["type"] == "sync"
        assert (await client.delete("/1.0/profiles/p2")).status == 404
        resp = await client.get("/1.0/profiles?project=other")
        assert resp.status == 404
    run_app(fake, body)


def test_profile_events(fake: FakeEngine) -> None:
    fake.add("c1", profiles=["p"])
    sub = fake.events.subscribe({"lifecycle"})

    async def body(client: Client) -> None:
        await client.post("/1.0/profiles", json={"name": "p"})
        await client.patch("/1.0/profiles/p", json={"description": "x"})
        fake.instances.by_name.clear()  # nothing uses it any more
        await client.post("/1.0/profiles/p", json={"name": "q"})
        await client.delete("/1.0/profiles/q")
    run_app(fake, body)
    seen = []
    while (ev := sub.get(0.1)) is not None:
        seen.append((ev["metadata"]["action"], ev["metadata"]["source"]))
    assert seen == [("profile-created", "/1.0/profiles/p"),
                    ("instance-updated", "/1.0/instances/c1"),
                    ("profile-updated", "/1.0/profiles/p"),
                    ("profile-renamed", "/1.0/profiles/q"),
                    ("profile-deleted", "/1.0/profiles/q")]
