"""coved: /1.0/images uploads (raw and split), image objects, aliases."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from test_server_fakes import FakeEngine, run_app, wait_op

Client = TestClient[web.Request, web.Application]

FP = "ab" * 32


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    f = FakeEngine(root=tmp_path)
    f.add_image(FP, "busybox")
    return f


def test_list_and_get_image_object(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        doc = await (await client.get("/1.0/images")).json()
        assert doc["metadata"] == [f"/1.0/images/{FP}"]
        doc = await (await client.get("/1.0/images?recursion=1")).json()
        img = doc["metadata"][0]
        assert img["fingerprint"] == FP
        doc = await (await client.get(f"/1.0/images/{FP[:12]}")).json()  # a prefix
        img = doc["metadata"]
        assert img["aliases"] == [{"name": "busybox", "description": "alias busybox"}]
        assert img["type"] == "container" and img["auto_update"] is False
        assert img["cached"] is False and img["profiles"] == ["default"]
        assert img["expires_at"] == "0001-01-01T00:00:00Z"
        assert img["last_used_at"] == "0001-01-01T00:00:00Z"
        assert img["uploaded_at"] == "2023-11-14T22:13:21Z"
        assert img["size"] == 1234 and img["properties"] == {"os": "busybox"}
        assert "update_source" not in img
        assert (await client.get("/1.0/images/ffff")).status == 404
    run_app(fake, body)


def test_raw_upload(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        resp = await client.post("/1.0/images", data=b"tarball bytes", headers={
            "X-LXD-filename": "alpine.tar.gz", "X-LXD-public": "true",
            "X-LXD-properties": "os=alpine&description=small%20one",
            "Content-Type": "application/octet-stream"})
        assert resp.status == 202
        op = await wait_op(client, (await resp.json())["operation"])
        assert op["status"] == "Success"
        fp = op["metadata"]["fingerprint"]
        assert op["metadata"]["size"] == len(b"tarball bytes")
        got = fake.images.imported[0]
        assert got["data"] == b"tarball bytes" and got["filename"] == "alpine.tar.gz"
        assert got["public"] is True and got["meta"] is None
        assert got["properties"] == {"os": "alpine", "description": "small one"}
        assert fp in fake.images.by_fingerprint
        assert list((fake.root / "tmp").iterdir()) == []
    run_app(fake, body)


def test_split_multipart_upload(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        form = aiohttp.FormData()
        form.add_field("metadata", b"meta tar", filename="meta.tar",
                       content_type="application/octet-stream")
        form.add_field("rootfs", b"rootfs tar", filename="rootfs.tar",
                       content_type="application/octet-stream")
        resp = await client.post("/1.0/images", data=form, headers={"X-LXD-public": "1"})
        assert resp.status == 202, await resp.text()
        op = await wait_op(client, (await resp.json())["operation"])
        assert op["status"] == "Success"
        got = fake.images.imported[0]
        assert got["data"] == b"rootfs tar" and got["meta"] == b"meta tar"
        assert got["filename"] == "rootfs.tar" and got["public"] is True

        form = aiohttp.FormData()
        form.add_field("rootfs", b"x", filename="r")
        resp = await client.post("/1.0/images", data=form)
        assert resp.status == 400 and "metadata" in (await resp.json())["error"]
        form = aiohttp.FormData()
        form.add_field("metadata", b"x", filename="m")
        form.add_field("rootfs.img", b"x", filename="r")
        resp = await client.post("/1.0/images", data=form)
        assert resp.status == 400 and "Virtual-machine" in (await resp.json())["error"]
        assert list((fake.root / "tmp").iterdir()) == []
    run_app(fake, body)


def test_upload_refusals(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        resp = await client.post("/1.0/images", json={
            "source": {"type": "url", "url": "https://example.com/img"}})
        assert resp.status == 400 and "not supported" in (await resp.json())["error"]
        resp = await client.post("/1.0/images", data=b"refuse")  # the engine says no
        assert resp.status == 400 and "tarball" in (await resp.json())["error"]
        assert list((fake.root / "tmp").iterdir()) == []
        resp = await client.post("/1.0/images", data=b"x",
                                 headers={"X-LXD-properties": "%%%"})
        assert resp.status == 400
    run_app(fake, body)


def test_update_and_delete_image(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        resp = await client.patch(f"/1.0/images/{FP}", json={"properties": {"a": "1"}})
        assert resp.status == 200
        assert fake.images.by_fingerprint[FP].properties == {"os": "busybox", "a": "1"}
        resp = await client.put(f"/1.0/images/{FP}", json={"properties": {"b": "2"},
                                                           "public": True})
        assert resp.status == 200
        img = fake.images.by_fingerprint[FP]
        assert img.properties == {"b": "2"} and img.public
        resp = await client.put(f"/1.0/images/{FP}", json={"properties": {"b": 2}})
        assert resp.status == 400
        resp = await client.delete(f"/1.0/images/{FP}")
        assert resp.status == 202
        await wait_op(client, (await resp.json())["operation"])
        assert fake.images.by_fingerprint == {}
    run_app(fake, body)


def test_aliases(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        doc = await (await client.get("/1.0/images/aliases")).json()
        assert doc["metadata"] == ["/1.0/images/aliases/busybox"]
        doc = await (await client.get("/1.0/images/aliases?recursion=1")).json()
        assert doc["metadata"] == [{"name": "busybox", "description": "alias busybox",
                                    "target": FP, "type": "container"}]
        resp = await client.post("/1.0/images/aliases",
                                 json={"name": "bb", "target": FP, "description": "x"})
        assert resp.status == 200
        resp = await client.post("/1.0/images/aliases", json={"name": "bb", "target": FP})
        assert resp.status == 409
        resp = await client.post("/1.0/images/aliases", json={"name": "zz"})
        assert resp.status == 400
        doc = await (await client.get("/1.0/images/aliases/bb")).json()
        assert doc["metadata"]["target"] == FP and doc["metadata"]["type"] == "container"
        resp = await client.patch("/1.0/images/aliases/bb", json={"description": "y"})
        assert resp.status == 200
        assert fake.images.get_alias("bb").description == "y"
        resp = await client.put("/1.0/images/aliases/bb", json={"target": FP})
        assert resp.status == 200 and fake.images.get_alias("bb").description == ""
        resp = await client.post("/1.0/images/aliases/bb", json={"name": "cc"})
        assert resp.status == 200 and fake.images.get_alias("cc").target == FP
        resp = await client.delete("/1.0/images/aliases/cc")
        assert resp.status == 200
        assert (await client.get("/1.0/images/aliases/cc")).status == 404
    run_app(fake, body)


@pytest.mark.parametrize(("ctype", "data", "words"), [
    ("multipart/form-data", b"--x\r\n\r\n--x--\r\n", "Malformed multipart upload: boundary"),
    ("multipart/form-data; boundary=xx",
     b"--xx\r\nContent-Disposition: form-data; name=\"r\xc3\xb6\xff\"\r\n\r\nv\r\n--xx--\r\n", ""),
    ("multipart/form-data; boundary=xx",
     b"--xx\r\nBad Header Line\r\n\r\nv\r\n--xx--\r\n", ""),
    ("multipart/form-data; boundary=xx",
     (b"--xx\r\nContent-Disposition: form-data; name=\"metadata\"\r\n"
      b"Content-Encoding: zork\r\n\r\nv\r\n--xx--\r\n"), ""),
], ids=["no-boundary", "non-ascii-name", "bad-header", "unknown-encoding"])
def test_malformed_multipart_is_a_400(fake: FakeEngine, ctype: str, data: bytes,
                                      words: str) -> None:
    async def body(client: Client) -> None:
        resp = await client.post("/1.0/images", data=data, headers={"Content-Type": ctype})
        doc = await resp.json()
        assert resp.status == 400, doc
        assert doc["type"] == "error" and words in doc["error"], doc
        tmp = fake.root / "tmp"
        assert not tmp.exists() or list(tmp.iterdir()) == []
        assert fake.images.imported == []
    run_app(fake, body)


def test_export_unified_and_split(fake: FakeEngine) -> None:
    fake.images.add(FP, "busybox")
    fake.publisher.exports[FP] = [("", f"{FP}.tar.xz", b"unified bytes")]

    async def body(client: Client) -> None:
        resp = await client.get(f"/1.0/images/{FP[:12]}/export")
        assert resp.status == 200 and await resp.read() == b"unified bytes"
        assert resp.headers["Content-Disposition"] == f"inline;filename={FP}.tar.xz"
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert resp.headers["Content-Length"] == "13"
        fake.publisher.exports[FP] = [("metadata", f"meta-{FP}.tar", b"META"),
                                      ("rootfs", f"{FP}.tar", b"ROOT\r\n")]
        resp = await client.get(f"/1.0/images/{FP}/export")
        assert resp.status == 200
        assert resp.content_type == "multipart/form-data"
        reader = aiohttp.MultipartReader.from_response(resp)
        got = []
        while (part := await reader.next()) is not None:
            assert isinstance(part, aiohttp.BodyPartReader)
            got.append((part.name, part.filename, bytes(await part.read())))
        assert got == [("metadata", f"meta-{FP}.tar", b"META"),
                       ("rootfs", f"{FP}.tar", b"ROOT\r\n")]
        assert (await client.get("/1.0/images/ffff/export")).status == 404
    run_app(fake, body)


def test_publish_request(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        resp = await client.post("/1.0/images", json={
            "source": {"type": "container", "name": "c1"}, "public": True,
            "aliases": [{"name": "a1", "description": "x"}], "properties": {"k": "v"},
            "compression_algorithm": "gzip"})
        assert resp.status == 202
        op = await (await client.get((await resp.json())["operation"] + "/wait")).json()
        assert op["metadata"]["metadata"]["fingerprint"] == fake.publisher.PUBLISHED
        assert fake.publisher.published == [{"type": "container", "name": "c1",
                                             "aliases": ["a1"], "properties": {"k": "v"},
                                             "public": True, "project": "default"}]
        for bad, field in [({"source": {"type": "instance"}}, "source.name"),
                           ({"source": {"type": "instance", "name": "c"}, "aliases": [3]},
                            "aliases[0].name"),
                           ({"source": {"type": "instance", "name": "c"}, "public": "y"},
                            "public")]:
            resp = await client.post("/1.0/images", json=bad)
            assert resp.status == 400 and field in (await resp.json())["error"], bad
    run_app(fake, body)
