"""One behaviour, every driver: profiles (create, list, update, rename,
delete, used by an instance, expanded into it).

Every host of the matrix (see conftest.py), LXD included; what a test makes
is named ``covetest-…`` and removed in a ``finally``. Where LXD 5.0 answers
with another status than cove, the line says so.
"""

from __future__ import annotations

import contextlib

import pytest
from conftest import FEATURE_DRIVERS, Host

from cove import api
from cove.model.errors import CoveError, NotFound

# every driver but cli-lxc: conftest.FEATURE_DRIVERS says why
pytestmark = pytest.mark.parametrize("host", FEATURE_DRIVERS, indirect=True)


def _cleanup(host: Host, *names: str) -> None:
    for n in names:
        with contextlib.suppress(CoveError):
            host.driver.delete_profile(n)


def test_profile_lifecycle(host: Host) -> None:
    d = host.driver
    name = host.name("prof")
    renamed = name + "-r"
    try:
        p = d.create_profile(name, config={"user.covetest": "1"}, description="covetest")
        assert isinstance(p, api.Profile)
        assert (p.name, p.description, p.config, p.devices, p.used_by) == \
            (name, "covetest", {"user.covetest": "1"}, {}, [])
        # exists: left as it is (not given this config)
        assert d.create_profile(name, config={"user.other": "2"}).config == \
            {"user.covetest": "1"}
        assert [x.name for x in d.profiles()].count(name) == 1
        assert "default" in [x.name for x in d.profiles()]

        d.update_profile(name, config={"environment.COVETEST": "yes"}, description="changed")
        got = d.profile(name)
        assert got.config == {"user.covetest": "1", "environment.COVETEST": "yes"}
        assert got.description == "changed"
        d.update_profile(name, config={"user.covetest": None})
        assert d.profile(name).config == {"environment.COVETEST": "yes"}
        # devices: added by name, replaced whole, removed with None
        d.update_profile(name, devices={"hide": {"type": "none"}})
        assert d.profile(name).devices == {"hide": {"type": "none"}}
        d.update_profile(name, devices={"hide": None})
        got = d.profile(name)
        assert got.devices == {} and got.config == {"environment.COVETEST": "yes"}
        assert got.description == "changed"

        d.rename_profile(name, renamed)
        d.rename_profile(name, renamed)  # done already: nothing
        with pytest.raises(NotFound):
            d.profile(name)
        assert d.profile(renamed).config == {"environment.COVETEST": "yes"}
        with pytest.raises(CoveError, match="cannot be renamed"):
            d.rename_profile("default", host.name("x"))  # 403 on both
        with pytest.raises(CoveError, match="cannot be deleted"):
            d.delete_profile("default")

        d.delete_profile(renamed)
        d.delete_profile(renamed)  # gone already: nothing
        with pytest.raises(NotFound):
            d.profile(renamed)
        with pytest.raises(NotFound):
            d.update_profile(renamed, description="x")
    finally:
        _cleanup(host, name, renamed)


def test_profile_used_by_and_expanded(host: Host) -> None:
    d = host.driver
    prof = host.name("prof")
    inst = host.name("pinst")
    try:
        d.create_profile(prof, config={"environment.COVETEST": "from-profile",
                                       "user.covetest": "profile"})
        d.create_container(inst, alias=host.image, profiles=["default", prof],
                           config={"user.covetest": "instance"}, autostart=False)
        got = d.container(inst)
        assert got["profiles"] == ["default", prof]
        # the instance's own key wins; the profile's other key is expanded in
        assert got["expanded_config"]["user.covetest"] == "instance"
        assert got["expanded_config"]["environment.COVETEST"] == "from-profile"
        assert "environment.COVETEST" not in got["config"]
        assert d.profile(prof).used_by == [f"/1.0/instances/{inst}"]
        # in use: refused (cove: 400 as LXD 5.x later; LXD 5.0 answers 500)
        with pytest.raises(CoveError, match="currently in use"):
            d.delete_profile(prof)
        d.update_profile(prof, config={"environment.COVETEST": "changed"})
        assert d.container(inst)["expanded_config"]["environment.COVETEST"] == "changed"

        d.update_container(inst, profiles=["default"])
        assert "environment.COVETEST" not in d.container(inst)["expanded_config"]
        assert d.profile(prof).used_by == []
        d.delete_profile(prof)
        with pytest.raises(CoveError, match="[Pp]rofile") as e:
            d.update_container(inst, profiles=["default", prof])
        # a 404 over REST (a command line has only the command's text)
        if host.kind.startswith("rest") or host.kind == "local":
            assert isinstance(e.value, NotFound)
    finally:
        with contextlib.suppress(CoveError):
            d.delete_container(inst)
        _cleanup(host, prof)
