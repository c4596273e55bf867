"""Projects: names and keys, the store (and an old root's migration), the
service's limits, and coved's /1.0/projects and ?project= on fakes."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from test_server_fakes import FakeEngine, run_app, wait_op

from cove.engine import EventBus, Operations
from cove.engine._projects import Projects
from cove.model.errors import BadRequest, Conflict, Forbidden, NotFound
from cove.model.projects import (
    instance_key,
    instance_url,
    split_key,
    validate_project_config,
    validate_project_name,
)
from cove.model.records import Instance
from cove.model.states import Status
from cove.store import Store

Client = TestClient[web.Request, web.Application]


# -- model -----------------------------------------------------------------------------

def test_keys_split_back_and_urls_carry_the_project() -> None:
    assert instance_key("default", "web") == "web"
    assert instance_key("dev", "web") == "dev_web"
    assert split_key("dev_web") == ("dev", "web")
    assert split_key("web") == ("default", "web")
    assert instance_url("web") == "/1.0/instances/web"
    assert instance_url("dev_web") == "/1.0/instances/web?project=dev"
    assert instance_url("dev_web", "/logs/x") == "/1.0/instances/web/logs/x?project=dev"


@pytest.mark.parametrize(("name", "words"), [
    ("", "No name provided"), ("*", "Reserved"), ("..", "Invalid project name"),
    ("a/b", "slashes"), ("a b", "spaces"), ("a_b", "underscores"), ("a'b", "quotes"),
    ("-x", "letters, digits"), ("x" * 64, "up to 63"),
])
def test_bad_project_names_are_refused_naming_why(name: str, words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        validate_project_name(name)


def test_project_config_keys_and_values_are_checked() -> None:
    assert validate_project_config({"features.images": "false", "limits.memory": "1GiB",
                                    "user.x": "y"}) == {
        "features.images": "false", "limits.memory": "1GiB", "user.x": "y"}
    with pytest.raises(BadRequest, match="Invalid project configuration key 'nope'"):
        validate_project_config({"nope": "1"})
    with pytest.raises(BadRequest, match="limits.instances"):
        validate_project_config({"limits.instances": "-1"})
    with pytest.raises(BadRequest, match="features.images"):
        validate_project_config({"features.images": "maybe"})
    with pytest.raises(BadRequest, match="limits.memory"):
        validate_project_config({"limits.memory": "50%"})


# -- store -----------------------------------------------------------------------------

_MAIN_INSTANCES = """
CREATE TABLE instances (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    image TEXT NOT NULL,
    config TEXT NOT NULL,
    devices TEXT NOT NULL,
    profiles TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    ephemeral INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    architecture TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_used_at REAL NOT NULL DEFAULT 0,
    last_exit_code INTEGER
);
INSERT INTO instances(name, image, config, devices, profiles, status, architecture, created_at)
    VALUES ('old', 'ff', '{}', '{}', '["default"]', 'Stopped', 'x86_64', 1.0);
"""


def test_a_root_made_before_projects_opens_with_its_instances_in_default(
        tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "cove.db")
    db.executescript(_MAIN_INSTANCES)
    db.close()
    store = Store(tmp_path / "cove.db")
    try:
        [inst] = store.list_instances()
        assert inst.name == "old" and inst.project == "default"
        assert store.list_instances("default") == [inst]
        assert store.list_instances("dev") == []
        assert [p.name for p in store.projects.all()] == ["default"]
        assert store.projects.get("default").config["features.images"] == "true"
    finally:
        store.close()
    again = Store(tmp_path / "cove.db")  # the migration is idempotent
    try:
        assert [i.name for i in again.list_instances()] == ["old"]
        assert len(again.projects.all()) == 1
    finally:
        again.close()


# -- the service -----------------------------------------------------------------------

@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store(tmp_path / "cove.db")
    yield s
    s.close()


def _projects(store: Store) -> Projects:
    return Projects(store, Operations(), EventBus())


def _add(store: Store, project: str, name: str, **config: str) -> None:
    store.add_instance(Instance(name=instance_key(project, name), image="ff", project=project,
                                config={k.replace("_", "."): v for k, v in config.items()},
                                status=Status.STOPPED))


def test_new_projects_get_lxds_default_features(store: Store) -> None:
    projects = _projects(store)
    p = projects.create("dev", description="d")
    assert p.config == {"features.images": "true", "features.profiles": "true",
                        "features.storage.volumes": "true"}
    assert projects.images_project("dev") == "dev"
    assert projects.networks_project("dev") == "default"
    q = projects.create("shared", config={"features.images": "false"})
    assert q.config["features.images"] == "false"
    assert projects.images_project("shared") == "default"
    with pytest.raises(Conflict):
        projects.create("dev")
    with pytest.raises(NotFound, match="Project not found"):
        projects.get("nope")


def test_default_cannot_go_and_nonempty_projects_stay(store: Store) -> None:
    projects = _projects(store)
    projects.create("dev")
    with pytest.raises(Forbidden, match="cannot be deleted"):
        projects.delete("default")
    with pytest.raises(Forbidden, match="cannot be renamed"):
        projects.rename("default", "x")
    _add(store, "dev", "web")
    with pytest.raises(BadRequest, match="Only empty projects can be removed"):
        projects.delete("dev")
    with pytest.raises(BadRequest, match="Only empty projects can be renamed"):
        projects.rename("dev", "prod")
    with pytest.raises(BadRequest, match="cannot be disabled on non-empty"):
        projects.update("dev", config={"features.images": "false"}, patch=True)
    with pytest.raises(BadRequest, match="can't change the features of the default"):
        projects.update("default", config={"features.images": "false"}, patch=True)
    store.delete_instance("dev_web")
    projects.rename("dev", "prod").wait()
    assert [p.name for p in projects.all()] == ["default", "prod"]
    projects.delete("prod")
    assert [p.name for p in projects.all()] == ["default"]


def test_instance_count_limits(store: Store) -> None:
    projects = _projects(store)
    projects.create("dev", config={"limits.instances": "1"})
    projects.check_instance("dev", {})
    _add(store, "dev", "a")
    with pytest.raises(BadRequest, match="maximum number of instances in project 'dev'"):
        projects.check_instance("dev", {})
    projects.check_instance("dev", {}, replacing="dev_a")  # an update is no new instance
    projects.check_instance("default", {})  # other projects are not counted
    with pytest.raises(BadRequest, match="too low"):
        projects.update("dev", config={"limits.instances": "0"}, patch=True)
    projects.update("dev", config={"limits.instances": "", "limits.containers": "1"},
                    patch=True)
    assert "limits.instances" not in projects.get("dev").config
    with pytest.raises(BadRequest, match="type 'container'"):
        projects.check_instance("dev", {})


def test_a_project_without_limits_reads_no_instance_rows(store: Store,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every create asks check_instance (under the projects lock): with no
    limit to count against it must not read the project's N rows."""
    projects = _projects(store)
    projects.create("dev", config={"limits.processes": "100"})
    reads: list[str | None] = []
    real = store.list_instances

    def counted(project: str | None = None) -> list[Instance]:
        reads.append(project)
        return real(project)
    monkeypatch.setattr(store, "list_instances", counted)
    projects.check_instance("default", {})
    assert reads == []
    with pytest.raises(BadRequest, match="limits.processes"):
        projects.check_instance("dev", {})
    assert reads == ["dev"]


def test_aggregate_limits_need_every_instance_to_set_them(store: Store) -> None:
    projects = _projects(store)
    projects.create("dev", config={"limits.memory": "1GiB", "limits.cpu": "2"})
    with pytest.raises(BadRequest, match="has no 'limits.memory' config"):
        projects.check_instance("dev", {"limits.cpu": "1"})
    projects.check_instance("dev", {"limits.memory": "512MiB", "limits.cpu": "1"})
    _add(store, "dev", "a", limits_memory="768MiB", limits_cpu="1")
    with pytest.raises(BadRequest, match="maximum aggregate value '1GiB' for 'limits.memory'"):
        projects.check_instance("dev", {"limits.memory": "512MiB", "limits.cpu": "1"})
    projects.check_instance("dev", {"limits.memory": "256MiB", "limits.cpu": "1"})
    with pytest.raises(BadRequest, match="'limits.cpu'"):
        projects.check_instance("dev", {"limits.memory": "256MiB", "limits.cpu": "2"})
    # growing the one instance past the limit is refused too
    with pytest.raises(BadRequest, match="aggregate"):
        projects.check_instance("dev", {"limits.memory": "2GiB", "limits.cpu": "1"},
                                replacing="dev_a")
    state = projects.state("dev")["resources"]
    assert state["memory"] == {"limit": 1 << 30, "usage": 768 << 20}
    assert state["cpu"] == {"limit": 2, "usage": 1}
    assert state["instances"] == {"limit": -1, "usage": 1}
    assert set(state) == {"containers", "cpu", "disk", "instances", "memory", "networks",
                          "processes", "virtual-machines"}


# -- coved -------------------------------------------------------------------------------

@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    return FakeEngine(root=tmp_path)


def test_projects_crud_over_http(fake: FakeEngine) -> None:
    async def body(client: Client) -> None:
        doc = await (await client.get("/1.0/projects")).json()
        assert doc["metadata"] == ["/1.0/projects/default"]
        resp = await client.post("/1.0/projects", json={"name": "dev", "description": "D",
                                                        "config": {"limits.instances": "3"}})
        assert resp.status == 201 and resp.headers["Location"] == "/1.0/projects/dev"
        resp = await client.post("/1.0/projects", json={"name": "dev"})
        assert resp.status == 409
        resp = await client.post("/1.0/projects", json={"name": "a_b"})
        assert resp.status == 400 and "underscores" in (await resp.json())["error"]
        resp = await client.post("/1.0/projects", json={"name": "x", "config": {"bad": "1"}})
        assert resp.status == 400 and "'bad'" in (await resp.json())["error"]
        resp = await client.get("/1.0/projects/dev")
        dev = (await resp.json())["metadata"]
        assert dev["name"] == "dev" and dev["description"] == "D"
        assert dev["config"]["features.images"] == "true"
        assert dev["config"]["limits.instances"] == "3"
        assert dev["used_by"] == ["/1.0/profiles/default?project=dev"]
        etag = resp.headers["ETag"]
        resp = await client.patch("/1.0/projects/dev", json={"config": {"user.a": "b"}},
                                  headers={"If-Match": etag})
        assert resp.status == 200
        resp = await client.put("/1.0/projects/dev", json={"config": {}},
                                headers={"If-Match": etag})
        assert resp.status == 412
        resp = await client.put("/1.0/projects/dev", json={"description": "E",
                                                            "config": {"user.a": "c"}})
        assert resp.status == 200
        dev = (await (await client.get("/1.0/projects/dev")).json())["metadata"]
        assert dev["config"] == {"user.a": "c"} and dev["description"] == "E"
        listed = (await (await client.get("/1.0/projects?recursion=1")).json())["metadata"]
        assert [p["name"] for p in listed] == ["default", "dev"]
        state = (await (await client.get("/1.0/projects/dev/state")).json())["metadata"]
        assert state["resources"]["instances"] == {"limit": -1, "usage": 0}
        resp = await client.delete("/1.0/projects/default")
        assert resp.status == 403
        resp = await client.post("/1.0/projects/default", json={"name": "x"})
        assert resp.status == 403
        resp = await client.post("/1.0/projects/dev", json={"name": "prod"})
        assert resp.status == 202
        await wait_op(client, (await resp.json())["operation"])
        assert (await client.get("/1.0/projects/dev")).status == 404
        assert (await client.delete("/1.0/projects/prod")).status == 200
        resp = await client.get("/1.0/projects/prod")
        assert resp.status == 404 and (await resp.json())["error"] == "Project not found"
    run_app(fake, body)


def test_a_project_with_instances_is_not_deleted(fake: FakeEngine) -> None:
    fake.projects.create("dev")
    fake.store.add_instance(Instance(name="dev_web", image="ff", project="dev"))

    async def body(client: Client) -> None:
        resp = await client.delete("/1.0/projects/dev")
        assert resp.status == 400
        assert (await resp.json())["error"] == "Only empty projects can be removed"
        dev = (await (await client.get("/1.0/projects/dev")).json())["metadata"]
        assert "/1.0/instances/web?project=dev" in dev["used_by"]
    run_app(fake, body)


def test_unknown_project_is_404_everywhere(fake: FakeEngine) -> None:
    fake.add("web")

    async def body(client: Client) -> None:
        for method, url in [("GET", "/1.0/instances"), ("GET", "/1.0/instances/web"),
                            ("GET", "/1.0/instances/web/state"),
                            ("GET", "/1.0/instances/web/logs"),
                            ("GET", "/1.0/instances/web/files?path=/x"),
                            ("POST", "/1.0/instances/web/exec"),
                            ("GET", "/1.0/images"), ("GET", "/1.0/images/aliases"),
                            ("GET", "/1.0/profiles"), ("GET", "/1.0/networks"),
                            ("GET", "/1.0/operations")]:
            resp = await client.request(method, url + ("&" if "?" in url else "?")
                                        + "project=nope", json={})
            assert resp.status == 404, url
            assert (await resp.json())["error"] == "Project not found", url
    run_app(fake, body)


def test_instances_are_scoped_by_project(fake: FakeEngine) -> None:
    fake.projects.create("dev")
    fake.add("web")
    fake.add("web", project="dev", description="in dev")
    fake.add("db", project="dev")

    async def body(client: Client) -> None:
        doc = await (await client.get("/1.0/instances")).json()
        assert doc["metadata"] == ["/1.0/instances/web"]
        doc = await (await client.get("/1.0/instances?project=dev")).json()
        assert sorted(doc["metadata"]) == ["/1.0/instances/db?project=dev",
                                           "/1.0/instances/web?project=dev"]
        doc = await (await client.get("/1.0/instances?all-projects=true&recursion=1")).json()
        got = sorted((i["project"], i["name"]) for i in doc["metadata"])
        assert got == [("default", "web"), ("dev", "db"), ("dev", "web")]
        inst = (await (await client.get("/1.0/instances/web?project=dev")).json())["metadata"]
        assert inst["name"] == "web" and inst["project"] == "dev"
        assert inst["description"] == "in dev"
        inst = (await (await client.get("/1.0/instances/web")).json())["metadata"]
        assert inst["project"] == "default" and inst["description"] == ""
        # the key of another project's instance is no name in default
        assert (await client.get("/1.0/instances/dev_web")).status == 404
        assert (await client.get("/1.0/instances/dev_web/logs")).status == 404
        assert (await client.get("/1.0/instances/db")).status == 404
        resp = await client.put("/1.0/instances/db/state?project=dev",
                                json={"action": "stop"})
        assert resp.status == 202
        op = await wait_op(client, (await resp.json())["operation"])
        assert op["resources"]["instances"] == ["/1.0/instances/db?project=dev"]
        ops = (await (await client.get("/1.0/operations?recursion=1")).json())["metadata"]
        assert not any(o["id"] == op["id"] for g in ops.values() for o in g)
        ops = (await (await client.get("/1.0/operations?project=dev&recursion=1")).json())
        assert any(o["id"] == op["id"] for g in ops["metadata"].values() for o in g)
    run_app(fake, body)


def test_events_are_those_of_the_requested_project(fake: FakeEngine) -> None:
    import asyncio
    import json

    fake.projects.create("dev")

    async def body(client: Client) -> None:
        resp = await client.get("/1.0/events?project=nope")
        assert resp.status == 404
        mine = await client.ws_connect("/1.0/events?type=lifecycle&project=dev")
        default = await client.ws_connect("/1.0/events?type=lifecycle")
        every = await client.ws_connect("/1.0/events?type=lifecycle&all-projects=true")
        await asyncio.sleep(0.05)
        fake.events.lifecycle("instance-started", "/1.0/instances/web?project=dev",
                              project="dev")
        fake.events.lifecycle("instance-started", "/1.0/instances/web")

        async def got(ws: Any) -> list[str]:
            out = []
            with contextlib.suppress(asyncio.TimeoutError):
                while True:
                    msg = await asyncio.wait_for(ws.receive(), 0.3)
                    event = json.loads(msg.data)
                    out.append(f"{event['project']} {event['metadata']['source']}")
            return out

        # the three read at once: each ends on 0.3 s of silence
        got_mine, got_default, got_every = await asyncio.gather(got(mine), got(default),
                                                                got(every))
        assert got_mine == ["dev /1.0/instances/web?project=dev"]
        assert got_default == ["default /1.0/instances/web"]
        assert got_every == ["dev /1.0/instances/web?project=dev",
                             "default /1.0/instances/web"]
        for ws in (mine, default, every):
            await ws.close()
    run_app(fake, body)


def test_the_client_adds_the_project_once() -> None:
    from cove.client._http import with_project

    assert with_project("/1.0/instances", None) == "/1.0/instances"
    assert with_project("/1.0/instances", "default") == "/1.0/instances"
    assert with_project("/1.0/instances", "dev") == "/1.0/instances?project=dev"
    assert with_project("/1.0/instances?recursion=1", "dev") == \
        "/1.0/instances?recursion=1&project=dev"
    # an explicit one (a used_by URL) wins
    assert with_project("/1.0/instances/web?project=ops", "dev") == \
        "/1.0/instances/web?project=ops"
    assert with_project("/", "dev") == "/"
    assert with_project("/1.0", "a b") == "/1.0?project=a%20b"


def test_client_project_reaches_coved(fake: FakeEngine, tmp_path: Path) -> None:
    from test_server_fakes import serve_unix, short_socket_path

    from cove.client import Client, RestDriver

    fake.projects.create("dev")
    fake.add("web", project="dev")
    fake.add("db")
    with serve_unix(fake, short_socket_path(tmp_path)) as sock:
        with Client(str(sock), project="dev") as c:
            assert [i["name"] for i in c.instances()] == ["web"]
            assert c.instance("web")["project"] == "dev"
        with Client(str(sock)) as c:
            assert [i["name"] for i in c.instances()] == ["db"]
        d = RestDriver(str(sock), project="dev")
        try:
            assert [i.name for i in d.containers()] == ["web"]
            assert d.container_status("web") == "running"
        finally:
            d.close()
        with Client(str(sock), project="nope") as c, pytest.raises(NotFound,
                                                                  match="Project not found"):
            c.instances()


def test_own_networks_are_refused_not_ignored(store: Store) -> None:
    projects = _projects(store)
    with pytest.raises(BadRequest, match="features.networks"):
        projects.create("dev", config={"features.networks": "true"})
    projects.create("dev", config={"features.networks": "false"})
    with pytest.raises(BadRequest, match="features.networks"):
        projects.update("dev", config={"features.networks": "true"}, patch=True)
