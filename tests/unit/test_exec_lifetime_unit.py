"""coved: an exec session ends with its client (the control websocket, or
stdout's when there is no control) and with its operation (DELETE); a
command that ended on its own is never killed afterwards. Against the fake
engine's scripted sessions; tests/integration/test_exec_lifetime.py holds
the same to real containers and real clients."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from test_server_exec import connect, read_stream, start
from test_server_fakes import FakeEngine, run_app, wait_op

from cove.engine.operations import Operations
from cove.model.errors import Conflict

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    f = FakeEngine(root=tmp_path)
    f.add("c1")
    return f


async def _session_started(fake: FakeEngine) -> None:
    for _ in range(100):
        if fake.access.sessions:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the command never started")


def test_control_closed_mid_command_kills_it(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        url, fds = await start(client, ["sleep"])
        control = await connect(client, url, fds["control"])
        ws = {k: await connect(client, url, fds[k]) for k in ("0", "1", "2")}
        await _session_started(fake)
        await control.close()
        await asyncio.gather(read_stream(ws["1"]), read_stream(ws["2"]))
        op = await wait_op(client, url)
        assert fake.access.sessions[0].killed
        assert op["status"] == "Success" and op["metadata"]["return"] == 137
    run_app(fake, body)


def test_stdout_closed_without_control_kills_it(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        url, fds = await start(client, ["sleep"])
        ws = {k: await connect(client, url, fds[k]) for k in ("0", "1", "2")}
        await _session_started(fake)
        await ws["1"].close()
        # and hang up the others when the server closes them, as lxc does (left
        # open, the server would wait out its 2 s close timeout on each)
        op, _, err = await asyncio.gather(wait_op(client, url), read_stream(ws["0"]),
                                          read_stream(ws["2"]))
        assert err == b""
        assert fake.access.sessions[0].killed
        assert op["metadata"]["return"] == 137
    run_app(fake, body)


def test_closing_after_the_end_kills_nothing(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        url, fds = await start(client, ["echo", "hi"])
        control = await connect(client, url, fds["control"])
        ws = {k: await connect(client, url, fds[k]) for k in ("0", "1", "2")}
        out, _ = await asyncio.gather(read_stream(ws["1"]), read_stream(ws["2"]))
        assert out == b"hi\n"
        await control.close()
        op = await wait_op(client, url)
        assert op["status"] == "Success" and op["metadata"]["return"] == 0
        assert not fake.access.sessions[0].killed
    run_app(fake, body)


def test_delete_operation_kills_and_cancels(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        url, fds = await start(client, ["sleep"])
        ws = {k: await connect(client, url, fds[k]) for k in ("control", "0", "1", "2")}
        await _session_started(fake)
        resp = await client.delete(url)
        assert resp.status == 200, await resp.text()
        await asyncio.gather(read_stream(ws["1"]), read_stream(ws["2"]))
        op = await wait_op(client, url)
        assert op["status"] == "Cancelled"
        assert fake.access.sessions[0].killed
    run_app(fake, body)


def test_delete_operation_before_the_websockets(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        url, _ = await start(client, ["sleep"])
        resp = await client.delete(url)
        assert resp.status == 200
        op = await wait_op(client, url)
        assert op["status"] == "Cancelled"
        assert not fake.access.sessions  # nothing was started
    run_app(fake, body)


def test_operation_cancel_hooks() -> None:
    ops = Operations()
    release = threading.Event()
    calls: list[str] = []
    op = ops.run(lambda op: release.wait(5), description="x", may_cancel=True)
    op.on_cancel(lambda: (calls.append("hook"), release.set()))
    op.cancel()
    op.cancel()  # idempotent: the hook runs once
    assert op.wait(5)
    assert calls == ["hook"] and op.status.value == "Cancelled"
    late: list[str] = []
    op.on_cancel(lambda: late.append("late"))  # after the end: not called
    assert late == []
    fixed = ops.run(lambda op: None, description="y")
    with pytest.raises(Conflict):
        fixed.cancel()
