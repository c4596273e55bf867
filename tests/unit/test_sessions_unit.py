"""``cove.sessions`` without a host: the naming and input rules, and the
flows against a small in-memory LXD (a typed handler, as httpx's
MockTransport) that answers every request at once."""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

import cove.sessions
from cove.api._filter import filter_objects
from cove.client._http import Response
from cove.client._wire import Request
from cove.model.errors import BadRequest, Forbidden, InternalError, NotFound
from cove.sessions import OperationInProgress, SessionManager, session_name
from cove.sessions._names import LABEL, disk_devices, limits_config, session_env, unix_user

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,62}$")
FP = "f" * 64


def _ok(md: Any = None) -> Response:
    return Response(200, {}, json.dumps({"type": "sync", "status": "Success",
                                         "status_code": 200, "metadata": md}).encode())


def _err(code: int, text: str) -> Response:
    return Response(code, {}, json.dumps({"type": "error", "error": text,
                                          "error_code": code}).encode())


class FakeLxd:
    """Instances, projects and one image (alias ``app``), in memory; every
    request recorded as ``METHOD path``."""

    def __init__(self, projects: bool = True) -> None:
        self.projects: set[str] = {"default"}
        self.has_projects = projects
        self.instances: dict[tuple[str, str], dict[str, Any]] = {}
        self.log: list[str] = []
        self.fail_start = False
        self.before_create: Any = None

    def send(self, req: Request) -> Response:
        url = urlsplit(req.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        project = query.get("project", "default")
        path = unquote(url.path)
        self.log.append(f"{req.method} {path}")
        body = req.body if isinstance(req.body, dict) else {}
        if path == "/1.0":
            return _ok({"api_extensions": ["projects"] if self.has_projects else []})
        if path.startswith("/1.0/projects"):
            return self._project(req.method, path, body)
        if path == "/1.0/images/aliases/app":
            return _ok({"name": "app", "target": FP})
        if path.startswith("/1.0/images/"):
            ok = FP.startswith(path.rsplit("/", 1)[1]) and "aliases" not in path
            return _ok({"fingerprint": FP}) if ok else _err(404, "Image not found")
        if path == "/1.0/instances":
            return self._instances(req.method, project, body, query)
        return self._instance(req.method, path, project, body)

    def _project(self, method: str, path: str, body: dict[str, Any]) -> Response:
        if method == "POST":
            if body["name"] in self.projects:
                return _err(409, "exists")
            self.projects.add(body["name"])
            return _ok()
        name = path.rsplit("/", 1)[1]
        return _ok({"name": name}) if name in self.projects else _err(404, "Project not found")

    def _instances(self, method: str, project: str, body: dict[str, Any],
                   query: dict[str, str]) -> Response:
        if project not in self.projects:
            return _err(404, "Project not found")
        if method == "GET":
            objs = [o for (p, _), o in self.instances.items() if p == project]
            return _ok(filter_objects(objs, query.get("filter", "")))
        if self.before_create is not None:
            self.before_create()
        if (project, body["name"]) in self.instances:
            return _err(409, "Instance already exists")
        self.instances[(project, body["name"])] = {
            "name": body["name"], "project": project, "status": "Stopped",
            "config": dict(body.get("config") or {}), "devices": dict(body.get("devices") or {})}
        return _ok()

    def _instance(self, method: str, path: str, project: str, body: dict[str, Any]) -> Response:
        name = path.split("/")[3]
        obj = self.instances.get((project, name))
        if obj is None:
            return _err(404, "Instance not found")
        if method == "GET":
            return _ok(json.loads(json.dumps(obj)))
        if method == "DELETE":
            if obj["status"] == "Running":
                return _err(400, "Instance is running")
            del self.instances[(project, name)]
            return _ok()
        if method == "PATCH":
            obj["config"].update(body.get("config") or {})
            obj["devices"].update(body.get("devices") or {})
            return _ok()
        if body.get("action") == "start":
            if self.fail_start:
                return _err(500, "the proxy's port is taken")
            obj["status"] = "Running"
        elif body.get("action") == "stop":
            obj["status"] = "Stopped"
        return _ok()


def _manager(lxd: FakeLxd, **kw: Any) -> SessionManager:
    m = SessionManager(lxd, realm="portal", **kw)  # a Client-like: anything with send()
    m.realm.pick_port = lambda host: 40000 + len(lxd.log)
    m.realm.port_taken = lambda host, port: False
    return m


# -- names and input ---------------------------------------------------------------------

@pytest.mark.parametrize("user", ["ann", "ann@example.org", "a/b", "ünï", "-", "9lives",
                                  "x" * 500, "..", "a b", "A.B"])
def test_names_follow_lxd_rules(user: str) -> None:
    name = session_name("portal", user, "app/1")
    assert NAME.match(name) and not name.endswith("-") and "--" not in name
    assert name == session_name("portal", user, "app/1")


def test_names_that_escape_alike_stay_apart() -> None:
    names = {session_name("r", u, "a") for u in ("a.b", "a-b", "a/b", "a b", "a_b")}
    assert len(names) == 5
    assert session_name("r1", "u", "a") != session_name("r2", "u", "a")
    assert session_name("r", "ab", "c") != session_name("r", "a", "bc")
    long1, long2 = "x" * 100 + "1", "x" * 100 + "2"
    assert session_name("r", long1, "a") != session_name("r", long2, "a")


def test_environment_and_user() -> None:
    env = session_env("ann@example.org", "u1", "/user/ann/",
                      {"JPY_USER": "mallory", "USER": "root", "X": 1})
    assert env == {"JPY_USER": "ann@example.org", "USER": "ann", "URL_ID": "u1",
                   "JPY_BASE_USER_URL": "/user/ann", "X": "1"}
    assert unix_user("bob") == "user" and unix_user("1x@y") == "user"
    with pytest.raises(BadRequest, match="environment"):
        session_env("a", "u", "/", {"A=B": "1"})
    assert limits_config({"memory": "1GiB", "limits.cpu": 2}) == \
        {"limits.memory": "1GiB", "limits.cpu": "2"}
    with pytest.raises(BadRequest):
        limits_config({"Memory Max": "1"})


def test_volumes() -> None:
    devices, skipped = disk_devices({"/srv/a": {"bind": "/data"},
                                     "/srv/b": {"bind": "/b", "mode": "ro"},
                                     "/gone": {"bind": "/g"}}, lambda p: p != "/gone")
    assert devices == {"session-vol0": {"type": "disk", "source": "/srv/a", "path": "/data"},
                       "session-vol1": {"type": "disk", "source": "/srv/b", "path": "/b",
                                        "readonly": "true"}}
    assert skipped == ["/gone"]
    looked: list[str] = []
    for bad in ({"/a/../etc": {"bind": "/x"}}, {"/a": {"bind": "/x/.."}},
                {"/a": {"bind": "x"}}, {"/ok": {"bind": "/x"}, "/a": {"bind": "/y", "mode": "w"}},
                {"/a": "/x"}):
        with pytest.raises(BadRequest):
            disk_devices(bad, looked.append)
    assert looked == []  # all checked before any path is looked at


def test_exports() -> None:
    assert sorted(cove.sessions.__all__) == [
        "AsyncSessionManager", "MultipleResultsFound", "OperationInProgress", "Session",
        "SessionManager", "session_name"]


# -- flows ---------------------------------------------------------------------------------

def test_start_makes_the_realm_and_labels() -> None:
    lxd = FakeLxd()
    s = _manager(lxd).start("ann", "app", "nb", base_urlpath="/u/ann")
    assert "portal" in lxd.projects and s.project == "portal"
    obj = lxd.instances[("portal", s.name)]
    labels = {k[len(LABEL):]: v for k, v in obj["config"].items() if k.startswith(LABEL)}
    assert labels["state"] == "running" and labels["user"] == "ann" and labels["app"] == "nb"
    assert obj["devices"]["session-port"] == {
        "type": "proxy", "listen": f"tcp:127.0.0.1:{s.port}", "connect": "tcp:127.0.0.1:8888"}
    assert obj["status"] == "Running"
    assert json.loads(json.dumps(s.to_dict()))["port"] == s.port
    assert cove.sessions.Session(**{**s.to_dict(), "skipped_volumes": ()}) == s


def test_reads_do_not_make_the_realm() -> None:
    lxd = FakeLxd()
    m = _manager(lxd)
    assert m.find() == [] and m.find_one(user="ann") is None and m.sweep_stale() == []
    m.stop_and_remove("s-ann-nb-0123456789ab")
    assert m.image("app") is not None and m.image("nope") is None
    with pytest.raises(NotFound):
        m.start("ann", "nope", "nb", base_urlpath="/u/")
    assert lxd.projects == {"default"}
    assert not any(x.startswith("POST") for x in lxd.log)
    s = m.start("ann", "app", "nb", base_urlpath="/u/")  # a start makes it
    assert lxd.projects == {"default", "portal"} and m.find() == [s]


def test_a_realm_made_meanwhile_by_another_manager_is_fine() -> None:
    lxd = FakeLxd()
    real = lxd._project

    def lost_the_race(method: str, path: str, body: dict[str, Any]) -> Response:
        if method == "POST":
            lxd.projects.add(body["name"])  # the other manager was first
            return _err(500, "Failed creating project: already exists")
        return real(method, path, body)

    lxd._project = lost_the_race  # type: ignore[method-assign]
    s = _manager(lxd).start("ann", "app", "nb", base_urlpath="/u/")
    assert s.project == "portal"


def test_without_projects_the_realm_is_labels() -> None:
    lxd = FakeLxd(projects=False)
    s = _manager(lxd).start("ann", "app", "nb", base_urlpath="/u/")
    assert s.project is None and ("default", s.name) in lxd.instances
    assert not any("projects" in x for x in lxd.log)


def test_a_start_in_flight_is_refused_until_its_lease_ends() -> None:
    lxd = FakeLxd()
    m = _manager(lxd)
    s = m.start("ann", "app", "nb", base_urlpath="/u/")
    cfg = lxd.instances[("portal", s.name)]["config"]
    cfg.update({LABEL + "state": "starting", LABEL + "token": "other",
                LABEL + "lease": str(time.time() + 60)})
    lxd.log.clear()
    with pytest.raises(OperationInProgress) as err:
        m.start("ann", "app", "nb", base_urlpath="/u/")
    assert err.value.operation == f"start {s.name}"
    assert all(x.startswith("GET") for x in lxd.log), lxd.log  # nothing touched
    assert m.find() == []  # in flight: no session yet
    assert m.sweep_stale() == []  # in flight: left alone
    cfg[LABEL + "lease"] = str(time.time() - 1)  # its starter died
    assert m.sweep_stale() == [s.name] and lxd.instances == {}
    assert m.sweep_stale() == []
    t = m.start("ann", "app", "nb", base_urlpath="/u/")
    assert t.url_id != s.url_id and m.find() == [t]


def test_losing_the_create_is_operation_in_progress() -> None:
    lxd = FakeLxd()
    m = _manager(lxd)
    other = _manager(lxd)

    def someone_else_first() -> None:
        lxd.before_create = None
        other.start("ann", "app", "nb", base_urlpath="/u/")
        lxd.instances[("portal", session_name("portal", "ann", "nb"))]["config"][
            LABEL + "state"] = "starting"

    lxd.before_create = someone_else_first
    with pytest.raises(OperationInProgress):
        m.start("ann", "app", "nb", base_urlpath="/u/")
    assert len(lxd.instances) == 1  # theirs, untouched


def test_a_start_whose_instance_was_replaced_meanwhile_fails_and_leaves_it() -> None:
    lxd = FakeLxd()
    m = _manager(lxd)
    real = lxd._instance

    def replaced_during_start(method: str, path: str, project: str,
                              body: dict[str, Any]) -> Response:
        got = real(method, path, project, body)
        if body.get("action") == "start":  # removed, and made again by another start
            lxd.instances[(project, path.split("/")[3])]["config"][LABEL + "token"] = "theirs"
        return got

    lxd._instance = replaced_during_start  # type: ignore[method-assign]
    with pytest.raises(OperationInProgress, match="replaced"):
        m.start("ann", "app", "nb", base_urlpath="/u/")
    (obj,) = lxd.instances.values()
    assert obj["config"][LABEL + "token"] == "theirs"  # theirs: untouched
    assert obj["config"][LABEL + "state"] == "starting"


def test_a_create_refused_as_busy_is_operation_in_progress() -> None:
    """coved answers 409 naming the other create's operation before that
    instance can be read: in flight, not a failure."""
    lxd = FakeLxd()
    real = lxd._instances

    def busy(method: str, project: str, body: dict[str, Any],
             query: dict[str, str]) -> Response:
        if method == "POST":
            return _err(409, "x is busy: operation 42 (Creating instance) is in flight")
        return real(method, project, body, query)

    lxd._instances = busy  # type: ignore[method-assign]
    with pytest.raises(OperationInProgress, match="operation 42") as err:
        _manager(lxd).start("ann", "app", "nb", base_urlpath="/u/")
    assert err.value.operation == f"start {session_name('portal', 'ann', 'nb')}"
    assert lxd.instances == {}


def test_a_failed_start_removes_its_instance() -> None:
    lxd = FakeLxd()
    lxd.fail_start = True
    with pytest.raises(InternalError, match="port"):
        _manager(lxd).start("ann", "app", "nb", base_urlpath="/u/")
    assert lxd.instances == {} and lxd.log[-1].startswith("DELETE")


def test_a_taken_port_is_retried() -> None:
    lxd = FakeLxd()
    m = _manager(lxd)
    taken = {40100}
    ports = iter([40100, 40101])
    m.realm.pick_port = lambda host: next(ports)
    m.realm.port_taken = lambda host, port: port in taken
    real = lxd._instance

    def start_fails_on_taken(method: str, path: str, project: str,
                             body: dict[str, Any]) -> Response:
        obj = lxd.instances.get((project, path.split("/")[3]))
        if body.get("action") == "start" and obj and \
                obj["devices"]["session-port"]["listen"].endswith(":40100"):
            return _err(500, "address in use")
        return real(method, path, project, body)

    lxd._instance = start_fails_on_taken  # type: ignore[method-assign]
    s = m.start("ann", "app", "nb", base_urlpath="/u/")
    assert s.port == 40101 and m.find_one(user="ann") == s


def test_stop_and_remove() -> None:
    lxd = FakeLxd(projects=False)
    m = _manager(lxd)
    s = m.start("ann", "app", "nb", base_urlpath="/u/")
    with pytest.raises(Forbidden):
        SessionManager(lxd, realm="other", use_project=False).stop_and_remove(s)
    assert ("default", s.name) in lxd.instances
    m.stop_and_remove(s)
    m.stop_and_remove(s)
    assert lxd.instances == {}
    with pytest.raises(BadRequest):
        m.stop_and_remove("../x")


def test_find_and_image() -> None:
    lxd = FakeLxd()
    m = _manager(lxd)
    assert m.image("app") is not None and m.image("nope") is None and m.image("a/b") is None
    with pytest.raises(NotFound):
        m.start("ann", "nope", "nb", base_urlpath="/u/")
    s = m.start("ann", "app", "nb", base_urlpath="/u/")
    lxd.log.clear()
    assert m.find(url_id="../x") == [] and lxd.log == []
    assert m.find(url_id=s.url_id) == [s]
    assert m.find(user="ann", app_id="nb") == [s] and m.find(user="bob") == []


def test_drivers_taken_and_refused() -> None:
    from cove.client import RestDriver
    from cove.client.aio import AsyncRestDriver
    from cove.client.drivers.cli import CliDriver
    from cove.client.transports.local import LocalTransport
    from cove.sessions import AsyncSessionManager

    # every sync driver is taken (nothing is sent before the first call)
    for right in (CliDriver(LocalTransport(), "lxc"), RestDriver("/nowhere"), FakeLxd()):
        SessionManager(right)
    for wrong in (object(), AsyncRestDriver("/nowhere")):
        with pytest.raises(BadRequest, match="RestDriver.*CliDriver.*LocalDriver"):
            SessionManager(wrong)
    for wrong in (object(), RestDriver("/nowhere"), FakeLxd()):
        with pytest.raises(BadRequest, match="REST"):
            AsyncSessionManager(wrong)
    with pytest.raises(BadRequest, match="realm"):
        SessionManager(FakeLxd(), realm="")
    with pytest.raises(BadRequest, match="app_port"):
        SessionManager(FakeLxd(), app_port=0)
    with pytest.raises(BadRequest, match="publish"):
        SessionManager(FakeLxd(), publish="dnat")
    with pytest.raises(BadRequest, match="IPv4 only"):
        SessionManager(FakeLxd(), host_address="::1", publish="nat")
