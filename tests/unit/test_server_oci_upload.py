"""coved: an OCI layout uploaded to /1.0/images (cove's X-Cove-Image-Format)
goes to ``engine.oci``, with its ref; other uploads do not."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient
from test_server_fakes import FakeEngine, run_app, wait_op

Client = TestClient[web.Request, web.Application]


def test_oci_layout_upload_goes_to_engine_oci(tmp_path: Path) -> None:
    fake = FakeEngine(root=tmp_path)

    async def body(client: Client) -> None:
        resp = await client.post("/1.0/images", data=b"layout tar", headers={
            "Content-Type": "application/octet-stream", "X-Cove-Image-Format": "oci-layout",
            "X-Cove-OCI-Ref": "v1"})
        assert resp.status == 202
        op = await wait_op(client, (await resp.json())["operation"])
        assert op["status"] == "Success"
        resp = await client.post("/1.0/images", data=b"layout tar", headers={
            "Content-Type": "application/octet-stream", "X-Cove-Image-Format": "oci-layout"})
        await wait_op(client, (await resp.json())["operation"])
        resp = await client.post("/1.0/images", data=b"tarball", headers={
            "Content-Type": "application/octet-stream"})
        await wait_op(client, (await resp.json())["operation"])

    run_app(fake, body)
    assert fake.oci.archives == ["v1", None]
    assert len(fake.images.imported) == 1
