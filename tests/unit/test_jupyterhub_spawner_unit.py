"""CoveSpawner's pure parts: options to session arguments, the hub profile,
the environment rewrite, state. The container side is in
tests/integration/test_jupyterhub_spawner.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("jupyterhub")

from cove.jupyterhub import CoveSpawner


def _spawner(api_url: str = "http://127.0.0.1:8081/hub/api", name: str = "ann@x.org",
             **kw: Any) -> CoveSpawner:
    hub = SimpleNamespace(api_url=api_url, base_url="/hub/", url=api_url.replace("api", ""),
                          public_host="", host="")
    user = SimpleNamespace(name=name, escaped_name=name, url=f"/user/{name}/")
    return CoveSpawner(user=user, hub=hub, **kw)


def test_entry_point_names_the_class() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep for ep in entry_points(group="jupyterhub.spawners")}
    assert eps["cove"].load() is CoveSpawner


def test_server_listens_on_the_app_port_inside() -> None:
    s = _spawner(app_port=9999)
    assert (s.ip, s.port) == ("0.0.0.0", 9999)


def test_volume_templates_and_limits() -> None:
    s = _spawner(volumes={"/srv/{username}": "/home/jovyan/work",
                          "/data": {"bind": "/data/{username}", "mode": "ro"}},
                 limits={"limits.memory": "1GiB"}, cpu_limit=0.5, mem_limit=2 ** 30)
    assert s.session_volumes() == {"/srv/ann@x.org": {"bind": "/home/jovyan/work"},
                                   "/data": {"bind": "/data/ann@x.org", "mode": "ro"}}
    # the explicit limit wins over mem_limit; a fractional cpu_limit is an allowance
    assert s.session_limits() == {"memory": "1GiB", "cpu.allowance": "50ms/100ms"}
    assert _spawner(mem_limit=512 * 2 ** 20, cpu_limit=2).session_limits() == {
        "memory": "512MiB", "cpu": "2"}


@pytest.mark.parametrize("name", ["a/b", "..", "."])
def test_a_name_that_would_move_a_volume_path_is_refused(name: str) -> None:
    s = _spawner(name=name, volumes={"/srv/{username}": "/work"})
    with pytest.raises(ValueError, match="volume path"):
        s.session_volumes()


def test_hub_profile_connects_to_the_hub_and_listens_inside() -> None:
    name, dev = _spawner("http://0.0.0.0:8123/hub/api").hub_profile()
    assert name.startswith("jupyterhub-")
    assert dev == {"type": "proxy", "bind": "instance", "listen": "tcp:127.0.0.1:8123",
                   "connect": "tcp:127.0.0.1:8123"}
    other, dev6 = _spawner("http://[::1]:8123/hub/api").hub_profile()
    assert other != name and dev6["connect"] == "tcp:[::1]:8123"


def test_a_hub_port_equal_to_the_app_port_is_refused() -> None:
    with pytest.raises(ValueError, match="app_port"):
        _spawner("http://127.0.0.1:8888/hub/api").hub_profile()


def test_env_points_the_server_at_the_proxied_hub() -> None:
    s = _spawner("http://10.0.0.5:8081/hub/api")
    s.api_token = "t"
    env = s.get_env()
    assert env["JUPYTERHUB_API_URL"] == "http://127.0.0.1:8081/hub/api"
    assert env["JUPYTERHUB_ACTIVITY_URL"].startswith("http://127.0.0.1:8081/hub/api/users/")
    direct = _spawner("http://10.0.0.5:8081/hub/api", hub_connect="direct")
    direct.api_token = "t"
    assert direct.get_env()["JUPYTERHUB_API_URL"] == "http://10.0.0.5:8081/hub/api"


def test_state_round_trip_and_realm_check() -> None:
    s = _spawner(realm="r1")
    assert s.get_state() == {}
    s.instance_name = "s-ann-jupyterhub-abc"
    state = s.get_state()
    assert state == {"cove_name": "s-ann-jupyterhub-abc", "cove_realm": "r1"}
    again = _spawner(realm="r1")
    again.load_state(state)
    assert again.instance_name == "s-ann-jupyterhub-abc"
    # a hub moved to another realm does not adopt the old realm's container
    other = _spawner(realm="r2")
    other.load_state(state)
    assert other.instance_name is None
    again.clear_state()
    assert again.instance_name is None and again.get_state() == {}


@pytest.mark.parametrize("server,app", [("", "jupyterhub"), ("lab", "jupyterhub/lab")])
def test_named_servers_are_separate_apps(server: str, app: str) -> None:
    s = _spawner(orm_spawner=SimpleNamespace(name=server, server=None, state=None))
    assert s.app_id == app


def test_without_a_state_the_server_is_looked_up_by_name(tmp_path: Any) -> None:
    from cove.client._http import ConnectionFailed

    sp = _spawner(endpoint=str(tmp_path / "no.socket"))
    # no state and no cove to ask: not running (a hub then stops nothing)
    assert asyncio.run(sp.poll()) == 0
    # stop without a state removes the server's session by its name: it asks
    with pytest.raises(ConnectionFailed):
        asyncio.run(sp.stop())


class _Profiles:
    """A host's profiles, as much of ``AsyncRestDriver`` as the hub profile uses."""

    def __init__(self, profiles: dict[str, dict[str, Any]]) -> None:
        self.profiles_ = profiles
        self.deleted: list[str] = []

    async def profiles(self) -> list[Any]:
        from cove import api

        return [api.Profile(name=n, config=p.get("config"), used_by=p.get("used_by"))
                for n, p in self.profiles_.items()]

    async def delete_profile(self, name: str) -> None:
        from cove.model.errors import BadRequest

        if self.profiles_.get(name, {}).get("used_by"):
            raise BadRequest("Profile is currently in use")
        self.profiles_.pop(name, None)
        self.deleted.append(name)

    async def create_profile(self, name: str, **kw: Any) -> None:
        self.profiles_.setdefault(name, {"config": dict(kw.get("config") or {})})

    async def update_profile(self, name: str, **kw: Any) -> None:
        self.profiles_[name]["config"] = dict(kw.get("config") or {})


def test_orphan_hub_profiles_are_swept_and_no_other() -> None:
    import time

    from cove.jupyterhub._spawner import sweep_hub_profiles

    mark, now = "user.cove.jupyterhub.seen", time.time()
    host = _Profiles({
        "jupyterhub-gone": {"config": {mark: str(now - 1000)}},
        "jupyterhub-live": {"config": {mark: str(now - 10)}},  # another hub, seen lately
        "jupyterhub-used": {"config": {mark: str(now - 1000)}, "used_by": ["/1.0/i/x"]},
        "jupyterhub-mine": {"config": {mark: str(now - 1000)}},
        "jupyterhub-user": {"config": {"user.x": "1"}},  # not CoveSpawner's
        "default": {"config": {}},
    })
    gone = asyncio.run(sweep_hub_profiles(host, 100, keep="jupyterhub-mine"))  # type: ignore[arg-type]
    assert gone == ["jupyterhub-gone"]
    assert asyncio.run(sweep_hub_profiles(host, 100, keep="jupyterhub-mine")) == []  # type: ignore[arg-type]


def test_the_hub_profile_goes_with_the_last_user(monkeypatch: pytest.MonkeyPatch) -> None:
    from cove.jupyterhub import _spawner as mod

    sp = _spawner(endpoint="/nowhere/unit.socket")
    name, _ = sp.hub_profile()
    host = _Profiles({})
    monkeypatch.setattr(sp, "driver", lambda project=None: host)
    monkeypatch.setattr(mod, "_profiles_made", {})
    assert asyncio.run(sp.ensure_hub_profile()) == name
    assert float(host.profiles_[name]["config"]["user.cove.jupyterhub.seen"]) > 0
    # a spawn of this process in flight keeps it
    monkeypatch.setitem(mod._profile_users, (sp.endpoint, name), 1)
    asyncio.run(sp.release_hub_profile())
    assert name in host.profiles_
    monkeypatch.delitem(mod._profile_users, (sp.endpoint, name))
    # an instance using it (another process's server) keeps it: no error
    host.profiles_[name]["used_by"] = ["/1.0/instances/x"]
    asyncio.run(sp.release_hub_profile())
    assert name in host.profiles_
    # the last one gone: so is the profile, and the next spawn makes it again
    host.profiles_[name]["used_by"] = []
    asyncio.run(sp.release_hub_profile())
    assert name not in host.profiles_ and host.deleted == [name]
    assert asyncio.run(sp.ensure_hub_profile()) == name and name in host.profiles_
