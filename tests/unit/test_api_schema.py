"""The wire classes of ``cove.api``: round trips, strict ``parse``, tolerant
``from_wire`` against LXD 5.0-shaped answers, and the exported names."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

import cove.api
from cove import api
from cove.model.errors import BadRequest

# -- the exported names (as httpx's tests/test_exported_members.py) ---------------------


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert api.__all__ == sorted(api.__all__, key=lambda n: (not n.isupper(), n))
    for name in api.__all__:
        assert getattr(api, name) is not None, name


def test_every_public_name_is_exported() -> None:
    public = {n for n in dir(cove.api) if not n.startswith("_") and n != "TYPE_CHECKING"}
    assert public == set(api.__all__)
    with pytest.raises(AttributeError):
        api.no_such_name  # noqa: B018


def test_the_classes_stay_off_the_records() -> None:
    """The CLI imports the classes: no dataclasses, typing or model records."""
    code = ("import sys, cove.api; "
            "print(sorted(m for m in ('dataclasses', 'typing', 'cove.model.records', "
            "'cove.api._objects') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# -- round trips ----------------------------------------------------------------------------

REQUESTS: list[Any] = [
    api.InstancesPost(name="c1", source=api.InstanceSource(type="image", alias="busybox"),
                      config={"limits.cpu": "1"}, devices={"eth0": {"type": "nic",
                                                                    "network": "br0"}},
                      profiles=["default"], ephemeral=True, description="d", start=True),
    api.InstanceSource(type="copy", source="c1", live=True, instance_only=True,
                       secrets={"0": "s"}, base_image="ab", project="p"),
    api.InstanceSource(type="image", alias="debian/12", server="https://images.example",
                       protocol="simplestreams", mode="pull"),
    api.InstancePut(config={"a": "b"}, devices={}, profiles=["default"], description="x",
                    ephemeral=False),
    api.InstancePost(name="c2"),
    api.InstanceStatePut(action="stop", timeout=30, force=True),
    api.InstanceExecPost(command=["sh", "-c", "true"], environment={"A": "1"},
                         wait_for_websocket=True, interactive=True, width=100, height=40,
                         user=1000, group="wheel", cwd="/srv"),
    api.ImagePut(properties={"os": "busybox"}, public=True),
    api.ImageAliasesPost(name="bb", target="abc123", description="x"),
    api.ImageAliasesEntryPut(target="abc123", description="x"),
    api.ImageAliasesEntryPost(name="bb2"),
    api.NetworksPost(name="br1", config={"ipv4.address": "10.9.0.1/24"}, description="d"),
    api.NetworkPut(config={"ipv4.nat": "true"}, description="d"),
    api.CertificatesPost(name="me", certificate="AAAA"),
]

REPORTS: list[Any] = [
    api.Instance(name="c1", status="Running", status_code=103, architecture="x86_64",
                 config={"a": "b"}, devices={"eth0": {"type": "nic"}}, profiles=["default"],
                 created_at="2026-12-01T10:00:00Z",
                 state=api.InstanceState(status="Running", status_code=103, pid=42,
                                         network={"eth0": {"addresses": []}})),
    api.Instance(name="c2"),
    api.Image(fingerprint="ab" * 32, size=10, aliases=[api.ImageAlias(name="bb")],
              properties={"os": "busybox"}),
    api.ImageAliasesEntry(name="bb", target="ab" * 32),
    api.Network(name="br0", config={"ipv4.address": "10.0.0.1/24"}, used_by=["/1.0/x"]),
    api.NetworkLease(hostname="c1", hwaddr="00:16:3e:00:00:01", address="10.0.0.2"),
    api.NetworkState(addresses=[{"family": "inet", "address": "10.0.0.1", "netmask": "24",
                                 "scope": "global"}], counters={"bytes_sent": 1},
                     hwaddr="aa:bb:cc:dd:ee:ff", mtu=1500, state="up"),
    api.Profile(name="default", devices={"eth0": {"type": "nic"}}),
    api.Certificate(fingerprint="f" * 64, certificate="AAAA", name="me"),
    api.Operation(id="op1", class_="websocket", status="Running", status_code=103,
                  resources={"instances": ["/1.0/instances/c1"]}, metadata={"fds": {}}),
    api.Event(type="lifecycle", timestamp="2026-12-01T10:00:00.5Z",
              metadata={"action": "instance-started"}),
    api.ErrorResponse(error="not found", error_code=404),
]


@pytest.mark.parametrize("obj", REQUESTS, ids=lambda o: type(o).__name__)
def test_requests_round_trip_through_parse_and_from_wire(obj: Any) -> None:
    wire = json.loads(json.dumps(obj.to_wire()))
    assert type(obj).parse(wire) == obj
    assert type(obj).from_wire(wire) == obj
    assert type(obj).parse(wire).to_wire() == wire


@pytest.mark.parametrize("obj", REPORTS, ids=lambda o: type(o).__name__)
def test_reports_round_trip_through_from_wire(obj: Any) -> None:
    wire = json.loads(json.dumps(obj.to_wire()))
    back = type(obj).from_wire(wire)
    assert back == obj, (back, obj)
    assert back.to_wire() == wire


def test_equality_and_repr() -> None:
    a = api.InstancePost(name="c1")
    assert a == api.InstancePost(name="c1") and a != api.InstancePost(name="c2")
    assert a != api.ImageAliasesEntryPost(name="c1")  # same fields, another class
    assert repr(a) == "InstancePost(live=False, migration=False, name='c1')"
    with pytest.raises(TypeError):
        hash(a)


def test_request_bodies_are_the_ones_lxd_takes() -> None:
    post = api.InstancesPost(name="c1", source=api.InstanceSource(alias="busybox"))
    assert post.to_wire() == {"type": "container", "name": "c1",
                              "source": {"type": "image", "alias": "busybox"},
                              "config": {}, "devices": {}, "ephemeral": False,
                              "description": ""}
    assert api.InstancesPost(source=api.InstanceSource(alias="x"), profiles=[]).to_wire()[
        "profiles"] == []
    assert "name" not in api.InstancesPost().to_wire()  # the server picks one
    assert api.InstanceExecPost(command=["true"]).to_wire() == {
        "command": ["true"], "environment": {}, "wait-for-websocket": False,
        "interactive": False, "record-output": False}
    assert api.InstancePut(config={}).to_wire() == {"config": {}}  # a PATCH sends only that
    assert api.InstanceStatePut(action="start").to_wire() == {
        "action": "start", "timeout": -1, "force": False, "stateful": False}
    assert api.Operation(class_="task").to_wire()["class"] == "task"
    assert api.ErrorResponse(error="x", error_code=400).to_wire() == api.error_envelope(400, "x")


# -- strict parse ---------------------------------------------------------------------------

SOURCE = {"type": "image", "alias": "busybox"}


@pytest.mark.parametrize(("cls", "body", "message"), [
    (api.InstancesPost, [], "Request body must be a JSON object, not a list"),
    (api.InstancesPost, {"source": SOURCE}, "Field 'name' is required"),
    (api.InstancesPost, {"name": 5, "source": SOURCE}, "Field 'name' must be a string, not"),
    (api.InstancesPost, {"name": "c", "type": "virtual-machine"},
     "Instance type 'virtual-machine' is not supported"),
    (api.InstancesPost, {"name": "c", "source": "busybox"}, "Field 'source' must be an object"),
    (api.InstancesPost, {"name": "c", "source": SOURCE, "config": {"a": 1}},
     "Field 'config': the value of 'a' must be a string, not a number"),
    (api.InstancesPost, {"name": "c", "source": SOURCE, "devices": {"d": "x"}},
     "Field 'devices': device 'd' must be an object, not a string"),
    (api.InstancesPost, {"name": "c", "source": SOURCE, "devices": {"d": {"a": True}}},
     "Field 'devices': device 'd' key 'a' must be a string, not a boolean"),
    (api.InstancesPost, {"name": "c", "source": SOURCE, "profiles": "default"},
     "Field 'profiles' must be a list of strings, not a string"),
    (api.InstancesPost, {"name": "c", "source": SOURCE, "ephemeral": "yes"},
     "Field 'ephemeral' must be a boolean, not a string"),
    (api.InstancesPost, {"name": "c", "source": {"type": "image", "alias": 3}},
     "Field 'alias' must be a string, not a number"),
    (api.InstancePut, {"config": ["a"]}, "Field 'config' must be an object of strings, not"),
    (api.InstancePut, {"description": 1}, "Field 'description' must be a string, not a number"),
    (api.InstancePost, {}, "Field 'name' (the new name) is required"),
    (api.InstancePost, {"name": "x", "migration": True}, "Migration is not supported"),
    (api.InstanceStatePut, {}, "Field 'action' is required"),
    (api.InstanceStatePut, {"action": "stop", "stateful": True}, "Stateful start and stop"),
    (api.InstanceStatePut, {"action": "stop", "timeout": "5"},
     "Field 'timeout' must be a number, not a string"),
    (api.InstanceStatePut, {"action": "stop", "timeout": True},
     "Field 'timeout' must be a number, not a boolean"),
    (api.InstanceStatePut, {"action": "stop", "force": 1},
     "Field 'force' must be a boolean, not a number"),
    (api.InstanceExecPost, {}, "Field 'command' must be a non-empty list of strings"),
    (api.InstanceExecPost, {"command": []}, "Field 'command' must be a non-empty list"),
    (api.InstanceExecPost, {"command": ["a", 1]}, "Field 'command' must be a non-empty list"),
    (api.InstanceExecPost, {"command": ["a"], "width": 1.5},
     "Field 'width' must be an integer, not a number"),
    (api.InstanceExecPost, {"command": ["a"], "user": -1},
     "Field 'user' must be a uid/gid number in 0..4294967294, not -1"),
    (api.InstanceExecPost, {"command": ["a"], "user": 2**32},
     "Field 'user' must be a uid/gid number in 0..4294967294"),
    (api.InstanceExecPost, {"command": ["a"], "user": "root"},
     "Field 'user' must be a uid/gid number, not a string"),
    (api.InstanceExecPost, {"command": ["a"], "user": ""},
     "Field 'user' must be a uid/gid number, not a string"),
    (api.InstanceExecPost, {"command": ["a"], "group": True},
     "Field 'group' must be a uid/gid number, not a boolean"),
    (api.InstanceExecPost, {"command": ["a"], "user-name": 5},
     "Field 'user-name' must be a string, not a number"),
    (api.InstanceExecPost, {"command": ["a"], "user": 1, "user-name": "bin"},
     "Fields 'user' and 'user-name' exclude each other"),
    (api.InstanceExecPost, {"command": ["a"], "environment": {"A": None}},
     "Field 'environment': the value of 'A' must be a string, not null"),
    (api.ImagePut, {"auto_update": "yes"}, "Field 'auto_update' must be a boolean"),
    (api.ImagePut, {"public": "yes"}, "Field 'public' must be a boolean, not a string"),
    (api.ImageAliasesPost, {"target": "x"}, "Field 'name' is required"),
    (api.ImageAliasesPost, {"name": "x"}, "Field 'target' (an image fingerprint) is required"),
    (api.ImageAliasesPost, {"name": "x", "target": "y", "type": "virtual-machine"},
     "Alias type 'virtual-machine' is not supported"),
    (api.ImageAliasesEntryPut, {"target": 1}, "Field 'target' must be a string, not a number"),
    (api.ImageAliasesEntryPost, {"name": ""}, "Field 'name' (the new name) is required"),
    (api.NetworksPost, {"config": {}}, "Field 'name' is required"),
    (api.NetworksPost, {"name": "br1", "config": {"ipv4.nat": False}},
     "Field 'config': the value of 'ipv4.nat' must be a string, not a boolean"),
    (api.NetworkPut, {"description": ["x"]}, "Field 'description' must be a string, not"),
    (api.CertificatesPost, {"password": "secret"}, "Trust passwords and tokens are"),
    (api.CertificatesPost, {"token": True}, "Trust passwords and tokens are not supported"),
    (api.CertificatesPost, {"certificate": 1}, "Field 'certificate' must be a string, not"),
])
def test_parse_refuses_naming_the_field(cls: Any, body: Any, message: str) -> None:
    with pytest.raises(BadRequest, match="^" + _escape(message)):
        cls.parse(body)


def _escape(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_parse_refuses_nan_and_infinities(number: float) -> None:
    body = json.loads(json.dumps({"action": "stop", "timeout": number}))  # NaN, Infinity
    with pytest.raises(BadRequest, match="Field 'timeout' must be a finite number"):
        api.InstanceStatePut.parse(body)


def test_parse_fills_what_lxd_leaves_out() -> None:
    post = api.InstancesPost.parse({"name": "c1", "source": SOURCE})
    assert post.profiles is None and post.profiles_or_default == ["default"]
    assert post.type == "container" and post.config == {} and not post.start
    put = api.InstancePut.parse({"config": None, "profiles": None})
    assert put == api.InstancePut(config={}, profiles=[])  # present: set (null is empty)
    assert api.InstancePut.parse({}) == api.InstancePut()  # absent: None, PATCH keeps it
    ex = api.InstanceExecPost.parse({"command": ["ls"], "width": -5, "user-name": "",
                                     "cwd": ""})
    assert (ex.width, ex.height, ex.user, ex.group, ex.cwd) == (0, 0, None, None, None)
    state = api.InstanceStatePut.parse({"action": "stop", "timeout": 2.5})
    assert state.timeout == 2.5 and state.force is False
    assert api.InstanceStatePut.parse({"action": "stop", "timeout": 30.0}).to_wire()[
        "timeout"] == 30
    assert api.NetworksPost.parse({"name": "br1"}).type == "bridge"
    assert api.CertificatesPost.parse({}).type == "client"
    assert api.ImagePut.parse({}) == api.ImagePut()


@pytest.mark.parametrize(("source", "ref"), [
    ({"type": "image", "alias": "busybox"}, "busybox"),
    ({"type": "image", "fingerprint": "abc123"}, "abc123"),
    ({"type": "image", "alias": "x", "fingerprint": "abc"}, "abc"),
])
def test_image_ref_names_the_local_image(source: dict[str, Any], ref: str) -> None:
    assert api.InstanceSource.parse(source).image_ref() == ref


@pytest.mark.parametrize(("source", "message"), [
    ({}, "Creating an instance without an image (source type 'none')"),
    ({"type": "none"}, "Creating an instance without an image"),
    ({"type": "copy", "source": "c1"}, "Source type 'copy' is not supported"),
    ({"type": "image", "alias": "x", "server": "https://images.example"},
     "Remote image servers are not supported"),
    ({"type": "image", "properties": {"os": "alpine"}}, "Choosing an image by properties"),
    ({"type": "image"}, "Source must name an image: give 'alias' or 'fingerprint'"),
])
def test_image_ref_refuses_what_cove_cannot_create_from(source: dict[str, Any],
                                                       message: str) -> None:
    with pytest.raises(BadRequest, match="^" + _escape(message)):
        api.InstanceSource.parse(source).image_ref()


# -- tolerant from_wire: LXD 5.0's answers ----------------------------------------------------

LXD_INSTANCE = {
    "architecture": "x86_64",
    "config": {"image.os": "Alpine", "volatile.base_image": "ab" * 32,
               "volatile.eth0.hwaddr": "00:16:3e:2d:8f:1c"},
    "created_at": "2023-03-01T10:00:00.123456789Z",
    "description": "",
    "devices": {},
    "ephemeral": False,
    "expanded_config": {"image.os": "Alpine"},
    "expanded_devices": {"eth0": {"name": "eth0", "network": "lxdbr0", "type": "nic"},
                         "root": {"path": "/", "pool": "default", "type": "disk"}},
    "last_used_at": "2023-03-01T10:00:01Z",
    "location": "none",
    "name": "c1",
    "profiles": ["default"],
    "project": "default",
    "stateful": False,
    "status": "Running",
    "status_code": 103,
    "type": "container",
    "backups": None,
    "snapshots": None,
    "state": {
        "cpu": {"usage": 3068000},
        "disk": {"root": {"usage": 12288}},
        "memory": {"swap_usage": 0, "swap_usage_peak": 0, "usage": 1552384,
                   "usage_peak": 4034560},
        "network": {"eth0": {"addresses": [{"address": "10.1.1.2", "family": "inet",
                                            "netmask": "24", "scope": "global"}],
                             "counters": {"bytes_received": 1, "bytes_sent": 2,
                                          "packets_received": 3, "packets_sent": 4},
                             "host_name": "veth1", "hwaddr": "00:16:3e:2d:8f:1c", "mtu": 1500,
                             "state": "up", "type": "broadcast"}},
        "pid": 4242,
        "processes": 1,
        "status": "Running",
        "status_code": 103,
    },
    "some_future_field": {"x": 1},
}


def test_from_wire_reads_an_lxd_instance() -> None:
    inst = api.Instance.from_wire(LXD_INSTANCE)
    assert inst.name == "c1" and inst.status_code == 103 and inst.full
    assert inst.expanded_devices["root"]["pool"] == "default"
    assert inst.state is not None and inst.state.pid == 4242
    assert inst.state.network is not None and "eth0" in inst.state.network
    assert inst.snapshots == [] and inst.backups == []  # LXD's null lists
    plain = api.Instance.from_wire({k: v for k, v in LXD_INSTANCE.items() if k != "state"})
    assert not plain.full and "state" not in plain.to_wire()


def test_from_wire_defaults_what_is_missing_or_odd() -> None:
    inst = api.Instance.from_wire({"name": "c1", "config": {"a": None, "b": 1},
                                   "status_code": "103", "profiles": None})
    assert inst.config == {"b": "1"} and inst.status_code == 103 and inst.profiles == []
    assert inst.project == "default" and inst.created_at == api.ZERO_TIME
    assert api.InstanceState.from_wire({}).network is None
    assert api.Operation.from_wire({}).class_ == "task"


def test_from_wire_reads_lxd_images_operations_and_networks() -> None:
    img = api.Image.from_wire({
        "aliases": [{"name": "alpine", "description": ""}], "architecture": "x86_64",
        "auto_update": False, "cached": False, "created_at": "2023-03-01T00:00:00Z",
        "expires_at": "1970-01-01T00:00:00Z", "filename": "alpine.tar.xz",
        "fingerprint": "ab" * 32, "last_used_at": "0001-01-01T00:00:00Z",
        "profiles": ["default"], "project": "default",
        "properties": {"os": "Alpine", "release": "3.17"}, "public": False, "size": 2860184,
        "type": "container", "update_source": {"alias": "alpine/3.17", "protocol":
                                               "simplestreams", "server": "https://x"},
        "uploaded_at": "2023-03-01T00:00:00Z"})
    assert img.aliases == [api.ImageAlias(name="alpine")] and img.size == 2860184
    assert img.update_source is not None and img.to_wire()["update_source"]["server"]
    op = api.Operation.from_wire({
        "class": "websocket", "created_at": "2023-03-01T10:00:00Z", "description":
        "Executing command", "err": "", "id": "b8d84888", "location": "none",
        "may_cancel": False, "metadata": {"command": ["bash"], "fds": {"0": "s0",
                                                                      "control": "sc"}},
        "resources": {"containers": ["/1.0/containers/c1"], "instances":
                      ["/1.0/instances/c1"]},
        "status": "Running", "status_code": 103, "updated_at": "2023-03-01T10:00:00Z"})
    assert op.class_ == "websocket" and op.metadata is not None
    assert op.resources["instances"] == ["/1.0/instances/c1"]
    net = api.Network.from_wire({"config": {"ipv4.address": "10.1.1.1/24"}, "description": "",
                                 "locations": None, "managed": True, "name": "lxdbr0",
                                 "status": "Created", "type": "bridge",
                                 "used_by": ["/1.0/profiles/default"]})
    assert net.locations == [] and net.used_by == ["/1.0/profiles/default"]
    state = api.NetworkState.from_wire({
        "addresses": [{"address": "10.1.1.1", "family": "inet", "netmask": "24",
                       "scope": "global"}],
        "bond": None, "bridge": {"id": "8000.00163e", "stp": False, "forward_delay": 1500,
                                 "vlan_default": 1, "vlan_filtering": True,
                                 "upper_devices": ["veth1"]},
        "counters": {"bytes_received": 1, "bytes_sent": 2, "packets_received": 3,
                     "packets_sent": 4},
        "hwaddr": "00:16:3e:00:00:01", "mtu": 1500, "state": "up", "type": "broadcast",
        "vlan": None})
    assert state.bridge is not None and state.counters["bytes_sent"] == 2
    lease = api.NetworkLease.from_wire({"address": "10.1.1.2", "hostname": "c1",
                                        "hwaddr": "00:16:3e:2d:8f:1c", "location": "none",
                                        "project": "default", "type": "dynamic"})
    assert lease.address == "10.1.1.2"
    event = api.Event.from_wire({"location": "none", "metadata": {"action":
                                 "instance-started", "source": "/1.0/instances/c1"},
                                 "timestamp": "2023-03-01T10:00:00.1Z", "type": "lifecycle",
                                 "project": "default"})
    assert event.metadata["action"] == "instance-started"
    err = api.ErrorResponse.from_wire({"type": "error", "error": "Instance not found",
                                       "error_code": 404, "metadata": None})
    assert err == api.ErrorResponse(error="Instance not found", error_code=404)
    cert = api.Certificate.from_wire({"certificate": "MIIB", "fingerprint": "f" * 64,
                                      "name": "me", "projects": None, "restricted": False,
                                      "type": "client"})
    assert cert.projects == [] and cert.description == ""
    prof = api.Profile.from_wire({"config": {}, "description": "Default LXD profile",
                                  "devices": {"root": {"path": "/", "pool": "default",
                                                       "type": "disk"}},
                                  "name": "default", "used_by": None})
    assert prof.devices["root"]["pool"] == "default" and prof.used_by == []


# -- one schema on both sides ------------------------------------------------------------------

def test_the_clients_bodies_are_what_the_server_parses() -> None:
    from cove.client import _wire as wire

    cases: list[tuple[Any, Any]] = [
        (wire.create_instance(api.InstancesPost(name="c1", source=api.InstanceSource(
            alias="bb"), profiles=["default"], start=True)), api.InstancesPost),
        (wire.update_instance("c1", api.InstancePut(config={"a": "b"})), api.InstancePut),
        (wire.rename_instance("c1", "c2"), api.InstancePost),
        (wire.change_state("c1", "stop", timeout=5, force=True), api.InstanceStatePut),
        (wire.exec_command("c1", ["ls"], environment={"A": "1"}, user=0, group="root",
                           cwd="/", width=80, height=24), api.InstanceExecPost),
        (wire.create_alias("a", "fp", "d"), api.ImageAliasesPost),
        (wire.rename_alias("a", "b"), api.ImageAliasesEntryPost),
        (wire.add_certificate(None, name="me"), api.CertificatesPost),
        (wire.create_network("br1", {"ipv4.address": "auto"}), api.NetworksPost),
        (wire.update_network("br1", config={}, description="x"), api.NetworkPut),
    ]
    for req, cls in cases:
        body = json.loads(json.dumps(req.body))
        assert cls.parse(body).to_wire() == body, cls.__name__


def test_exec_strings_over_a_megabyte_together_are_refused() -> None:
    from cove.api import InstanceExecPost
    from cove.model.errors import BadRequest

    body = {"command": ["echo"] + ["x" * 100_000] * 11}
    with pytest.raises(BadRequest, match="too long together"):
        InstanceExecPost.parse(body)
    InstanceExecPost.parse({"command": ["echo"] + ["x" * 100_000] * 10})
