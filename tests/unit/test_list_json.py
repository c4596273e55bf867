"""The listing's JSON put together from parts (``cove.api._list_json``) is what
encoding the wire objects gave, and the engine's listing cache
(``engine._listing``) serves a row's text only while neither the row nor a
profile changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from test_server_fakes import FakeEngine, run_app

from cove import api
from cove.engine._listing import InstanceListing
from cove.engine._profiles import DefaultNetwork, Profiles
from cove.model.errors import NotFound
from cove.model.records import Instance, Snapshot
from cove.model.states import Status
from cove.server.render import sync_text
from cove.store import Store

Client = TestClient[web.Request, web.Application]


def _inst(**kw: Any) -> Instance:
    base: dict[str, Any] = {
        "name": "dev_web", "image": "fp", "project": "dev", "status": Status.RUNNING,
        "config": {"image.os": "busybox", "limits.cpu": "1", "user.é": "ünï \"q\" \\ </>"},
        "devices": {"eth0": {"type": "nic", "network": "covebr0", "name": "eth0"}},
        "profiles": ["default", "extra"], "description": "a\nb", "ephemeral": True,
        "created_at": 1_700_000_000.5, "last_used_at": 1_700_000_100.0}
    base.update(kw)
    inst = Instance(**base)
    inst.expanded_config = {"boot.autostart": "true", **inst.config}
    inst.expanded_devices = {"root": {"type": "disk", "path": "/"}, **inst.devices}
    return inst


STATE: dict[str, Any] = {
    "status": "Running", "status_code": 103, "pid": 42, "processes": 3,
    "cpu": {"usage": 123}, "memory": {"usage": 1, "usage_peak": 2, "swap_usage": 0,
                                      "swap_usage_peak": 0},
    "disk": {}, "network": {"lo": {"addresses": [], "mtu": 65536}}}


@pytest.mark.parametrize("state", [
    None,
    STATE,
    {**STATE, "network": None},
    {**STATE, "cove": {"ready": True}},
    {**STATE, "cove": {}},  # empty: left out, as InstanceState.to_wire does
    {"status": "Stopped", "status_code": 102},  # not the engine's shape: the wire class fills
    {"pid": 1, **STATE},  # another key order: normalised
    # the listing's shared loopback entry, alone and with NICs, spliced as text
    {**STATE, "network": {"lo": api.LOOPBACK_STATE}},
    {**STATE, "network": {"lo": api.LOOPBACK_STATE, "eth0": {"addresses": [
        {"family": "inet", "address": "10.0.0.2"}], "mtu": 1500}, "eth1": {}}},
    {**STATE, "network": {"lo": api.LOOPBACK_STATE}, "cove": {"ready": False}},
    {**STATE, "network": {"eth0": {}, "lo": api.LOOPBACK_STATE}},  # not first: encoded
    # the head formatted without json.dumps only in the engine's exact shape
    {**STATE, "pid": 0, "processes": 0, "cpu": {"usage": 0}, "status": "Stopped",
     "status_code": 102, "network": None},
    {**STATE, "cpu": {"usage": 2**64 - 1}, "memory": {**STATE["memory"], "usage": 2**70}},
    {**STATE, "status": "Rünning \"x\"\n"},  # escaped as JSON
    {**STATE, "cpu": {"usage": 1, "user": 2}},
    {**STATE, "cpu": {}},
    {**STATE, "memory": {"usage_peak": 2, "usage": 1, "swap_usage": 0, "swap_usage_peak": 0}},
    {**STATE, "memory": {**STATE["memory"], "total": 3}},
    {**STATE, "disk": {"root": {"usage": 1}}},
])
def test_full_json_is_the_wire_objects_encoded(state: dict[str, Any] | None) -> None:
    inst = _inst()
    snap = Snapshot(instance=inst.name, name="s0", dir="1", created_at=1.0,
                    config={"k": "v"}, profiles=["default"])
    snaps = [api.snapshot(snap, inst)]
    for with_snaps in ([], snaps):
        expected = api.instance_full(inst, state)
        expected["snapshots"] = with_snaps
        got = api.instance_full_json(api.instance_json(inst), state, with_snaps)
        assert got == json.dumps(expected)
    assert api.instance_json(inst) == json.dumps(api.instance(inst))


@pytest.mark.parametrize("state", [
    STATE,
    {**STATE, "processes": 1.5},
    {**STATE, "cpu": {"usage": None}},
    {**STATE, "status": None},
    {**STATE, "status_code": Status.RUNNING},  # a str enum
    {**STATE, "pid": True},  # a bool is no int here
    {**STATE, "memory": {**STATE["memory"], "swap_usage": 0.0}},
])
def test_a_state_head_is_formatted_only_as_json_dumps_encodes_it(
        state: dict[str, Any]) -> None:
    """Values the engine never sets (the wire class would change them, and
    so would the listing before the head was formatted): encoded as before."""
    from cove.api._list_json import _HEAD, _head_json

    assert _head_json(state) == json.dumps({k: state[k] for k in _HEAD})[:-1]


def test_the_shared_loopback_is_the_one_a_single_state_builds() -> None:
    from cove.engine._nics import _loopback

    one = _loopback()
    assert one == api.LOOPBACK_STATE and one is not api.LOOPBACK_STATE
    assert one["addresses"] is not api.LOOPBACK_STATE["addresses"]


def test_sync_text_is_the_envelope_of_the_text() -> None:
    from cove.server.render import sync

    meta = [{"a": 1}, {"b": [None, "é"]}]
    assert sync_text(json.dumps(meta)).body == sync(meta).body
    assert sync_text("[]").content_type == sync([]).content_type == "application/json"
    assert sync_text("[]").charset == sync([]).charset


class Users:
    """``ProfileUsers`` that accepts every change (the expansions are not applied)."""

    def using_profile(self, profile: str, project: str) -> list[Instance]:
        return []

    def validate_devices(self, devices: Any) -> dict[str, dict[str, str]]:
        return {str(k): dict(v) for k, v in (devices or {}).items()}

    def check_expansion(self, inst: Instance, config: dict[str, str],
                        devices: dict[str, dict[str, str]]) -> None:
        pass

    def apply_expansion(self, inst: Instance, old: Any, config: dict[str, str],
                        devices: dict[str, dict[str, str]]) -> None:
        pass


def _listing(tmp_path: Path) -> tuple[Store, Profiles, InstanceListing]:
    store = Store(tmp_path / "cove.db")
    profiles = Profiles(store, DefaultNetwork(store))
    profiles.bind(Users())  # type: ignore[arg-type]
    return store, profiles, InstanceListing(store, profiles)


def test_listing_keeps_an_instance_until_its_row_or_a_profile_changes(tmp_path: Path) -> None:
    store, profiles, listing = _listing(tmp_path)
    profiles.create("extra", config={"limits.memory": "64MB"})
    a = store.add_instance(Instance(name="a", image="fp", profiles=["default", "extra"]))
    store.add_instance(Instance(name="b", image="fp"))
    first = listing.listed()
    assert [x.inst.name for x in first] == ["a", "b"]
    assert json.loads(first[0].json)["expanded_config"] == {"limits.memory": "64MB"}
    second = listing.listed()
    assert [x is y for x, y in zip(first, second, strict=True)] == [True, True]

    a.config = {"user.x": "1"}  # the row changes: a is made again, b is kept
    store.update_instance(a)
    third = listing.listed()
    assert third[0] is not first[0] and third[1] is first[1]
    assert json.loads(third[0].json)["config"] == {"user.x": "1"}

    profiles.update("default", config={"user.p": "2"}, patch=True)  # every one again
    fourth = listing.listed()
    assert all(x is not y for x, y in zip(third, fourth, strict=True))
    assert json.loads(fourth[1].json)["expanded_config"] == {"user.p": "2"}

    store.delete_instance("a")  # gone from the listing and from what is kept
    assert [x.inst.name for x in listing.listed()] == ["b"]
    assert sum(len(kept) for kept in listing._scopes.values()) == 1
    store.close()


def test_listing_by_project_and_a_missing_one(tmp_path: Path) -> None:
    class Projects:
        def check(self, name: str) -> str:
            if name != "dev":
                raise NotFound("Project not found")
            return name

    store = Store(tmp_path / "cove.db")
    profiles = Profiles(store, DefaultNetwork(store))
    listing = InstanceListing(store, profiles, Projects())  # type: ignore[arg-type]
    store.add_instance(Instance(name="a", image="fp"))
    store.add_instance(Instance(name="dev_b", image="fp", project="dev"))
    assert [x.inst.name for x in listing.listed("dev")] == ["dev_b"]
    assert [x.inst.name for x in listing.listed()] == ["a"]
    assert [x.inst.name for x in listing.listed(None)] == ["a", "dev_b"]
    with pytest.raises(NotFound):
        listing.listed("nope")
    store.close()


def test_server_listing_is_byte_for_byte_the_old_one(tmp_path: Path) -> None:
    """Every level, with and without the network part, through coved's app:
    the spliced text equals the wire objects encoded (a filter that matches
    all takes the old path)."""
    fake = FakeEngine(root=tmp_path)
    fake.add_image("ab" * 32, "busybox")
    c1 = fake.add("c1")
    fake.add("c2", Status.STOPPED)
    fake.snapshots.by_key[(c1.name, "s0")] = Snapshot(  # one with a snapshot, one without
        instance=c1.name, name="s0", dir="d", created_at=1.0, config={"k": "v"},
        profiles=["default"])

    async def body(client: Client) -> None:
        for query in ("recursion=0", "recursion=1", "recursion=2",
                      "recursion=2%3Bfields%3D", "recursion=2&all-projects=true"):
            new = await (await client.get(f"/1.0/containers?{query}")).read()
            old = await (await client.get(
                f"/1.0/containers?{query}&filter=name+ne+nothing")).read()
            assert new == old, query
            assert json.loads(new)["metadata"], query
            assert (b'"name": "s0"' in new) == ("recursion=2" in query), query
    run_app(fake, body)


def test_listing_keeps_at_most_its_scopes_also_from_threads(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from cove.engine._listing import _SCOPES

    store, _, listing = _listing(tmp_path)
    for p in range(20):
        store.add_instance(Instance(name=f"p{p}_a", image="fp", project=f"p{p}"))
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda p: listing.listed(f"p{p % 20}"), range(200)))
    assert [[x.inst.name for x in g] for g in got[:3]] == [["p0_a"], ["p1_a"], ["p2_a"]]
    assert len(listing._scopes) == _SCOPES
    store.close()


def test_cove_keys_answer_only_those_keys_as_the_whole_objects_have_them(
        tmp_path: Path) -> None:
    """cove_instances_keys: each object is the whole one with only the keys
    asked (state.X of its state), on every path; no state asked of the
    engine when none is wanted; an unknown key is a 400 naming it."""
    from cove.server.listing import parse_keys, select

    fake = FakeEngine(root=tmp_path)
    fake.add_image("ab" * 32, "busybox")
    fake.add("c1")
    fake.add("c2", Status.STOPPED)
    cli = "name,status,type,ephemeral,created_at,state.network,state.cove"

    async def body(client: Client) -> None:
        doc = await (await client.get("/1.0")).json()
        assert "cove_instances_keys" in doc["metadata"]["api_extensions"]
        for level in (1, 2):
            whole = (await (await client.get(f"/1.0/instances?recursion={level}")).json())
            for asked in (cli, "name,config,state", "state.pid,snapshots,project", "name"):
                keys = parse_keys(asked)
                assert keys is not None
                want = [select(o, keys) for o in whole["metadata"]]
                for extra in ("", "&filter=name+ne+nothing"):
                    fake.instances.states_asked.clear()
                    got = await (await client.get(
                        f"/1.0/instances?recursion={level}&cove-keys={asked}{extra}")).json()
                    assert got["metadata"] == want, (level, asked, extra)
                    if not extra and (level == 1 or asked == "name"):
                        assert fake.instances.states_asked == [], (level, asked)
            assert set(want[0]) <= {"name", "state", "project", "snapshots"}
        full = (await (await client.get("/1.0/instances?recursion=2")).json())["metadata"]
        got = (await (await client.get(f"/1.0/instances?recursion=2&cove-keys={cli}"))
               .json())["metadata"]
        assert got[0] == {"name": "c1", "status": "Running", "type": "container",
                          "ephemeral": False, "created_at": full[0]["created_at"],
                          "state": {"network": full[0]["state"]["network"]}}
        for bad in ("bogus", "state.bogus", "config.x", "name,status.code"):
            resp = await client.get(f"/1.0/instances?recursion=2&cove-keys={bad}")
            assert resp.status == 400, bad
            assert "Invalid key in cove-keys" in (await resp.json())["error"], bad
    run_app(fake, body)


@pytest.mark.parametrize("obj", [
    {"name": "a", "state": {"network": {"lo": api.LOOPBACK_STATE}}},
    {"state": {"status": "Running", "network": {"lo": api.LOOPBACK_STATE, "eth0": {"x": 1}},
               "cove": {"ready": True}}},
    {"name": "a", "state": {"network": None}},
    {"name": "a", "state": None},
    {"state": {"network": {"eth0": {}, "lo": api.LOOPBACK_STATE}}, "name": "a"},
    {"name": "a"},
])
def test_a_selected_object_is_encoded_as_json_dumps(obj: dict[str, Any]) -> None:
    from cove.server.listing import _object_json

    assert _object_json(obj) == json.dumps(obj)


def test_listing_reads_no_rows_while_no_table_changed(tmp_path: Path) -> None:
    """The rows are read again after any change: through the store, of
    another table, by another connection (``PRAGMA data_version``), of a
    profile; not while nothing changed."""
    import sqlite3

    store, profiles, listing = _listing(tmp_path)
    a = store.add_instance(Instance(name="a", image="fp"))
    queries = []
    real = store.instance_rows

    def counted(project: str | None = None) -> Any:
        queries.append(project)
        return real(project)

    store.instance_rows = counted  # type: ignore[method-assign]
    first = listing.listed()
    assert listing.listed() == first and len(queries) == 1
    a.description = "changed"
    store.update_instance(a)
    assert json.loads(listing.listed()[0].json)["description"] == "changed"
    assert len(queries) == 2
    other = sqlite3.connect(tmp_path / "cove.db")
    with other:
        other.execute("UPDATE instances SET description='elsewhere' WHERE name='a'")
    other.close()
    assert json.loads(listing.listed()[0].json)["description"] == "elsewhere"
    assert len(queries) == 3
    profiles.update("default", config={"user.p": "2"}, patch=True)
    assert json.loads(listing.listed()[0].json)["expanded_config"] == {"user.p": "2"}
    listing.listed(None)  # another scope: read on its own
    assert len(queries) == 5
    assert listing.listed() and listing.listed(None) and len(queries) == 5
    store.close()


def test_a_listing_inside_a_transaction_is_not_kept(tmp_path: Path) -> None:
    """What a listing reads inside a transaction may be rolled back: the
    next listing reads the rows again."""
    store, _, listing = _listing(tmp_path)
    store.add_instance(Instance(name="a", image="fp"))
    with pytest.raises(RuntimeError), store.db.tx() as db:
        db.execute("UPDATE instances SET description='rolled back' WHERE name='a'")
        assert json.loads(listing.listed()[0].json)["description"] == "rolled back"
        raise RuntimeError("roll back")
    assert json.loads(listing.listed()[0].json)["description"] == ""
    store.close()


def test_states_as_text_are_the_states_encoded() -> None:
    """``InstanceStates.states_json`` formats what ``states`` builds: running
    (counters, with and without a NIC), stopped, frozen, with an app-stack
    part (then built and encoded), and without the network part."""
    from types import SimpleNamespace

    from cove.engine._states import InstanceStates
    from cove.runtime.cgroups import CgroupStats

    insts = [Instance(name="a", image="fp", status=Status.RUNNING),
             Instance(name="p_b", image="fp", project="p", status=Status.RUNNING),
             Instance(name="c", image="fp", status=Status.STOPPED),
             Instance(name="d", image="fp", status=Status.FROZEN),
             Instance(name="e", image="fp", status=Status.RUNNING)]
    nic = {"eth0": {"addresses": [{"family": "inet", "address": "10.0.0.2"}], "mtu": 1500}}

    class Net:
        def states(self, running: list[Instance]) -> dict[str, dict[str, Any]]:
            return {i.name: {"lo": api.LOOPBACK_STATE, **(nic if i.name == "a" else {})}
                    for i in running}

    runs = SimpleNamespace(pids={"a": 10, "p_b": 11, "c": 12, "d": 13, "e": 14})
    paths = SimpleNamespace(cgroups_path=lambda key: f"/covetest/{key}")
    states = InstanceStates(runs, paths, Net())  # type: ignore[arg-type]
    counters = {f"/covetest/{k}": CgroupStats(memory=2**40 + n, memory_peak=2**41, cpu_ns=2**63,
                                              pids=n) for n, k in enumerate(runs.pids)}
    states._counters.read_many = (  # type: ignore[method-assign]
        lambda cgroups: [counters[path] for path, _ in cgroups])
    app = {"e": {"cove": {"ready": True, "health": {"status": "healthy"}}}}
    for network in (True, False):
        want = states.states(insts, network=network)
        for key, extra in app.items():
            want[key].update(extra)
        got = states.states_json(insts, network=network, extra=lambda k: app.get(k, {}))
        assert got == {k: api.state_json(v) for k, v in want.items()}, network
        assert got == {k: json.dumps(api.InstanceState.from_wire(v).to_wire())
                       for k, v in want.items()}, network
        assert states.states_json(insts, network=network) == {
            k: api.state_json(v) for k, v in states.states(insts, network=network).items()}
    assert json.loads(got["a"])["memory"]["usage"] == 2**40
    states.close()
