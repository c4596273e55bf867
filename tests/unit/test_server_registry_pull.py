"""coved's dispatch of OCI registry sources: ``POST /1.0/images`` and
``POST /1.0/instances`` with ``source.protocol: oci`` go to
``engine.registry_pulls`` (other sources do not), ``POST
/1.0/images/FP/push``, and the API extension names."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from test_server_fakes import FakeEngine, run_app, wait_op

Client = TestClient[web.Request, web.Application]

FP = "ab" * 32
SRC = {"type": "image", "protocol": "oci", "server": "https://127.0.0.1:5000",
       "alias": "library/alpine:3.20"}


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    f = FakeEngine(root=tmp_path)
    f.add_image(FP, "busybox")
    return f


def test_pull_create_push_dispatch(fake: FakeEngine) -> None:
    pulls = fake.registry_pulls

    async def body(client: Client) -> None:
        ext = (await (await client.get("/1.0")).json())["metadata"]["api_extensions"]
        assert "instance_oci" in ext and "cove_image_push" in ext
        resp = await client.post("/1.0/images", json={
            "source": {**SRC, "mode": "pull"}, "aliases": [{"name": "alpine"}],
            "public": True})
        op = await wait_op(client, (await resp.json())["operation"])
        assert op["status"] == "Success" and op["metadata"]["fingerprint"] == pulls.PULLED
        assert pulls.pulls == [({**SRC, "mode": "pull"}, ["alpine"], True, "default")]

        resp = await client.post("/1.0/instances", json={"name": "web", "source": SRC})
        assert resp.status == 202
        assert pulls.creates == [("web", SRC, "default")]

        resp = await client.post(f"/1.0/images/{FP}/push", json={
            "target": {"server": "https://127.0.0.1:5000", "alias": "me/web:1"}})
        assert resp.status == 202
        assert pulls.pushes[0][0] == FP
        assert pulls.pushes[0][1]["protocol"] == "oci"

        # a local source is not a registry's; a bad push body is a 400 naming the field
        resp = await client.post("/1.0/instances", json={
            "name": "local", "source": {"type": "image", "alias": "busybox"}})
        assert resp.status == 202 and len(pulls.creates) == 1
        resp = await client.post(f"/1.0/images/{FP}/push", json={"target": "x"})
        assert resp.status == 400 and "target" in (await resp.json())["error"]
        resp = await client.post("/1.0/images", json={"source": SRC, "aliases": "x"})
        assert resp.status == 400 and "aliases" in (await resp.json())["error"]
    run_app(fake, body)
