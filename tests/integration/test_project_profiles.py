"""Profiles inside projects, as LXD scopes them: a project with
``features.profiles`` has its own (a default one made with it), one without
reads and writes the default project's; a project's profiles go with it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from covetest import Coved, new_name, rand


def _names(d: Coved, project: str) -> list[str]:
    return sorted(u.rsplit("/", 1)[-1].split("?")[0]
                  for u in d.api.sync("GET", f"/1.0/profiles?project={project}"))


def test_profiles_follow_their_project(make_coved: Callable[..., Coved],
                                       busybox_tar: Path) -> None:
    d = make_coved("pprof")
    d.api.import_image(busybox_tar, "busybox")
    own, shared = f"covetest-{rand(4)}", f"covetest-{rand(4)}"
    d.api.sync("POST", "/1.0/projects", {"name": own, "config": {"features.images": "false"}})
    d.api.sync("POST", "/1.0/projects", {"name": shared, "config": {
        "features.images": "false", "features.profiles": "false"}})

    # its own: a default profile (with eth0, so instances get a NIC), nothing of default's
    assert _names(d, own) == ["default"]
    prof = d.api.sync("GET", f"/1.0/profiles/default?project={own}")
    assert prof["project"] == own and "eth0" in prof["devices"]
    d.api.sync("POST", f"/1.0/profiles?project={own}",
               {"name": "small", "config": {"limits.processes": "77"}})
    assert _names(d, own) == ["default", "small"]
    assert "small" not in _names(d, "default")
    name = new_name("pp")
    d.api.run("POST", f"/1.0/instances?project={own}", {
        "name": name, "source": {"type": "image", "alias": "busybox"},
        "profiles": ["default", "small"]})
    inst = d.api.sync("GET", f"/1.0/instances/{name}?project={own}")
    assert inst["expanded_config"]["limits.processes"] == "77"
    assert f"/1.0/instances/{name}?project={own}" in d.api.sync(
        "GET", f"/1.0/profiles/small?project={own}")["used_by"]
    r = d.api.request("POST", "/1.0/instances", {
        "name": new_name("pp"), "source": {"type": "image", "alias": "busybox"},
        "profiles": ["small"]})
    assert r.status == 404  # the default project has no 'small'

    # without features.profiles: the default project's, for reading and writing
    assert _names(d, shared) == _names(d, "default")
    d.api.sync("POST", f"/1.0/profiles?project={shared}", {"name": "via-shared"})
    assert "via-shared" in _names(d, "default")
    other = new_name("pp")
    d.api.run("POST", f"/1.0/instances?project={shared}", {
        "name": other, "source": {"type": "image", "alias": "busybox"},
        "profiles": ["default", "via-shared"]})
    # renamed in default, the shared project's instance follows (one transaction)
    r = d.api.request("POST", "/1.0/profiles/via-shared", {"name": "via-shared2"})
    assert r.status == 201, r.body
    assert d.api.sync("GET", f"/1.0/instances/{other}?project={shared}")["profiles"] == [
        "default", "via-shared2"]
    d.api.run("DELETE", f"/1.0/instances/{other}?project={shared}")
    d.api.sync("DELETE", f"/1.0/profiles/via-shared2?project={shared}")

    # a project holding a profile besides default is not empty; its profiles go with it
    d.api.run("DELETE", f"/1.0/instances/{name}?project={own}")
    r = d.api.request("DELETE", f"/1.0/projects/{own}")
    assert r.status == 400, r.body
    d.api.sync("DELETE", f"/1.0/profiles/small?project={own}")
    d.api.sync("DELETE", f"/1.0/projects/{own}")
    assert d.api.request("GET", f"/1.0/profiles?project={own}").status == 404
    d.api.sync("POST", "/1.0/projects", {"name": own})
    assert _names(d, own) == ["default"]  # a fresh one, nothing left from before
    for p in (own, shared):
        d.api.sync("DELETE", f"/1.0/projects/{p}")
