"""Copies and rebuilds on every driver, cove and a real LXD alike: a copy
of a running instance with its snapshots, of a snapshot, without
snapshots; the source's config carried; convergent (a target that exists is
left); NotFound for a missing source; a rebuild of a stopped instance (LXD
5.0 lacks ``instances_rebuild``: skipped there with that reason)."""

from __future__ import annotations

import pytest
from conftest import FEATURE_DRIVERS, Host

from cove import api
from cove.client import Client
from cove.model.errors import BadRequest, NotFound

# every driver but cli-lxc: conftest.FEATURE_DRIVERS says why
pytestmark = pytest.mark.parametrize("host", FEATURE_DRIVERS, indirect=True)


def _lxd_has(extension: str) -> bool:
    client = Client("/var/lib/lxd/unix.socket")
    try:
        return extension in (client.server().get("api_extensions") or [])
    finally:
        client.close()


def test_copy(host: Host) -> None:
    d = host.driver
    src, dst, fromsnap, only = (host.name(t) for t in ("cps", "cpd", "cpf", "cpo"))
    try:
        d.create_container(src, alias=host.image, autostart=False, config={"user.k": "v"})
        d.start_container(src)
        t = d.transport_for(src)
        t.execute("echo one > /root/covetest").check()
        d.create_snapshot(src, "s0")
        t.execute("echo two > /root/covetest").check()
        made = d.copy(src, dst)  # running: copied consistently, left running
        assert isinstance(made, api.Instance) and made.name == dst
        assert made.status == "Stopped" and made.config.get("user.k") == "v"
        assert made.profiles == d.container(src)["profiles"]
        # the running source's last state is not carried (LXD records its own idmap)
        assert made.config.get("volatile.last_state.power", "STOPPED") == "STOPPED"
        assert d.container(src)["status"] == "Running"
        assert [s.name for s in d.snapshots(dst)] == ["s0"]
        assert d.copy(src, dst).created_at == made.created_at  # there: left as it is
        d.start_container(dst)
        assert d.transport_for(dst).execute("cat /root/covetest").check().stdout == b"two\n"
        d.copy(f"{src}/s0", fromsnap, config={"user.extra": "1"})
        assert d.snapshots(fromsnap) == []
        assert d.container(fromsnap)["config"].get("user.extra") == "1"
        d.start_container(fromsnap)
        assert d.transport_for(fromsnap).execute(
            "cat /root/covetest").check().stdout == b"one\n"
        d.copy(src, only, instance_only=True, profiles=d.container(src)["profiles"])
        assert d.snapshots(only) == []
        with pytest.raises(NotFound):
            d.copy(host.name("none"), host.name("cpx"))
        with pytest.raises(NotFound):
            d.copy(f"{src}/nosnap", host.name("cpx"))
    finally:
        for n in (only, fromsnap, dst, src):
            d.delete_container(n)


def test_rebuild(host: Host) -> None:
    if host.lxd and not _lxd_has("instances_rebuild"):
        pytest.skip("this LXD lacks the instances_rebuild API extension (LXD 5.0)")
    d = host.driver
    name = host.name("reb")
    try:
        d.create_container(name, alias=host.image, autostart=False, config={"user.k": "v"})
        d.start_container(name)
        d.transport_for(name).execute("echo one > /root/covetest").check()
        with pytest.raises(BadRequest):
            d.rebuild(name, host.image)  # running: refused, as LXD
        d.stop_container(name, force=True)
        d.rebuild(name, host.image)
        assert d.container(name)["config"].get("user.k") == "v"
        d.start_container(name)
        out = d.transport_for(name).execute("test -e /root/covetest || echo gone").check()
        assert out.stdout == b"gone\n"
    finally:
        d.delete_container(name)
    with pytest.raises(NotFound):
        d.rebuild(name, host.image)
