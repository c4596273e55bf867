"""coved: the /1.0/events websocket."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient
from test_server_fakes import FakeEngine, run_app, wait_op

from cove.model.states import Status

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    f = FakeEngine(root=tmp_path)
    f.add("c1", Status.STOPPED)
    return f


def test_operation_events_reach_the_client(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        ws = await client.ws_connect("/1.0/events?type=operation")
        await asyncio.sleep(0.05)
        fake.events.lifecycle("instance-started", "/1.0/instances/c1")  # filtered out
        resp = await client.put("/1.0/instances/c1/state", json={"action": "start"})
        op_id = (await resp.json())["metadata"]["id"]
        await wait_op(client, (await resp.json())["operation"])
        statuses = []
        while "Success" not in statuses:
            msg = await asyncio.wait_for(ws.receive(), 5)
            assert msg.type is WSMsgType.TEXT
            event = json.loads(msg.data)
            assert event["type"] == "operation"
            assert event["metadata"]["id"] == op_id
            assert {"timestamp", "location", "project"} <= set(event)
            statuses.append(event["metadata"]["status"])
        assert statuses[0] == "Running"
        await ws.close()
        await asyncio.sleep(0.05)
        assert fake.events._subs == []  # unsubscribed when the client left
    run_app(fake, body)


def test_all_types_by_default(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        ws = await client.ws_connect("/1.0/events")
        await asyncio.sleep(0.05)
        fake.events.lifecycle("instance-started", "/1.0/instances/c1", note="x")
        msg = await asyncio.wait_for(ws.receive(), 5)
        event = json.loads(msg.data)
        assert event["type"] == "lifecycle"
        assert event["metadata"] == {"action": "instance-started",
                                     "source": "/1.0/instances/c1", "context": {"note": "x"}}
        await ws.close()
    run_app(fake, body)


def test_event_refusals(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        resp = await client.get("/1.0/events?type=operation,gossip")
        assert resp.status == 400 and "gossip" in (await resp.json())["error"]
        resp = await client.get("/1.0/events")  # not a websocket
        assert resp.status == 400
        assert fake.events._subs == []
    run_app(fake, body)
