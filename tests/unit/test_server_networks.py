"""coved: /1.0/networks in LXD's shapes (sync answers, 4xx for bad input and
for deleting a network in use)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from test_server_fakes import FakeEngine, run_app

from cove.model.records import Lease
from cove.server.routes_server import API_EXTENSIONS

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    return FakeEngine(root=tmp_path)


def test_network_crud(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        assert (await (await client.get("/1.0/networks")).json())["metadata"] == []
        resp = await client.post("/1.0/networks", json={
            "name": "lab", "description": "a lab", "type": "bridge",
            "config": {"ipv4.address": "10.7.0.1/24", "ipv4.nat": "true"}})
        assert resp.status == 201 and resp.headers["Location"] == "/1.0/networks/lab"
        assert (await resp.json())["type"] == "sync"
        doc = await (await client.get("/1.0/networks")).json()
        assert doc["metadata"] == ["/1.0/networks/lab"]
        resp = await client.get("/1.0/networks/lab")
        assert resp.headers.get("ETag")
        net = (await resp.json())["metadata"]
        assert net == {"name": "lab", "description": "a lab", "type": "bridge",
                       "managed": True, "status": "Created",
                       "config": {"ipv4.address": "10.7.0.1/24", "ipv4.nat": "true"},
                       "used_by": [], "locations": ["none"], "project": "default"}
        doc = await (await client.get("/1.0/networks?recursion=1")).json()
        assert doc["metadata"][0]["name"] == "lab"
        resp = await client.patch("/1.0/networks/lab", json={"config": {"dns.domain": "lab"}})
        assert resp.status == 200
        net = (await (await client.get("/1.0/networks/lab")).json())["metadata"]
        assert net["config"]["dns.domain"] == "lab" and net["config"]["ipv4.nat"] == "true"
        resp = await client.put("/1.0/networks/lab", json={"config": {"ipv4.address":
                                                                      "10.7.0.1/24"}})
        assert resp.status == 200
        net = (await (await client.get("/1.0/networks/lab")).json())["metadata"]
        assert net["config"] == {"ipv4.address": "10.7.0.1/24"}
        state = (await (await client.get("/1.0/networks/lab/state")).json())["metadata"]
        assert state["addresses"][0]["address"] == "10.7.0.1"
        fake.networks.lease_list.append(Lease(network="lab", instance="web", device="eth0",
                                              address="10.7.0.2", hwaddr="00:16:3e:00:00:01",
                                              id=1))
        leases = (await (await client.get("/1.0/networks/lab/leases")).json())["metadata"]
        assert leases == [{"hostname": "web", "hwaddr": "00:16:3e:00:00:01",
                           "address": "10.7.0.2", "type": "dynamic", "location": "none",
                           "project": "default"}]
        fake.add("web", devices={"eth0": {"type": "nic", "network": "lab"}})
        resp = await client.delete("/1.0/networks/lab")
        assert resp.status == 400
        assert "in use by /1.0/instances/web" in (await resp.json())["error"]
        del fake.instances.by_name["web"]
        assert (await client.delete("/1.0/networks/lab")).status == 200
        assert (await client.get("/1.0/networks/lab")).status == 404
    run_app(fake, body)


@pytest.mark.parametrize("payload, status, words", [
    ({"config": {}}, 400, "'name' is required"),
    ({"name": "bad/name"}, 400, "Invalid network name"),
    ({"name": "n1", "type": "macvlan"}, 400, "not supported"),
    ({"name": "n1", "config": {"ipv4.address": "10.0.0.0/24"}}, 400, "network's or broadcast"),
    ({"name": "n1", "config": {"ipv4.dhcp": "true"}}, 400, "Unknown network configuration"),
    ({"name": "n1", "config": "x"}, 400, "config"),
])
def test_network_bad_input(fake: FakeEngine, payload: dict[str, object], status: int,
                           words: str) -> None:
    async def body(client: Client) -> None:
        resp = await client.post("/1.0/networks", json=payload)
        assert resp.status == status
        doc = await resp.json()
        assert doc["type"] == "error" and words in doc["error"]
    run_app(fake, body)


def test_network_conflicts_and_rename(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        assert (await client.post("/1.0/networks", json={"name": "n1"})).status == 201
        resp = await client.post("/1.0/networks", json={"name": "n1"})
        assert resp.status == 409
        resp = await client.post("/1.0/networks/n1", json={"name": "n2"})
        assert resp.status == 400 and "not supported" in (await resp.json())["error"]
        assert (await client.get("/1.0/networks/n1?project=other")).status == 404
    run_app(fake, body)


def test_network_extensions_are_advertised() -> None:
    for ext in ("network", "network_state", "network_leases", "proxy"):
        assert ext in API_EXTENSIONS
