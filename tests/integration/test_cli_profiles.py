"""``cove profile ...`` and ``cove launch --profile/--no-profiles`` against a
real coved, as a user runs them (a subprocess)."""

from __future__ import annotations

import contextlib
import json

import pytest
from covetest import Api, ApiError, Coved, new_name
from test_cli import Cli


@pytest.fixture
def cove(coved: Coved, api: Api) -> Cli:
    return Cli(coved.cli_env(), api)


def test_cove_profile_commands(cove: Cli, api: Api) -> None:
    prof, copy, renamed = new_name("p"), new_name("p"), new_name("p")
    name, bare = new_name("cli"), new_name("cli")
    try:
        cove("profile", "create", prof, "environment.COVETEST=cli", "--description", "mine")
        cove("profile", "set", prof, "limits.processes", "30")
        cove("profile", "set", prof, "user.a=1", "user.b=2")
        cove("profile", "unset", prof, "user.b")
        assert cove("profile", "get", prof, "user.a").stdout == b"1\n"
        cove("profile", "device", "add", prof, "hide", "none")
        assert b"hide:" in cove("profile", "device", "show", prof).stdout
        assert "already exists" in cove.fails("profile", "device", "add", prof, "hide", "none",
                                              code=2)
        shown = cove("profile", "show", prof).stdout.decode()
        assert "environment.COVETEST: cli" in shown and "user.b" not in shown
        assert "description: mine" in shown
        rows = json.loads(cove("profile", "list", "-f", "json").stdout)
        assert {r["name"] for r in rows} >= {"default", prof}
        cove("profile", "copy", prof, copy)
        assert api.sync("GET", f"/1.0/profiles/{copy}")["config"]["user.a"] == "1"
        cove("profile", "edit", copy, input=b"config:\n  user.z: '9'\ndevices: {}\n")
        got = api.sync("GET", f"/1.0/profiles/{copy}")
        assert (got["config"], got["devices"], got["description"]) == ({"user.z": "9"}, {}, "")
        cove("profile", "device", "remove", prof, "hide")
        assert api.sync("GET", f"/1.0/profiles/{prof}")["devices"] == {}

        api.made.append(name)
        cove("launch", "busybox", name, "--profile", "default", "--profile", prof,
             "-c", "cove.cmd=sleep 1000")
        assert cove("exec", name, "--", "sh", "-c", "echo $COVETEST").stdout == b"cli\n"
        assert "in use" in cove.fails("profile", "delete", prof)
        assert "cannot be deleted" in cove.fails("profile", "delete", "default")
        cove("profile", "rename", prof, renamed)
        assert api.instance(name)["profiles"] == ["default", renamed]
        cove("profile", "remove", name, renamed)
        cove("profile", "add", name, copy)
        assert api.instance(name)["profiles"] == ["default", copy]
        cove("profile", "assign", name, f"default,{renamed}")
        assert api.instance(name)["profiles"] == ["default", renamed]
        cove("profile", "delete", copy)

        api.made.append(bare)
        cove("launch", "busybox", bare, "--no-profiles", "-c", "cove.cmd=sleep 1000")
        assert api.instance(bare)["profiles"] == []
        assert cove("exec", bare, "--", "ls", "/sys/class/net").stdout.split() == [b"lo"]
        assert "exclude" in cove.fails("launch", "busybox", new_name("x"), "--no-profiles",
                                       "--profile", "default", code=2)
    finally:
        for n in (name, bare):
            api.remove(n)
        for p in (prof, copy, renamed):
            with contextlib.suppress(ApiError):
                api.sync("DELETE", f"/1.0/profiles/{p}")
