"""coved: /1.0/instances (and /1.0/containers), state, and the operation flow."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from test_server_fakes import FakeEngine, run_app, wait_op

from cove.model.states import Status

Client = TestClient[web.Request, web.Application]

SOURCE = {"type": "image", "alias": "busybox"}


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    f = FakeEngine(root=tmp_path)
    f.add_image("ab" * 32, "busybox")
    return f


def test_list_recursion_levels_and_containers_alias(fake: FakeEngine) -> None:
    fake.add("c1")
    fake.add("c2", Status.STOPPED)

    async def body(client: Client) -> None:
        doc = await (await client.get("/1.0/instances")).json()
        assert doc["metadata"] == ["/1.0/instances/c1", "/1.0/instances/c2"]
        doc = await (await client.get("/1.0/containers")).json()
        assert doc["metadata"] == ["/1.0/containers/c1", "/1.0/containers/c2"]
        doc = await (await client.get("/1.0/instances?recursion=1")).json()
        c1 = doc["metadata"][0]
        assert c1["name"] == "c1" and c1["status"] == "Running" and c1["status_code"] == 103
        assert c1["type"] == "container" and c1["stateful"] is False
        assert c1["project"] == "default" and c1["location"] == "none"
        assert c1["created_at"] == "2023-11-14T22:13:20.500000Z"
        assert c1["expanded_config"] == {} and c1["expanded_devices"] == {}
        assert "state" not in c1
        doc = await (await client.get("/1.0/instances?recursion=2")).json()
        full = doc["metadata"][1]
        assert full["state"]["status"] == "Stopped" and full["snapshots"] == []
        doc = await (await client.get("/1.0/instances?instance-type=virtual-machine")).json()
        assert doc["metadata"] == []
    run_app(fake, body)


def test_list_selective_recursion_fields_as_lxd(fake: FakeEngine) -> None:
    """LXD's instances_state_selective_recursion: ``recursion=2;fields=`` (wins
    over ``?fields=``), the network part asked of the engine only if listed;
    one states() call for the whole list; an unknown field is a 400 naming it."""
    fake.add("c1")
    fake.add("c2", Status.STOPPED)

    async def body(client: Client) -> None:
        doc = await (await client.get("/1.0")).json()
        assert "instances_state_selective_recursion" in doc["metadata"]["api_extensions"]
        for query, asked in (
                ("recursion=2", True),
                ("recursion=2%3Bfields%3Dstate.network", True),
                ("recursion=2;fields=state.disk,state.network", True),
                ("recursion=2;fields=", False),
                ("recursion=2&fields=state.disk", False),
                ("recursion=2&fields=state.network", True),
                ("recursion=2;fields=state.disk&fields=state.network", False)):
            fake.instances.states_asked.clear()
            doc = await (await client.get(f"/1.0/instances?{query}")).json()
            assert [o["name"] for o in doc["metadata"]] == ["c1", "c2"], query
            assert fake.instances.states_asked == [asked], query
        for query in ("recursion=2;fields=state.cpu", "recursion=1&fields=bogus",
                      "recursion=2&fields="):
            resp = await client.get(f"/1.0/instances?{query}")
            assert resp.status == 400, query
            assert "Invalid state field" in (await resp.json())["error"], query
    run_app(fake, body)


def test_create_answers_an_operation_that_can_be_waited_on(fake: FakeEngine) -> None:
    fake.instances.op_delay = 0.2

    async def body(client: Client) -> None:
        resp = await client.post("/1.0/instances", json={
            "name": "web", "source": SOURCE, "config": {"limits.memory": "64MB"},
            "devices": {"data": {"type": "disk", "path": "/data", "source": "/srv"}},
            "profiles": None, "ephemeral": False, "description": "d", "start": True})
        assert resp.status == 202
        doc = await resp.json()
        assert doc["type"] == "async" and doc["status_code"] == 100
        url = doc["operation"]
        assert resp.headers["Location"] == url and url.startswith("/1.0/operations/")
        op = doc["metadata"]
        assert op["status"] == "Running" and op["class"] == "task"
        assert op["resources"]["instances"] == ["/1.0/instances/web"]
        done = await wait_op(client, url)
        assert done["status"] == "Success" and done["status_code"] == 200
        inst = (await (await client.get("/1.0/instances/web")).json())["metadata"]
        assert inst["status"] == "Running" and inst["profiles"] == ["default"]
        assert inst["config"] == {"limits.memory": "64MB"}
        assert inst["devices"]["data"]["path"] == "/data"
    run_app(fake, body)


@pytest.mark.parametrize("payload, status, words", [
    ({"name": "c", "source": {"type": "none"}}, 400, "not supported"),
    ({"name": "c", "source": {"type": "migration"}}, 400, "not supported"),
    ({"name": "c", "source": {"type": "image", "alias": "busybox",
                              "server": "https://images.example", "protocol": "ftp"}},
     400, "Invalid source protocol"),
    ({"name": "c", "source": {"type": "image"}}, 400, "alias"),
    ({"source": SOURCE}, 400, "name"),
    ({"name": "c", "type": "virtual-machine", "source": SOURCE}, 400, "containers only"),
    ({"name": "c", "source": {"type": "image", "alias": "nope"}}, 404, "Image not found"),
])
def test_create_refusals(fake: FakeEngine, payload: dict[str, object], status: int,
                         words: str) -> None:
    async def body(client: Client) -> None:
        resp = await client.post("/1.0/instances", json=payload)
        assert resp.status == status
        assert words in (await resp.json())["error"]
    run_app(fake, body)


def test_create_existing_is_409(fake: FakeEngine) -> None:
    fake.add("c1")

    async def body(client: Client) -> None:
        resp = await client.post("/1.0/instances", json={"name": "c1", "source": SOURCE})
        assert resp.status == 409
        assert (await resp.json())["error_code"] == 409
    run_app(fake, body)


def test_unknown_instance_is_404_everywhere(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        for method, path in (("GET", "/1.0/instances/ghost"), ("GET", "/1.0/containers/ghost"),
                             ("DELETE", "/1.0/instances/ghost"),
                             ("GET", "/1.0/instances/ghost/state"),
                             ("GET", "/1.0/instances/ghost/logs"),
                             ("GET", "/1.0/instances/ghost/files?path=/etc")):
            resp = await client.request(method, path)
            assert resp.status == 404, (method, path)
            doc = await resp.json()
            assert doc["type"] == "error" and "ghost" in doc["error"]
    run_app(fake, body)


def test_get_full_and_etag_guarded_put(fake: FakeEngine) -> None:
    fake.add("c1", config={"a": "1"})

    async def body(client: Client) -> None:
        resp = await client.get("/1.0/instances/c1")
        etag = resp.headers["ETag"]
        full = (await (await client.get("/1.0/instances/c1?recursion=1")).json())["metadata"]
        assert full["state"]["pid"] == 42 and full["backups"] == []
        # a stale ETag is refused
        resp = await client.put("/1.0/instances/c1", json={"config": {"a": "2"}},
                                headers={"If-Match": "0" * 64})
        assert resp.status == 412
        # the right one passes; PUT answers an (already finished) operation, as LXD does
        resp = await client.put("/1.0/instances/c1", json={"config": {"b": "2"},
                                "description": "new", "name": "ignored", "status": "x"},
                                headers={"If-Match": etag})
        assert resp.status == 202
        op = await wait_op(client, (await resp.json())["operation"])
        assert op["status"] == "Success"
        inst = fake.instances.by_name["c1"]
        assert inst.config == {"b": "2"} and inst.description == "new"
        # PATCH merges and answers sync
        resp = await client.patch("/1.0/instances/c1", json={"config": {"c": "3"}})
        assert resp.status == 200 and (await resp.json())["type"] == "sync"
        assert inst.config == {"b": "2", "c": "3"}
        # engine validation errors come back as 400
        resp = await client.patch("/1.0/instances/c1", json={"config": {"bad.key": "1"}})
        assert resp.status == 400
        # issue 10: a restore is no longer refused; an unknown snapshot is a 404
        resp = await client.put("/1.0/instances/c1", json={"restore": "snap0"})
        assert resp.status == 404 and "Snapshot not found" in (await resp.json())["error"]
    run_app(fake, body)


def test_rename_and_delete(fake: FakeEngine) -> None:
    fake.add("c1", Status.STOPPED)
    fake.add("c2")

    async def body(client: Client) -> None:
        resp = await client.post("/1.0/containers/c1", json={"name": "c3"})
        assert resp.status == 202
        await wait_op(client, (await resp.json())["operation"])
        assert "c3" in fake.instances.by_name and "c1" not in fake.instances.by_name
        resp = await client.post("/1.0/instances/c3", json={"migration": True})
        assert resp.status == 400 and "Migration" in (await resp.json())["error"]
        resp = await client.post("/1.0/instances/c3", json={})
        assert resp.status == 400
        resp = await client.delete("/1.0/instances/c2")  # running
        assert resp.status == 400 and "running" in (await resp.json())["error"]
        resp = await client.delete("/1.0/instances/c3")
        assert resp.status == 202
        await wait_op(client, (await resp.json())["operation"])
        assert "c3" not in fake.instances.by_name
    run_app(fake, body)


def test_state_get_and_put(fake: FakeEngine) -> None:
    fake.add("c1", Status.STOPPED)

    async def body(client: Client) -> None:
        doc = await (await client.get("/1.0/instances/c1/state")).json()
        assert doc["metadata"]["status"] == "Stopped"
        resp = await client.put("/1.0/instances/c1/state",
                                json={"action": "start", "timeout": 30, "force": True})
        assert resp.status == 202
        op = await wait_op(client, (await resp.json())["operation"])
        assert op["status"] == "Success"
        assert fake.instances.by_name["c1"].status is Status.RUNNING
        for bad, words in (({"action": "explode"}, "Unknown action"),
                           ({}, "'action' is required"),
                           ({"action": "stop", "stateful": True}, "Stateful"),
                           ({"action": "stop", "timeout": "soon"}, "'timeout' must be a number")):
            resp = await client.put("/1.0/instances/c1/state", json=bad)
            assert resp.status == 400
            assert words in (await resp.json())["error"]
    run_app(fake, body)


def test_second_action_while_one_runs_is_409(fake: FakeEngine) -> None:
    fake.add("c1", Status.STOPPED)
    fake.instances.op_delay = 0.5

    async def body(client: Client) -> None:
        first = await client.put("/1.0/instances/c1/state", json={"action": "start"})
        assert first.status == 202
        second = await client.put("/1.0/instances/c1/state", json={"action": "start"})
        assert second.status == 409
        assert "in flight" in (await second.json())["error"]
        await wait_op(client, (await first.json())["operation"])
    run_app(fake, body)


def test_operations_list_get_wait_timeout_cancel(fake: FakeEngine) -> None:
    fake.add("c1", Status.STOPPED)
    fake.instances.op_delay = 0.6

    async def body(client: Client) -> None:
        resp = await client.put("/1.0/instances/c1/state", json={"action": "start"})
        url = (await resp.json())["operation"]
        op_id = url.rsplit("/", 1)[1]
        doc = await (await client.get("/1.0/operations")).json()
        assert doc["metadata"]["running"] == [url]
        doc = await (await client.get("/1.0/operations?recursion=1")).json()
        assert doc["metadata"]["running"][0]["id"] == op_id
        doc = await (await client.get(url)).json()
        assert doc["metadata"]["id"] == op_id
        # a short wait times out: 200 with the still-running operation
        resp = await client.get(f"{url}/wait?timeout=0.05")
        assert resp.status == 200
        assert (await resp.json())["metadata"]["status"] == "Running"
        resp = await client.delete(url)  # not cancellable
        assert resp.status == 409
        resp = await client.get(f"{url}/wait?timeout=bad")
        assert resp.status == 400
        done = await wait_op(client, url)
        assert done["status"] == "Success"
        doc = await (await client.get("/1.0/operations")).json()
        assert doc["metadata"]["success"] == [url]
        assert (await client.get("/1.0/operations/nope")).status == 404
        assert (await client.get("/1.0/operations/nope/wait")).status == 404
    run_app(fake, body)


def test_failed_operation_reports_its_error(fake: FakeEngine,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    fake.add("c1", Status.STOPPED)

    def boom(name: str, action: str, **kw: object) -> object:
        from cove.model.errors import InternalError
        return fake.operations.run(lambda op: (_ for _ in ()).throw(InternalError("runc said no")),
                                   description="Starting instance")
    monkeypatch.setattr(fake.instances, "change_state", boom)

    async def body(client: Client) -> None:
        resp = await client.put("/1.0/instances/c1/state", json={"action": "start"})
        op = await wait_op(client, (await resp.json())["operation"])
        assert op["status"] == "Failure" and op["status_code"] == 400
        assert op["err"] == "runc said no"
    run_app(fake, body)


@pytest.mark.parametrize(("method", "path", "body", "words"), [
    ("DELETE", "/1.0/instances/c1?wait=nan", None, "wait"),
    ("DELETE", "/1.0/instances/c1?wait=inf", None, "wait"),
    ("DELETE", "/1.0/instances/c1?wait=-1", None, "wait"),
    ("DELETE", "/1.0/instances/c1?wait=3601", None, "wait"),
    ("PUT", "/1.0/instances/c1/state", {"action": "stop", "timeout": 1e308}, "timeout"),
    ("PUT", "/1.0/instances/c1/state", '{"action": "stop", "timeout": Infinity}', "timeout"),
    ("PUT", "/1.0/instances/c1/state", '{"action": "stop", "timeout": NaN}', "timeout"),
    ("GET", "/1.0/operations/x/wait?timeout=nan", None, "timeout"),
    ("GET", "/1.0/operations/x/wait?timeout=1e308", None, "timeout"),
], ids=["wait-nan", "wait-inf", "wait-negative", "wait-over-cap", "stop-1e308", "stop-inf",
        "stop-nan", "op-wait-nan", "op-wait-huge"])
def test_nan_and_infinities_are_refused(fake: FakeEngine, method: str, path: str,
                                        body: object, words: str) -> None:
    fake.add("c1", Status.RUNNING)

    async def run(client: Client) -> None:
        kw: dict[str, object] = {}
        if isinstance(body, str):
            kw = {"data": body, "headers": {"Content-Type": "application/json"}}
        elif body is not None:
            kw = {"json": body}
        resp = await client.request(method, path, **kw)  # type: ignore[arg-type]
        doc = await resp.json()
        assert resp.status == 400, doc
        assert words in doc["error"], doc
        assert fake.instances.by_name["c1"].status == Status.RUNNING
    run_app(fake, run)
