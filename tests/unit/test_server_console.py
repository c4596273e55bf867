"""coved: ``POST .../console`` (attach through websockets ``0`` and
``control``), ``DELETE .../console`` and the ``console`` extension, against
the fake engine's console (a real SEQPACKET pair behind it)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient
from test_server_fakes import FakeEngine, run_app, wait_op

from cove.model.states import Status

Client = TestClient[web.Request, web.Application]
WS = Any


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    f = FakeEngine(root=tmp_path)
    f.add("c1")
    return f


async def attach(client: Client, **body: Any) -> tuple[str, dict[str, str]]:
    resp = await client.post("/1.0/instances/c1/console",
                             json={"type": "console", "width": 100, "height": 30, **body})
    assert resp.status == 202, await resp.text()
    doc = await resp.json()
    assert doc["metadata"]["class"] == "websocket"
    assert doc["metadata"]["may_cancel"] is True
    return doc["operation"], doc["metadata"]["metadata"]["fds"]


async def connect(client: Client, url: str, secret: str) -> WS:
    return await client.ws_connect(f"{url}/websocket?secret={secret}")


async def read_until(ws: WS, needle: bytes) -> bytes:
    out = b""
    while needle not in out:
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type is WSMsgType.BINARY, msg
        out += msg.data
    return out


def test_console_extension_is_announced(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        doc = await (await client.get("/1.0")).json()
        assert "console" in doc["metadata"]["api_extensions"]
    run_app(fake, body)


def test_attach_type_resize_and_detach(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        url, fds = await attach(client)
        assert set(fds) == {"0", "control"}
        control = await connect(client, url, fds["control"])  # lxc: control first
        console = await connect(client, url, fds["0"])
        await read_until(console, b"login: ")
        await console.send_bytes(b"echo hi\n")
        assert b"got:echo hi\n" in await read_until(console, b"got:echo hi\n")
        await control.send_str(json.dumps({"command": "window-resize",
                                           "args": {"width": "132", "height": "40"}}))
        session = fake.console.sessions[0]
        for _ in range(100):
            if (132, 40) in session.resizes:
                break
            await asyncio.sleep(0.02)
        assert session.resizes == [(100, 30), (132, 40)]
        await control.close()  # Ctrl+a q
        # read the server's close as lxc does (the reply acknowledges it; unread,
        # the server would wait out its 2 s close timeout before the op ends)
        msg = await asyncio.wait_for(console.receive(), 5)
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
        op = await wait_op(client, url)
        assert op["status"] == "Success"
        assert session.closed
    run_app(fake, body)


def test_one_client_at_a_time(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        url, fds = await attach(client)
        resp = await client.post("/1.0/instances/c1/console", json={})
        assert resp.status == 409
        assert "already in use" in (await resp.json())["error"]
        console = await connect(client, url, fds["0"])
        await console.close()  # the first goes: the next may attach
        await wait_op(client, url)
        url2, _ = await attach(client)
        assert (await client.delete(url2)).status == 200
        assert (await wait_op(client, url2))["status"] == "Cancelled"
    run_app(fake, body)


def test_console_end_ends_the_operation(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        url, fds = await attach(client)
        console = await connect(client, url, fds["0"])
        await read_until(console, b"login: ")
        fake.console.sessions[0].end()  # the instance stopped
        msg = await asyncio.wait_for(console.receive(), 5)  # closed (and acknowledged)
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
        op = await wait_op(client, url)
        assert op["status"] == "Success"
    run_app(fake, body)


@pytest.mark.parametrize(("body", "needle"), [
    ({"type": "vga"}, "VGA console is only supported by virtual machines"),
    ({"type": "serial"}, "Unknown console type"),
    ({"width": "wide"}, "width"),
    ({"height": -1}, "height"),
])
def test_bad_requests_name_the_field(fake: FakeEngine, body: dict[str, Any],
                                     needle: str) -> None:
    async def run(client: Client) -> None:
        resp = await client.post("/1.0/instances/c1/console", json=body)
        assert resp.status == 400
        assert needle in (await resp.json())["error"]
        assert not fake.console.sessions
    run_app(fake, run)


def test_not_running_and_unknown(fake: FakeEngine) -> None:
    fake.instances.by_name["c1"].status = Status.STOPPED

    async def body(client: Client) -> None:
        resp = await client.post("/1.0/instances/c1/console", json={})
        assert resp.status == 400 and "not running" in (await resp.json())["error"]
        resp = await client.post("/1.0/instances/nope/console", json={})
        assert resp.status == 404
    run_app(fake, body)


def test_delete_clears_the_log(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        resp = await client.delete("/1.0/instances/c1/console")
        assert resp.status == 200
        assert fake.console.cleared == ["c1"]
        assert (await client.delete("/1.0/instances/nope/console")).status == 404
    run_app(fake, body)
