"""coved: server info, envelopes, errors, and the fixed collections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from test_server_fakes import FakeEngine, run_app

from cove.model.errors import CoveError
from cove.server import render
from cove.server.routes_server import API_EXTENSIONS

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    return FakeEngine(root=tmp_path)


def assert_error(body: dict[str, Any], status: int) -> None:
    assert body["type"] == "error"
    assert body["error_code"] == status
    assert body["status_code"] == 0 and body["metadata"] is None
    assert isinstance(body["error"], str) and body["error"]


def test_root_and_server_info(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        resp = await client.get("/")
        assert (await resp.json())["metadata"] == ["/1.0"]
        resp = await client.get("/1.0")
        assert resp.status == 200
        doc = await resp.json()
        assert doc["type"] == "sync" and doc["status_code"] == 200 and doc["error_code"] == 0
        meta = doc["metadata"]
        assert meta["api_version"] == "1.0" and meta["api_status"] == "stable"
        assert meta["auth"] == "trusted" and meta["public"] is False
        assert meta["auth_methods"] == ["tls"] and meta["config"] == {}
        for ext in ("instances", "container_exec_recording", "container_exec_signal_handling",
                    "container_exec_user_group_cwd", "file_delete", "file_append",
                    "file_symlinks", "directory_manipulation", "container_full"):
            assert ext in meta["api_extensions"]
        env = meta["environment"]
        assert env["server"] == "cove" and env["server_clustered"] is False
        assert env["driver_version"] == "1.1.5"  # from the engine
        assert isinstance(env["architectures"], list) and env["architectures"]
        assert isinstance(env["server_pid"], int) and env["project"] == "default"
    run_app(fake, body)


def test_extensions_are_unique() -> None:
    assert len(API_EXTENSIONS) == len(set(API_EXTENSIONS))


def test_unknown_path_and_wrong_method_are_lxd_errors(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        resp = await client.get("/1.0/nothing-here")
        assert resp.status == 404
        assert_error(await resp.json(), 404)
        resp = await client.delete("/1.0")
        assert resp.status == 405
        assert_error(await resp.json(), 405)
        assert "GET" in resp.headers["Allow"]
    run_app(fake, body)


@pytest.mark.parametrize("payload, problem", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"", "empty"),
    (b'{"name": "c1", "source": {"type": "image", "alias": "a"}, "config": {"x": 1}}',
     "'config'"),
    (b'{"name": "c1", "source": {"type": "image", "alias": "a"}, "ephemeral": "yes"}',
     "'ephemeral' must be a boolean"),
    (b'{"name": 5}', "'name' must be a string"),
])
def test_bad_bodies_are_400_naming_the_problem(fake: FakeEngine, payload: bytes,
                                               problem: str) -> None:
    async def body(client: Client) -> None:
        resp = await client.post("/1.0/instances", data=payload,
                                 headers={"Content-Type": "application/json"})
        assert resp.status == 400
        doc = await resp.json()
        assert_error(doc, 400)
        assert problem in doc["error"]
    run_app(fake, body)


def test_unexpected_exception_is_a_one_line_500(fake: FakeEngine,
                                                caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> dict[str, Any]:
        raise ValueError("disk on fire\nsecond line with details")
    fake.server_environment = broken  # type: ignore[method-assign]

    async def body(client: Client) -> None:
        resp = await client.get("/1.0")
        assert resp.status == 500
        doc = await resp.json()
        assert_error(doc, 500)
        assert doc["error"] == "Internal error: ValueError: disk on fire"
        assert "Traceback" not in doc["error"]
    run_app(fake, body)
    assert any("Traceback" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_cove_errors_keep_their_status(fake: FakeEngine) -> None:
    class Teapot(CoveError):
        status = 418

    def teapot() -> dict[str, Any]:
        raise Teapot("short and stout")
    fake.server_environment = teapot  # type: ignore[method-assign]

    async def body(client: Client) -> None:
        resp = await client.get("/1.0")
        assert resp.status == 418
        doc = await resp.json()
        assert doc["error"] == "short and stout" and doc["error_code"] == 418
    run_app(fake, body)


def test_profiles_networks_pools_certificates(fake: FakeEngine) -> None:
    fake.add("c1")

    async def body(client: Client) -> None:
        doc = await (await client.get("/1.0/profiles")).json()
        assert doc["metadata"] == ["/1.0/profiles/default"]
        doc = await (await client.get("/1.0/profiles/default")).json()
        prof = doc["metadata"]
        assert prof["name"] == "default" and prof["config"] == {} and prof["devices"] == {}
        assert prof["used_by"] == ["/1.0/instances/c1"]
        doc = await (await client.get("/1.0/profiles?recursion=1")).json()
        assert doc["metadata"][0]["name"] == "default"
        resp = await client.get("/1.0/profiles/other")
        assert resp.status == 404
        for path in ("/1.0/networks", "/1.0/certificates"):
            doc = await (await client.get(path)).json()
            assert doc["metadata"] == []
        doc = await (await client.get("/1.0/storage-pools")).json()
        assert doc["metadata"] == ["/1.0/storage-pools/default"]  # issue 9: the root's pool
        assert (await client.get("/1.0/networks/lxdbr0")).status == 404
        resp = await client.get("/1.0/profiles?project=other")
        assert resp.status == 404
        assert "Project not found" in (await resp.json())["error"]
    run_app(fake, body)


def test_rfc3339() -> None:
    assert render.rfc3339(0) == "1970-01-01T00:00:00Z"
    assert render.rfc3339(1700000000.5) == "2023-11-14T22:13:20.500000Z"
    assert render.rfc3339(1700000000.9999999) == "2023-11-14T22:13:21Z"


def test_bad_recursion_is_400(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        resp = await client.get("/1.0/instances?recursion=deep")
        assert resp.status == 400
        assert "recursion" in (await resp.json())["error"]
    run_app(fake, body)


def test_exported_names() -> None:
    import cove.server
    assert sorted(cove.server.__all__) == ["bind_unix", "make_app"]
    for name in cove.server.__all__:
        assert getattr(cove.server, name) is not None


def test_openapi_document_covers_every_route(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        resp = await client.get("/1.0/openapi.json")
        assert resp.status == 200
        doc = await resp.json()
        assert doc["openapi"].startswith("3.")
        routed = {(r.method.lower(), r.resource.canonical)
                  for r in client.app.router.routes()
                  if r.resource is not None and r.method not in ("HEAD", "*")}
        described = {(m, p) for p, ops in doc["paths"].items() for m in ops}
        assert described == routed
        post = doc["paths"]["/1.0/instances"]["post"]
        ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/InstancesPost"
        props = doc["components"]["schemas"]["InstancesPost"]["properties"]
        assert props["name"] == {"type": "string"} and props["start"] == {"type": "boolean"}
        assert props["config"]["additionalProperties"] == {"type": "string"}
        assert props["source"]["properties"]["alias"] == {"type": "string"}
        execp = doc["components"]["schemas"]["InstanceExecPost"]["properties"]
        assert execp["command"]["items"] == {"type": "string"}
        assert "wait-for-websocket" in execp
        # every body a handler parses is described (PUT/PATCH through a helper too)
        for path, method in (("/1.0/images/{fingerprint}", "patch"),
                             ("/1.0/networks/{name}", "put"),
                             ("/1.0/instances/{name}/state", "put")):
            assert "requestBody" in doc["paths"][path][method], (path, method)
        resp = await client.get("/1.0/openapi.json")  # made once, served again
        assert await resp.json() == doc
    run_app(fake, body)
