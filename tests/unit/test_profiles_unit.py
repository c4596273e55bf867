"""Profiles: LXD's expansion and name rule (pure), the ``profiles`` table, and
the profiles service (default profile of an existing root, checks before a
change is saved, what is applied to the instances that use a profile)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cove.engine._profiles import DefaultNetwork, Profiles
from cove.model.errors import BadRequest, Conflict, Forbidden, InternalError, NotFound
from cove.model.profiles import (
    Profile,
    expand_config,
    expand_devices,
    validate_profile_config,
    validate_profile_name,
)
from cove.model.records import Instance
from cove.model.states import Status
from cove.store import Store

# -- expansion (LXD's ExpandInstanceConfig / ExpandInstanceDevices) ---------------------------


def test_config_applies_profiles_in_order_then_the_instance() -> None:
    a = Profile("a", config={"limits.memory": "1GiB", "user.x": "a", "environment.A": "1"})
    b = Profile("b", config={"limits.memory": "2GiB", "user.x": "b"})
    assert expand_config([a, b], {"user.x": "mine"}) == {
        "limits.memory": "2GiB", "user.x": "mine", "environment.A": "1"}
    assert expand_config([b, a], {}) == {
        "limits.memory": "1GiB", "user.x": "a", "environment.A": "1"}
    assert expand_config([], {"k": "v"}) == {"k": "v"}


def test_devices_merge_by_name_and_are_replaced_whole() -> None:
    a = Profile("a", devices={"eth0": {"type": "nic", "network": "n1", "name": "eth0",
                                       "hwaddr": "00:16:3e:00:00:01"},
                              "web": {"type": "proxy", "listen": "tcp:0.0.0.0:80",
                                      "connect": "tcp:0.0.0.0:80"}})
    b = Profile("b", devices={"eth0": {"type": "nic", "network": "n2"}})
    out = expand_devices([a, b], {})
    assert out["eth0"] == {"type": "nic", "network": "n2"}  # no hwaddr kept from a
    assert set(out) == {"eth0", "web"}
    # the instance's own device wins whole too, and type none hides one
    out = expand_devices([a, b], {"eth0": {"type": "nic", "network": "n3"},
                                  "web": {"type": "none"}})
    assert out == {"eth0": {"type": "nic", "network": "n3"}}
    out["eth0"]["network"] = "changed"  # copies: the profile is untouched
    assert b.devices["eth0"]["network"] == "n2"


@pytest.mark.parametrize(("name", "message"), [
    ("", "No name provided"),
    ("a/b", "Profile names may not contain slashes"),
    (".", 'Invalid profile name "."'),
    ("..", 'Invalid profile name ".."'),
])
def test_profile_names_as_lxd(name: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        validate_profile_name(name)


def test_profile_names_lxd_accepts() -> None:
    for name in ("web", "with space", "a.b", "UPPER", "x:y", "é"):
        assert validate_profile_name(name) == name


def test_profile_config_refuses_instance_only_keys() -> None:
    with pytest.raises(BadRequest, match="Volatile keys can only be set on instances"):
        validate_profile_config({"volatile.eth0.hwaddr": "x"})
    with pytest.raises(BadRequest, match="Image keys can only be set on instances"):
        validate_profile_config({"image.os": "x"})
    validate_profile_config({"limits.memory": "1GiB", "user.a": "b"})


# -- the table -------------------------------------------------------------------------------


def test_rows_add_get_update_rename_delete(tmp_path: Path) -> None:
    store = Store(tmp_path / "cove.db")
    rows = store.profiles
    rows.add(Profile("p", description="d", config={"user.a": "1"},
                     devices={"x": {"type": "none"}}))
    with pytest.raises(Conflict, match='Error inserting "p" into database: The profile '
                                       "already exists"):
        rows.add(Profile("p"))
    rows.add(Profile("p", project="other"))  # names are per project
    got = rows.get("p")
    assert (got.description, got.config, got.devices) == ("d", {"user.a": "1"},
                                                          {"x": {"type": "none"}})
    got.config = {"user.b": "2"}
    rows.update(got)
    assert rows.get("p").config == {"user.b": "2"}
    assert [p.name for p in rows.list("default")] == ["p"]
    assert [(p.project, p.name) for p in rows.list()] == [("default", "p"), ("other", "p")]

    # a rename rewrites the instances that list the profile, in the same transaction
    store.add_instance(Instance(name="c1", image="fp", profiles=["default", "p"]))
    store.add_instance(Instance(name="c2", image="fp", profiles=["default"]))
    rows.add(Profile("q"))
    with pytest.raises(Conflict, match='Name "q" already in use'):
        rows.rename("p", "q")
    assert store.get_instance("c1").profiles == ["default", "p"]  # rolled back
    rows.rename("p", "p2")
    assert store.get_instance("c1").profiles == ["default", "p2"]
    assert store.get_instance("c2").profiles == ["default"]
    with pytest.raises(NotFound):
        rows.get("p")
    rows.delete("p2")
    with pytest.raises(NotFound):
        rows.delete("p2")
    with pytest.raises(NotFound):
        rows.update(Profile("gone"))
    store.close()


# -- the service -----------------------------------------------------------------------------


class Users:
    """``ProfileUsers`` over a list of instances: a NIC on network ``bad`` is
    refused; every check and apply is recorded."""

    def __init__(self, instances: list[Instance]) -> None:
        self.instances = instances
        self.checked: list[tuple[str, dict[str, str], dict[str, dict[str, str]]]] = []
        self.applied: list[tuple[str, Any, dict[str, str], dict[str, dict[str, str]]]] = []
        self.fail_apply = False

    def using_profile(self, profile: str, project: str) -> list[Instance]:
        return [i for i in self.instances if profile in i.profiles]

    def validate_devices(self, devices: Any) -> dict[str, dict[str, str]]:
        return {str(k): dict(v) for k, v in (devices or {}).items()}

    def check_expansion(self, inst: Instance, config: dict[str, str],
                        devices: dict[str, dict[str, str]]) -> None:
        self.checked.append((inst.name, config, devices))
        if any(d.get("network") == "bad" for d in devices.values()):
            raise BadRequest("Device 'eth1': network 'bad' does not exist")

    def apply_expansion(self, inst: Instance, old: Any, config: dict[str, str],
                        devices: dict[str, dict[str, str]]) -> None:
        if self.fail_apply:
            raise Conflict("Host port 8080 is already published by instance x")
        self.applied.append((inst.name, old, config, devices))


def _service(tmp_path: Path, instances: list[Instance] | None = None,
             network: str | None = None) -> tuple[Store, Profiles, Users]:
    store = Store(tmp_path / "cove.db")
    dn = DefaultNetwork(store)
    if network is not None:
        dn.set(network)
    profiles = Profiles(store, dn)
    users = Users(instances or [])
    profiles.bind(users)
    return store, profiles, users


def test_existing_root_gets_a_default_profile_with_what_it_had(tmp_path: Path) -> None:
    # a root from before profiles were stored: its default network is in the meta table
    store, profiles, _ = _service(tmp_path, network="covebr0")
    assert profiles.get("default").devices == {
        "eth0": {"type": "nic", "network": "covebr0", "name": "eth0"}}
    store.close()
    # the next start reads the stored profile; an edit by the user is kept
    store, profiles, _ = _service(tmp_path)
    profiles.update("default", devices={"eth0": {"type": "nic", "network": "lab",
                                                 "name": "eth0"}}, patch=True)
    store.close()
    store, profiles, _ = _service(tmp_path)
    assert profiles.get("default").devices["eth0"]["network"] == "lab"
    store.close()


def test_fresh_root_default_profile_follows_the_default_network(tmp_path: Path) -> None:
    store, profiles, _ = _service(tmp_path)
    assert profiles.get("default").devices == {}  # no default network chosen yet
    profiles.update("default", config={"user.keep": "1"}, patch=True)
    profiles.set_default_network("covebr1")  # the networks service's first start
    got = profiles.get("default")
    assert got.devices == {"eth0": {"type": "nic", "network": "covebr1", "name": "eth0"}}
    assert got.config == {"user.keep": "1"}
    profiles.set_default_network(None)
    assert profiles.get("default").devices == {}
    assert DefaultNetwork(store).get() is None
    store.close()


def test_the_users_own_eth0_survives_the_default_network_going(tmp_path: Path) -> None:
    store, profiles, _ = _service(tmp_path, network="covebr0")
    mine = {"eth0": {"type": "nic", "network": "lab", "name": "eth0"}}
    profiles.update("default", devices=mine, patch=True)
    profiles.set_default_network(None)  # covebr0 deleted: nobody's eth0 was on it
    assert profiles.get("default").devices == mine
    store.close()


def test_create_update_patch_put(tmp_path: Path) -> None:
    store, profiles, _ = _service(tmp_path)
    p = profiles.create("small", config={"limits.memory": "128MiB", "user.a": True},
                        description="d")
    assert p.config == {"limits.memory": "128MiB", "user.a": "true"}
    for bad, err in (({"nope.key": "1"}, "Unknown configuration key"),
                     ({"limits.memory": "lots"}, "Invalid limits.memory"),
                     ({"volatile.x": "1"}, "Volatile keys")):
        with pytest.raises(BadRequest, match=err):
            profiles.create("other", config=bad)
    with pytest.raises(NotFound):
        profiles.get("other")  # nothing made
    with pytest.raises(Conflict):
        profiles.create("small")
    # PATCH merges; an empty value removes a key
    profiles.update("small", config={"user.b": "2", "user.a": ""}, patch=True)
    assert profiles.get("small").config == {"limits.memory": "128MiB", "user.b": "2"}
    profiles.update("small", devices={"d": {"type": "none"}}, patch=True)
    assert profiles.get("small").description == "d"
    # PUT replaces everything; what is not sent becomes empty
    profiles.update("small", config={"user.c": "3"}, description="")
    got = profiles.get("small")
    assert (got.config, got.devices, got.description) == ({"user.c": "3"}, {}, "")
    with pytest.raises(NotFound):
        profiles.update("none", config={})
    # the cache and the table agree
    assert store.profiles.get("small").config == {"user.c": "3"}
    store.close()


def test_change_checked_against_every_user_before_it_is_saved(tmp_path: Path) -> None:
    c1 = Instance(name="c1", image="fp", profiles=["default", "p"], config={"user.x": "own"},
                  status=Status.RUNNING)
    c2 = Instance(name="c2", image="fp", profiles=["p"])
    c3 = Instance(name="c3", image="fp", profiles=["default"])
    store, profiles, users = _service(tmp_path, [c1, c2, c3])
    profiles.create("p", config={"user.x": "p"})
    profiles.update("p", config={"limits.memory": "256MiB"}, patch=True)
    assert [n for n, *_ in users.checked] == ["c1", "c2"]
    name, old, config, _ = users.applied[0]
    assert name == "c1" and old[0] == {"user.x": "own"}  # what it ran with before
    assert config == {"user.x": "own", "limits.memory": "256MiB"}  # its own key wins

    users.applied.clear()
    with pytest.raises(BadRequest, match="network 'bad'"):
        profiles.update("p", devices={"eth1": {"type": "nic", "network": "bad"}}, patch=True)
    assert profiles.get("p").devices == {} and users.applied == []  # nothing saved
    assert store.profiles.get("p").devices == {}

    users.fail_apply = True  # saved, then one instance could not take it: LXD's message
    with pytest.raises(InternalError, match="profile change still saved"):
        profiles.update("p", config={"user.y": "1"}, patch=True)
    assert profiles.get("p").config["user.y"] == "1"
    store.close()


def test_rename_delete_and_default(tmp_path: Path) -> None:
    c1 = Instance(name="c1", image="fp", profiles=["default", "p"])
    store, profiles, users = _service(tmp_path, [c1])
    profiles.create("p")
    with pytest.raises(Forbidden, match='The "default" profile cannot be renamed'):
        profiles.rename("default", "x")
    with pytest.raises(Forbidden, match='The "default" profile cannot be deleted'):
        profiles.delete("default")
    with pytest.raises(BadRequest, match="Profile is currently in use"):
        profiles.delete("p")
    assert profiles.used_by("p") == ["/1.0/instances/c1"]
    with pytest.raises(BadRequest, match="slashes"):
        profiles.rename("p", "a/b")
    store.add_instance(Instance(name="c1", image="fp", profiles=["default", "p"]))
    profiles.rename("p", "q")
    assert store.get_instance("c1").profiles == ["default", "q"]
    assert profiles.names() == ["default", "q"]
    users.instances.clear()
    profiles.delete("q")
    assert profiles.names() == ["default"]
    with pytest.raises(NotFound):
        profiles.delete("q")
    store.close()


def test_check_and_expand_for_instances(tmp_path: Path) -> None:
    store, profiles, _ = _service(tmp_path, network="br0")
    profiles.create("small", config={"limits.memory": "128MiB"},
                    devices={"web": {"type": "proxy", "listen": "tcp:0.0.0.0:80",
                                     "connect": "tcp:0.0.0.0:80"}})
    profiles.check(["default", "small"])
    profiles.check([])
    with pytest.raises(NotFound, match='Requested profile "nope" doesn\'t exist'):
        profiles.check(["default", "nope"])
    with pytest.raises(BadRequest, match="Duplicate"):
        profiles.check(["default", "default"])
    inst = Instance(name="c", image="fp", profiles=["default", "small"],
                    config={"limits.memory": "64MiB"})
    assert profiles.expanded_config(inst) == {"limits.memory": "64MiB"}
    assert set(profiles.expanded_devices(inst)) == {"eth0", "web"}
    bare = Instance(name="b", image="fp", profiles=[])
    assert profiles.expanded_devices(bare) == {} and profiles.expanded_config(bare) == {}
    # a profile renamed or deleted under an instance is skipped, not an error
    gone = Instance(name="g", image="fp", profiles=["default", "gone"])
    assert set(profiles.expanded_devices(gone)) == {"eth0"}
    assert json.dumps(profiles.expanded_devices(inst))  # plain data
    store.close()
