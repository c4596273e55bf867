"""The wire of copies and rebuilds: the bodies a client sends (as ``lxc
copy`` does) and what coved refuses before the engine looks."""

from __future__ import annotations

import pytest

from cove import api
from cove.client import _wire_copies as wcopy
from cove.model.errors import BadRequest


def test_copy_body_is_lxc_copys() -> None:
    req = wcopy.copy_instance("c1/snap0", "c2", instance_only=True, profiles=["default"],
                              config={"user.k": "v"}, devices={"d": {"type": "none"}},
                              description="d")
    assert (req.method, req.path) == ("POST", "/1.0/instances")
    assert req.body["source"] == {"type": "copy", "source": "c1/snap0",
                                  "instance_only": True, "container_only": True}
    assert req.body["name"] == "c2" and req.body["profiles"] == ["default"]
    assert req.body["config"] == {"user.k": "v"} and req.body["devices"] == {
        "d": {"type": "none"}}
    # no profiles given: none sent, so the server takes the source's
    assert "profiles" not in wcopy.copy_instance("c1", "c2").body
    parsed = api.InstancesPost.parse(req.body)
    assert parsed.source.type == "copy" and parsed.source.instance_only


def test_rebuild_body() -> None:
    assert wcopy.rebuild_instance("c 1", "busybox").body == {
        "source": {"type": "image", "alias": "busybox"}}
    assert wcopy.rebuild_instance("c1").body == {"source": {"type": "none"}}
    assert wcopy.rebuild_instance("c 1").path == "/1.0/instances/c%201/rebuild"


@pytest.mark.parametrize(("body", "field"), [
    ({}, "source"),
    ({"source": "busybox"}, "source"),
    ({"source": {"type": "copy", "source": "c1"}}, "source.type"),
    ({"source": {"type": "image"}}, "alias"),
    ({"source": {"type": "image", "alias": 3}}, "alias"),
])
def test_rebuild_refused(body: object, field: str) -> None:
    with pytest.raises(BadRequest, match=field):
        api.InstanceRebuildPost.parse(body)


def test_rebuild_parse() -> None:
    assert api.InstanceRebuildPost.parse({"source": {"type": "none"}}).source.type == "none"
    # no type but an image named: LXD resolves it as an image
    got = api.InstanceRebuildPost.parse({"source": {"alias": "busybox"}})
    assert got.source.type == "image" and got.source.image_ref() == "busybox"
    assert api.InstanceRebuildPost.from_wire(got.to_wire()).source.alias == "busybox"
