"""coved: ``POST /1.0/images`` and ``POST /1.0/instances`` with a remote
image source (simplestreams or lxd) go to ``engine.image_pulls`` with what
LXD's clients send; bad sources are 400s naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from test_server_fakes import FakeEngine, run_app, wait_op

Client = TestClient[web.Request, web.Application]

SERVER = "https://images.example"


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    return FakeEngine(root=tmp_path)


def test_lxc_launch_body_goes_to_image_pulls(fake: FakeEngine) -> None:
    """What ``lxc launch images:debian/12 c1`` sends (client/lxd_instances.go)."""
    src = {"type": "image", "mode": "pull", "server": SERVER, "protocol": "simplestreams",
           "alias": "debian/12", "certificate": ""}

    async def body(client: Client) -> None:
        resp = await client.post("/1.0/instances", json={"name": "c1", "source": src})
        assert resp.status == 202
        await wait_op(client, (await resp.json())["operation"])
    run_app(fake, body)
    assert fake.image_pulls.pulls == [{"source": {"type": "image", "alias": "debian/12",
                                                  "server": SERVER, "protocol": "simplestreams",
                                                  "mode": "pull"},
                                       "name": "c1", "project": "default"}]


def test_image_copy_body_goes_to_image_pulls(fake: FakeEngine) -> None:
    """``lxc image copy R:alias local: --alias x --auto-update --public``: ImagesPost."""
    src = {"type": "image", "mode": "pull", "server": SERVER, "protocol": "lxd",
           "fingerprint": "ab" * 32, "secret": "s3"}

    async def body(client: Client) -> None:
        resp = await client.post("/1.0/images", json={
            "source": src, "aliases": [{"name": "x", "description": ""}],
            "auto_update": True, "public": True})
        assert resp.status == 202
        await wait_op(client, (await resp.json())["operation"])
    run_app(fake, body)
    [pull] = fake.image_pulls.pulls
    assert pull["aliases"] == ["x"] and pull["auto_update"] is True and pull["public"] is True
    assert pull["source"]["secret"] == "s3" and pull["source"]["protocol"] == "lxd"


@pytest.mark.parametrize(("extra", "words"), [
    ({"source": {"type": "image", "server": SERVER, "protocol": "nope", "alias": "a"}},
     "Invalid source protocol"),
    ({"source": {"type": "image", "server": SERVER, "mode": "relay", "alias": "a"}},
     "Invalid source mode"),
    ({"source": {"type": "image", "server": SERVER}}, "alias"),
    ({"source": {"type": "image", "server": "ftp://x", "alias": "a"}}, "Invalid image server"),
    ({"source": {"type": "image", "server": SERVER, "alias": "a"}, "aliases": "x"}, "aliases"),
    ({"source": {"type": "image", "server": SERVER, "alias": "a"}, "public": "yes"}, "public"),
])
def test_bad_pull_bodies(fake: FakeEngine, extra: dict[str, object], words: str) -> None:
    async def body(client: Client) -> None:
        resp = await client.post("/1.0/images", json=extra)
        assert resp.status == 400
        assert words in (await resp.json())["error"]
    run_app(fake, body)
    assert fake.image_pulls.pulls == []
