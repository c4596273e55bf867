"""coved logs each failed request: method, path, status and reason, no body."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from test_server_fakes import FakeEngine, run_app

Client = TestClient[web.Request, web.Application]


def test_failed_requests_are_logged_without_bodies(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeEngine(root=tmp_path)
    fake.add("c1")

    async def body(client: Client) -> None:
        resp = await client.get("/1.0/instances/nope?secret=s3cr3t")
        assert resp.status == 404
        resp = await client.post("/1.0/instances/c1/exec",
                                 json={"command": ["id"], "user": "root", "pw": "hunter2"})
        assert resp.status == 400
        resp = await client.post("/1.0/instances/c1/files?path=/x",
                                 headers={"X-LXD-uid": "-5"}, data=b"payload-bytes")
        assert resp.status == 400
        resp = await client.request("DELETE", "/1.0/operations")
        assert resp.status == 405
        resp = await client.get("/1.0/instances/c1")
        assert resp.status == 200

    with caplog.at_level(logging.INFO, logger="cove.server"):
        run_app(fake, body)
    lines = [r.getMessage() for r in caplog.records if r.name == "cove.server"]
    assert any(line.startswith("GET /1.0/instances/nope -> 404 ") for line in lines), lines
    assert any(line.startswith("POST /1.0/instances/c1/exec -> 400 Field 'user'")
               for line in lines), lines
    assert any(line.startswith("POST /1.0/instances/c1/files -> 400 Invalid X-LXD-uid")
               for line in lines), lines
    assert any(line.startswith("DELETE /1.0/operations -> 405 Method Not Allowed") for line in lines), lines
    text = "\n".join(lines)
    assert "s3cr3t" not in text and "hunter2" not in text and "payload-bytes" not in text
    assert not any(" -> 200" in line for line in lines)
