"""coved: exec over websockets (against real pipes and a real pty), exec
without websockets (record-output), and the exec logs."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient
from test_server_fakes import FakeEngine, run_app, wait_op

from cove.model.states import Status
from cove.server import routes_exec

Client = TestClient[web.Request, web.Application]
WS = Any  # aiohttp's ClientWebSocketResponse


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    f = FakeEngine(root=tmp_path)
    f.add("c1")
    return f


async def start(client: Client, command: list[str], **extra: Any) -> tuple[str, dict[str, str]]:
    resp = await client.post("/1.0/instances/c1/exec", json={
        "command": command, "environment": {"TERM": "xterm"}, "wait-for-websocket": True,
        "interactive": False, **extra})
    assert resp.status == 202, await resp.text()
    doc = await resp.json()
    assert doc["metadata"]["class"] == "websocket"
    return doc["operation"], doc["metadata"]["metadata"]["fds"]


async def connect(client: Client, url: str, secret: str) -> WS:
    return await client.ws_connect(f"{url}/websocket?secret={secret}")


async def read_stream(ws: WS) -> bytes:
    """Binary messages until LXD's barrier (empty text) or a close; then hang
    up, as ``lxc`` does (the server ends the operation once its outputs are
    closed, or after a short grace when a client never answers the close)."""
    out = b""
    async for msg in ws:
        if msg.type is WSMsgType.BINARY:
            out += msg.data
        else:
            break
    await ws.close()
    return out


def test_exec_copies_stdin_and_outputs_and_reports_the_code(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        url, fds = await start(client, ["cat"])
        assert set(fds) == {"0", "1", "2", "control"}
        control = await connect(client, url, fds["control"])
        stdin = await connect(client, url, fds["0"])
        await stdin.send_bytes(b"hello ")
        await stdin.send_bytes(b"world\n")
        await stdin.send_str("")  # end of input, as pylxd sends it
        stdout = await connect(client, url, fds["1"])
        stderr = await connect(client, url, fds["2"])
        out, err = await asyncio.gather(read_stream(stdout), read_stream(stderr))
        assert out == b"hello world\n" and err == b""
        op = await wait_op(client, url)
        assert op["status"] == "Success"
        assert op["metadata"]["return"] == 0
        assert set(op["metadata"]["fds"]) == {"0", "1", "2", "control"}
        for ws in (control, stdin, stdout, stderr):
            await ws.close()
        for _ in range(50):
            if fake.access.sessions[0].closed:
                break
            await asyncio.sleep(0.05)
        assert fake.access.sessions[0].closed
    run_app(fake, body)


def test_exec_nonzero_exit_and_stderr(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        url, fds = await start(client, ["fail"])
        ws = {k: await connect(client, url, fds[k]) for k in ("0", "1", "2")}
        out, err = await asyncio.gather(read_stream(ws["1"]), read_stream(ws["2"]))
        assert (out, err) == (b"some out\n", b"boom\n")
        op = await wait_op(client, url)
        assert op["metadata"]["return"] == 3 and op["status"] == "Success"
        for w in ws.values():
            await w.close()
    run_app(fake, body)


def test_exec_big_output_is_complete(fake: FakeEngine) -> None:
    size = 4 << 20

    async def body(client: Client) -> None:
        url, fds = await start(client, ["big", str(size)])
        ws = {k: await connect(client, url, fds[k]) for k in ("0", "1", "2")}
        await asyncio.sleep(0.3)  # let the pipes and socket buffers fill up
        out, _ = await asyncio.gather(read_stream(ws["1"]), read_stream(ws["2"]))
        assert len(out) == size
        assert (await wait_op(client, url))["metadata"]["return"] == 0
        for w in ws.values():
            await w.close()
    run_app(fake, body)


def test_exec_interactive_pty_resize_and_input(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        url, fds = await start(client, ["sh"], interactive=True, width=100, height=30)
        assert set(fds) == {"0", "control"}
        control = await connect(client, url, fds["control"])
        await control.send_str(json.dumps({"command": "window-resize",
                                           "args": {"width": "120", "height": "40"}}))
        tty = await connect(client, url, fds["0"])
        await tty.send_bytes(b"hi\n")
        seen = b""
        while b"got:hi" not in seen:
            msg = await asyncio.wait_for(tty.receive(), 5)
            assert msg.type is WSMsgType.BINARY
            seen += msg.data
        await control.send_str(json.dumps({"command": "window-resize",
                                           "args": {"width": "80", "height": "20"}}))
        await asyncio.sleep(0.1)
        await tty.send_bytes(b"exit\n")
        await read_stream(tty)
        op = await wait_op(client, url)
        assert op["metadata"]["return"] == 7
        session = fake.access.sessions[0]
        assert session.req.interactive and session.req.width == 120  # resize before start
        assert (80, 20) in session.resizes
        await tty.close()
        await control.close()
    run_app(fake, body)


def test_exec_signal_through_control(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        url, fds = await start(client, ["sleep"])
        control = await connect(client, url, fds["control"])
        ws = {k: await connect(client, url, fds[k]) for k in ("0", "1", "2")}
        await asyncio.sleep(0.2)
        await control.send_str(json.dumps({"command": "signal", "signal": 15}))
        await asyncio.gather(read_stream(ws["1"]), read_stream(ws["2"]))
        op = await wait_op(client, url)
        assert op["metadata"]["return"] == 128 + 15
        assert fake.access.sessions[0].signals == [15]
        for w in (control, *ws.values()):
            await w.close()
    run_app(fake, body)


def test_exec_ends_even_if_a_child_keeps_the_output_open(
        fake: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routes_exec, "_DRAIN_GRACE", 0.3)

    async def body(client: Client) -> None:
        url, fds = await start(client, ["daemon", "30"])
        ws = {k: await connect(client, url, fds[k]) for k in ("0", "1", "2")}
        t0 = time.monotonic()
        out, _ = await asyncio.gather(read_stream(ws["1"]), read_stream(ws["2"]))
        op = await wait_op(client, url)
        assert out == b"started\n" and op["metadata"]["return"] == 0
        assert time.monotonic() - t0 < 5
        for w in ws.values():
            await w.close()
    run_app(fake, body)


def test_exec_user_group_cwd_reach_the_engine(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        url, fds = await start(client, ["env"], user=1000, group=0, cwd="/tmp",
                               environment={"A": "b"})
        ws = {k: await connect(client, url, fds[k]) for k in ("0", "1", "2")}
        out, _ = await asyncio.gather(read_stream(ws["1"]), read_stream(ws["2"]))
        seen = json.loads(out)
        assert seen == {"env": {"A": "b"}, "user": 1000, "cwd": "/tmp"}
        await wait_op(client, url)
        for w in ws.values():
            await w.close()
    run_app(fake, body)


def test_exec_refusals_happen_before_any_operation(fake: FakeEngine) -> None:
    fake.add("off", Status.STOPPED)
    fake.add("ice", Status.FROZEN)

    async def body(client: Client) -> None:
        for name, words in (("off", "Instance is not running"), ("ice", "Instance is frozen")):
            resp = await client.post(f"/1.0/instances/{name}/exec",
                                     json={"command": ["true"], "wait-for-websocket": True})
            assert resp.status == 400
            assert (await resp.json())["error"] == words
        bads: list[dict[str, Any]] = [
            {"command": "ls -l"}, {"command": []}, {"command": ["ls", 1]},
            {"command": ["ls"], "width": "80"}, {"command": ["ls"], "user": -1}]
        for bad in bads:
            resp = await client.post("/1.0/instances/c1/exec", json=bad)
            assert resp.status == 400, bad
        resp = await client.post("/1.0/instances/ghost/exec", json={"command": ["ls"]})
        assert resp.status == 404
        assert fake.operations.all() == []
    run_app(fake, body)


def test_websocket_secrets(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        url, fds = await start(client, ["echo", "x"])
        resp = await client.get(f"{url}/websocket?secret=wrong")
        assert resp.status == 403
        resp = await client.get("/1.0/operations/nope/websocket?secret=x")
        assert resp.status == 404
        ws = {k: await connect(client, url, fds[k]) for k in ("0", "1", "2")}
        resp = await client.get(f"{url}/websocket?secret={fds['1']}")  # used already
        assert resp.status == 403
        out, _ = await asyncio.gather(read_stream(ws["1"]), read_stream(ws["2"]))
        assert out == b"x\n"
        await wait_op(client, url)
        for w in ws.values():
            await w.close()
        # a task operation has no websockets
        fake.add("c2", Status.STOPPED)
        resp = await client.put("/1.0/instances/c2/state", json={"action": "start"})
        task_url = (await resp.json())["operation"]
        resp = await client.get(f"{task_url}/websocket?secret=x")
        assert resp.status == 400
    run_app(fake, body)


def test_exec_that_fails_to_start_fails_the_operation(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        url, fds = await start(client, ["nouser"])
        ws = {k: await connect(client, url, fds[k]) for k in ("0", "1", "2")}
        op = await wait_op(client, url)
        assert op["status"] == "Failure" and op["err"] == "User not found: nobody"
        msg = await asyncio.wait_for(ws["1"].receive(), 5)
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
        for w in ws.values():
            await w.close()
    run_app(fake, body)


def test_exec_without_websockets_records_output(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        resp = await client.post("/1.0/instances/c1/exec", json={
            "command": ["fail"], "wait-for-websocket": False, "record-output": True})
        assert resp.status == 202
        url = (await resp.json())["operation"]
        op_id = url.rsplit("/", 1)[1]
        op = await wait_op(client, url)
        assert op["status"] == "Success"
        meta = op["metadata"]
        assert meta["return"] == 3
        assert meta["output"] == {"1": f"/1.0/instances/c1/logs/exec_{op_id}.stdout",
                                  "2": f"/1.0/instances/c1/logs/exec_{op_id}.stderr"}
        resp = await client.get(meta["output"]["2"])
        assert resp.status == 200 and await resp.text() == "boom\n"
        logs = (await (await client.get("/1.0/instances/c1/logs")).json())["metadata"]
        assert logs == ["/1.0/instances/c1/logs/console.log",
                        f"/1.0/instances/c1/logs/exec_{op_id}.stderr",
                        f"/1.0/instances/c1/logs/exec_{op_id}.stdout"]
        resp = await client.delete(meta["output"]["1"])
        assert resp.status == 200
        assert (await client.get(meta["output"]["1"])).status == 404
        # without record-output: only the code
        resp = await client.post("/1.0/instances/c1/exec", json={
            "command": ["echo", "hi"], "wait-for-websocket": False})
        op = await wait_op(client, (await resp.json())["operation"])
        assert op["metadata"] == {"return": 0}
        # an engine refusal is a 400 on the POST itself
        resp = await client.post("/1.0/instances/c1/exec", json={
            "command": ["nouser"], "wait-for-websocket": False})
        assert resp.status == 400
    run_app(fake, body)


def test_console_log_and_follow(fake: FakeEngine, tmp_path: Path) -> None:
    log = tmp_path / "logs" / "c1.log"

    async def body(client: Client) -> None:
        resp = await client.get("/1.0/instances/c1/logs/console.log")
        assert resp.status == 200 and await resp.text() == ""  # nothing logged yet
        log.parent.mkdir()
        log.write_text("line 1\n")
        for path in ("/1.0/instances/c1/logs/console.log", "/1.0/instances/c1/logs/lxc.log",
                     "/1.0/instances/c1/console"):
            resp = await client.get(path)
            assert resp.status == 200 and await resp.text() == "line 1\n"
        for bad in ("..", "a..b", ".hidden"):
            resp = await client.get(f"/1.0/instances/c1/logs/{bad}")
            assert resp.status in (400, 404)
        resp = await client.get("/1.0/instances/c1/logs/%2e%2e")
        assert resp.status in (400, 404)
        resp = await client.delete("/1.0/instances/c1/logs/console.log")
        assert resp.status == 400
        resp = await client.post("/1.0/instances/c1/console", json={"type": "vga"})
        assert resp.status == 400 and "VGA" in (await resp.json())["error"]

        # follow: what is appended arrives, and the stream ends when the instance stops
        resp = await client.get("/1.0/instances/c1/logs/console.log?follow=1")
        assert resp.status == 200
        first = await asyncio.wait_for(resp.content.readline(), 5)
        assert first == b"line 1\n"
        with log.open("a") as f:
            f.write("line 2\n")
        second = await asyncio.wait_for(resp.content.readline(), 5)
        assert second == b"line 2\n"
        fake.instances.by_name["c1"].status = Status.STOPPED
        rest = await asyncio.wait_for(resp.content.read(), 5)
        assert rest == b""
    run_app(fake, body)


@pytest.mark.parametrize(("bad", "words"), [
    ({"command": ["echo", "a\x00b"]}, "command[1] contains a NUL"),
    ({"command": ["true"], "environment": {"X": "a\x00"}}, "NUL"),
    ({"command": ["true"], "environment": {"X\x00": "a"}}, "NUL"),
    ({"command": ["true"], "cwd": "/tmp\x00/x"}, "cwd contains a NUL"),
    ({"command": ["echo", "x" * (128 * 1024)]}, "command[1] is too long"),
    ({"command": ["true"], "environment": {"BIG": "x" * (128 * 1024)}}, "too long"),
    ({"command": ["true"], "environment": {"": "x"}}, "invalid variable name"),
    ({"command": ["true"], "environment": {"A=B": "x"}}, "invalid variable name"),
    ({"command": ["sh"], "interactive": True, "width": 2**40}, "'width' is too large"),
    ({"command": ["sh"], "interactive": True, "height": 65536}, "'height' is too large"),
], ids=["nul-arg", "nul-env-value", "nul-env-name", "nul-cwd", "arg-128k", "env-128k",
        "empty-env-name", "env-name-with-equals", "width-2**40", "height-65536"])
def test_exec_that_execve_would_refuse_is_a_400(fake: FakeEngine, bad: dict[str, Any],
                                                 words: str) -> None:
    async def body(client: Client) -> None:
        resp = await client.post("/1.0/instances/c1/exec",
                                 json={**bad, "wait-for-websocket": False})
        doc = await resp.json()
        assert resp.status == 400, doc
        assert words in doc["error"], doc
        assert fake.operations.all() == []
    run_app(fake, body)
