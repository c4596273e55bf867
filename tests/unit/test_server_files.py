"""coved: /1.0/instances/NAME/files with LXD's X-LXD-* headers."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from test_server_fakes import FakeEngine, FakeFile, run_app

from cove.model.errors import BadRequest
from cove.server.routes_files import parse_mode

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    f = FakeEngine(root=tmp_path)
    f.add("c1")
    f.access.files[("c1", "/etc")] = FakeFile("directory", mode=0o755)
    f.access.files[("c1", "/etc/hostname")] = FakeFile("file", b"c1\n", uid=0, gid=0, mode=0o644)
    f.access.files[("c1", "/etc/link")] = FakeFile("symlink", target="hostname", mode=0o777)
    return f


@pytest.mark.parametrize("raw, mode", [("0644", 0o644), ("0o755", 0o755), ("420", 420),
                                       ("0100644", 0o644), ("0", 0), ("0x1ff", 0o777)])
def test_parse_mode_reads_like_lxd(raw: str, mode: int) -> None:
    assert parse_mode(raw) == mode


@pytest.mark.parametrize("raw", ["rw-r--r--", "0999", "-1", ""])
def test_parse_mode_refuses_garbage(raw: str) -> None:
    with pytest.raises(BadRequest):
        parse_mode(raw)


def test_get_file_directory_symlink_and_head(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        resp = await client.get("/1.0/instances/c1/files?path=/etc/hostname")
        assert resp.status == 200
        assert resp.headers["X-LXD-type"] == "file"
        assert resp.headers["X-LXD-mode"] == "0644"
        assert resp.headers["X-LXD-uid"] == "0" and resp.headers["X-LXD-gid"] == "0"
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert await resp.read() == b"c1\n"
        resp = await client.get("/1.0/containers/c1/files?path=/etc")
        assert resp.headers["X-LXD-type"] == "directory"
        assert resp.headers["X-LXD-mode"] == "0755"
        doc = await resp.json()
        assert doc["type"] == "sync" and doc["metadata"] == ["hostname", "link"]
        resp = await client.get("/1.0/instances/c1/files?path=/etc/link")
        assert resp.headers["X-LXD-type"] == "symlink"
        assert await resp.read() == b"hostname"
        resp = await client.head("/1.0/instances/c1/files?path=/etc/hostname")
        assert resp.status == 200 and resp.headers["X-LXD-type"] == "file"
        assert await resp.read() == b""
    run_app(fake, body)


def test_path_errors(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        # relative is relative to /, as LXD reads it (lxc file pull sends it so)
        resp = await client.get("/1.0/instances/c1/files?path=etc/hostname")
        assert resp.status == 200 and await resp.read() == b"c1\n"
        resp = await client.get("/1.0/instances/c1/files?path=/etc/host%00name")
        assert resp.status == 400
        resp = await client.get("/1.0/instances/c1/files")
        assert resp.status == 400
        resp = await client.get("/1.0/instances/c1/files?path=/nope")
        assert resp.status == 404
        resp = await client.delete("/1.0/instances/c1/files?path=/nope")
        assert resp.status == 404
    run_app(fake, body)


def test_push_small_big_append_directory_symlink_delete(fake: FakeEngine) -> None:
    big = bytes(range(256)) * 8192  # 2 MiB: spooled to a file, not held in memory

    async def body(client: Client) -> None:
        resp = await client.post("/1.0/instances/c1/files?path=/root/a.txt", data=b"one\n",
                                 headers={"X-LXD-uid": "1000", "X-LXD-gid": "100",
                                          "X-LXD-mode": "0600"})
        assert resp.status == 200 and (await resp.json())["type"] == "sync"
        f = fake.access.files[("c1", "/root/a.txt")]
        assert (f.data, f.uid, f.gid, f.mode) == (b"one\n", 1000, 100, 0o600)
        resp = await client.post("/1.0/instances/c1/files?path=/root/a.txt", data=b"two\n",
                                 headers={"X-LXD-write": "append"})
        assert resp.status == 200
        assert fake.access.files[("c1", "/root/a.txt")].data == b"one\ntwo\n"

        async def chunks() -> object:
            for i in range(0, len(big), 100_000):
                yield big[i:i + 100_000]
        resp = await client.post("/1.0/instances/c1/files?path=/root/big", data=chunks())
        assert resp.status == 200, await resp.text()
        assert fake.access.files[("c1", "/root/big")].data == big
        assert list((fake.root / "tmp").iterdir()) == []  # the spool is gone

        resp = await client.post("/1.0/instances/c1/files?path=/srv",
                                 headers={"X-LXD-type": "directory", "X-LXD-mode": "0750"})
        assert resp.status == 200
        assert fake.access.files[("c1", "/srv")].type == "directory"
        assert fake.access.files[("c1", "/srv")].mode == 0o750
        resp = await client.post("/1.0/instances/c1/files?path=/srv/l", data=b"/etc/hostname",
                                 headers={"X-LXD-type": "symlink"})
        assert resp.status == 200
        assert fake.access.files[("c1", "/srv/l")].target == "/etc/hostname"
        resp = await client.delete("/1.0/instances/c1/files?path=/srv/l")
        assert resp.status == 200 and ("c1", "/srv/l") not in fake.access.files

        for headers, words in (({"X-LXD-type": "fifo"}, "X-LXD-type"),
                               ({"X-LXD-write": "prepend"}, "X-LXD-write"),
                               ({"X-LXD-mode": "rwx"}, "X-LXD-mode"),
                               ({"X-LXD-uid": "root"}, "X-LXD-uid"),
                               ({"X-LXD-uid": "-5"}, "X-LXD-uid"),
                               ({"X-LXD-uid": "99999999999"}, "X-LXD-uid"),
                               ({"X-LXD-uid": "4294967295"}, "X-LXD-uid"),
                               ({"X-LXD-gid": "-1"}, "X-LXD-gid"),
                               ({"X-LXD-gid": "1e3"}, "X-LXD-gid"),
                               ({"X-LXD-mode": "-0644"}, "X-LXD-mode"),
                               ({"X-LXD-mode": "07777777"}, "X-LXD-mode"),
                               ({"X-LXD-type": "symlink"}, "target")):
            resp = await client.post("/1.0/instances/c1/files?path=/x", headers=headers)
            assert resp.status == 400, headers
            assert words in (await resp.json())["error"]
            assert ("c1", "/x") not in fake.access.files  # refused before anything is made
    run_app(fake, body)
