"""``cove.sessions`` against a real coved: per-user app sessions from a busybox
image whose init serves HTTP on 8888 (``sessionapp``), reached through the
published host port; the in-flight guard across two processes; names,
realms, volumes, bad input and a coved restart. Every test removes what it
made; the module's coved must be left with nothing (checked at teardown)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CovedPool
from covetest import Coved, assert_no_leaks, wait_until
from sessionapp import build_app_image

from cove.client import RestDriver
from cove.client.aio import AsyncRestDriver
from cove.model.errors import BadRequest, CoveError, Forbidden, NotFound
from cove.sessions import (
    AsyncSessionManager,
    MultipleResultsFound,
    OperationInProgress,
    Session,
    SessionManager,
    session_name,
)

HERE = Path(__file__).resolve().parent
REALM = "covetest-sess"


@pytest.fixture(scope="module")
def sessd(workdir: Path, busybox_tar: Path) -> Iterator[Coved]:
    pool = CovedPool(workdir)
    d = pool.new("sess")
    d.api.import_image(build_app_image(busybox_tar, workdir / "sessapp.tar.gz"), "app")
    yield d
    problems = pool.close()
    assert not problems, "teardown found leftovers:\n  " + "\n  ".join(problems)


def _all_instances(d: Coved) -> list[tuple[str, str]]:
    got = d.api.sync("GET", "/1.0/instances?all-projects=true&recursion=1")
    return sorted((str(o["project"]), str(o["name"])) for o in got)


def _sweep(d: Coved) -> None:
    for project, name in _all_instances(d):
        if project != "default":
            r = d.api.request("PUT", f"/1.0/instances/{name}/state?project={project}",
                              {"action": "stop", "force": True})
            if r.status == 202:
                d.api.wait(r)
            d.api.run("DELETE", f"/1.0/instances/{name}?project={project}")


@pytest.fixture
def m(sessd: Coved) -> Iterator[SessionManager]:
    if not sessd.answers():
        sessd.kill()
        sessd.start()
    driver = RestDriver(str(sessd.socket))
    yield SessionManager(driver, realm=REALM)
    driver.close()
    left = _all_instances(sessd)
    _sweep(sessd)
    assert not left, f"the test left instances: {left}"
    assert_no_leaks(sessd.root)


def _get(s: Session, path: str, timeout: float = 15) -> str:
    """GET ``path`` of the session's app through its published port (the app's
    httpd may take a moment after the start)."""
    last: Exception | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{s.ip}:{s.port}{path}", timeout=3) as r:
                return r.read().decode()
        except OSError as e:
            last = e
            time.sleep(0.1)
    raise AssertionError(f"{s.name}: no answer on {s.ip}:{s.port}{path}: {last}")


def _env(s: Session) -> dict[str, str]:
    return dict(line.split("=", 1) for line in _get(s, "/env.txt").splitlines() if "=" in line)


def _config(d: Coved, s: Session) -> dict[str, str]:
    return dict(d.api.sync("GET", f"/1.0/instances/{s.name}?project={s.project}")["config"])


def test_start_reach_find_stop(m: SessionManager, sessd: Coved) -> None:
    s = m.start("ann@example.org", "app", "note/book", base_urlpath="/user/ann/",
                environment={"MODE": "demo", "JPY_USER": "mallory", "URL_ID": "x"})
    assert (s.user, s.app_id, s.image, s.realm, s.project) == \
        ("ann@example.org", "note/book", "app", REALM, REALM)
    assert s.ip == "127.0.0.1" and 1024 < s.port < 65536
    assert s.urlpath == f"/user/ann/containers/{s.url_id}"
    assert re.fullmatch(r"[a-z][a-zA-Z0-9-]{0,62}", s.name) and not s.name.endswith("-")
    env = _env(s)
    # simphony's four over the caller's: the caller's never override them
    assert env["JPY_USER"] == "ann@example.org"
    assert env["URL_ID"] == s.url_id
    assert env["JPY_BASE_USER_URL"] == "/user/ann"
    assert env["MODE"] == "demo"
    # (busybox init sets USER=root for its children; the instance has ours)
    assert _config(sessd, s)["environment.USER"] == "ann"
    assert m.find(user="ann@example.org") == [s]
    assert m.find(app_id="note/book") == [s]
    assert m.find(url_id=s.url_id) == [s]
    assert m.find(user="ann@example.org", app_id="other") == []
    assert m.find(user="ANN@example.org") == []  # exact, whatever the server's filter does
    assert m.find_one(user="ann@example.org", app_id="note/book") == s
    assert m.find_one(user="nobody") is None
    m.stop_and_remove(s)
    m.stop_and_remove(s)  # gone is success
    m.stop_and_remove(s.name)
    assert m.find() == []
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{s.ip}:{s.port}/", timeout=3)


def test_the_filter_is_the_servers(m: SessionManager, sessd: Coved) -> None:
    """find() sends LXD's ?filter= on the labels: the answer holds the matches only."""
    s = m.start("ann", "app", "one", base_urlpath="/u/ann/")
    t = m.start("bob", "app", "one", base_urlpath="/u/bob/")
    sent: list[str] = []
    send = m._send

    def spy(req):  # type: ignore[no-untyped-def]
        sent.append(req.path)
        resp = send(req)
        if "filter=" in req.path:
            assert [o["name"] for o in json.loads(resp.body)["metadata"]] == [t.name]
        return resp

    m._send = spy
    assert m.find(user="bob") == [t]
    assert any("filter=" in p and "user-hash" in p for p in sent), sent
    m._send = send
    assert sorted(x.name for x in m.find(app_id="one")) == sorted([s.name, t.name])
    with pytest.raises(MultipleResultsFound):
        m.find_one(app_id="one")
    m.stop_and_remove(s)
    m.stop_and_remove(t)


def test_a_second_start_is_a_fresh_one(m: SessionManager, sessd: Coved) -> None:
    s1 = m.start("ann", "app", "nb", base_urlpath="/u/ann/")
    s2 = m.start("ann", "app", "nb", base_urlpath="/u/ann/")
    assert s2.name == s1.name and s2.url_id != s1.url_id
    assert m.find() == [s2]
    assert _env(s2)["URL_ID"] == s2.url_id
    m.stop_and_remove(s2)


def test_names_escape_without_collisions(m: SessionManager, sessd: Coved) -> None:
    users = ["a.b", "a-b", "a/b", "ünï@cödé.org", "x" * 200 + "@example.org",
             "x" * 200 + "@example.net"]
    made = [m.start(u, "app", "app/1", base_urlpath="/u/") for u in users]
    names = [s.name for s in made]
    assert len(set(names)) == len(users)
    for s in made:
        assert re.fullmatch(r"[a-z][a-zA-Z0-9-]{0,62}", s.name), s.name
    for u, s in zip(users, made, strict=True):
        assert m.find_one(user=u) == s  # the facts come from labels, not names
    for s in made:
        m.stop_and_remove(s)


def test_realms_are_isolated(m: SessionManager, sessd: Coved) -> None:
    # the other realm publishes on another host address than the default:
    # that of a bridge this test makes (no instance is put on it)
    net = "covetest-sessbr"
    sessd.api.sync("POST", "/1.0/networks", {"name": net,
                                             "config": {"ipv4.address": "192.168.243.1/30"}})
    try:
        other = SessionManager(RestDriver(str(sessd.socket)), realm="covetest-sess2",
                               host_address="192.168.243.1")
        s = m.start("ann", "app", "nb", base_urlpath="/u/")
        t = other.start("ann", "app", "nb", base_urlpath="/u/")
        assert s.project != t.project and s.port != t.port
        assert (s.ip, t.ip) == ("127.0.0.1", "192.168.243.1")
        assert "app" in _get(t, "/index.html")
        with socket.socket() as c, pytest.raises(OSError):
            c.settimeout(3)
            c.connect(("127.0.0.1", t.port))  # published on the bridge's address only
        assert m.find() == [s] and other.find() == [t]
        other.stop_and_remove(s.name)  # not in its realm: nothing there to remove
        assert m.find() == [s]
        m.stop_and_remove(s)
        other.stop_and_remove(t)
    finally:
        for left in other.find():
            other.stop_and_remove(left)
        r = sessd.api.request("DELETE", f"/1.0/networks/{net}")
        assert r.status == 200, r.body


def test_label_realms_refuse_each_other(sessd: Coved) -> None:
    """Without projects (use_project=False) two realms share a project, told
    apart by labels: neither lists nor removes the other's."""
    driver = RestDriver(str(sessd.socket))
    a = SessionManager(driver, realm="covetest-la", use_project=False)
    b = SessionManager(driver, realm="covetest-lb", use_project=False)
    s = a.start("ann", "app", "nb", base_urlpath="/u/")
    try:
        assert s.project is None and a.find() == [s] and b.find() == []
        with pytest.raises(Forbidden, match="covetest-la"):
            b.stop_and_remove(s)
        assert a.find() == [s]
        sessd.api.launch("covetest-plain", None, image="app")
        with pytest.raises(Forbidden, match="no session realm"):
            a.stop_and_remove("covetest-plain")
        assert sessd.api.status("covetest-plain") == "Running"
    finally:
        a.stop_and_remove(s)
        sessd.api.remove("covetest-plain")
    assert a.find() == []


def test_unknown_image_makes_nothing(m: SessionManager, sessd: Coved) -> None:
    assert m.image("nope") is None
    assert m.image("app") is not None
    assert m.image("app").fingerprint == m.image(m.image("app").fingerprint[:12]).fingerprint
    with pytest.raises(NotFound, match="nope"):
        m.start("ann", "nope", "nb", base_urlpath="/u/")
    assert _all_instances(sessd) == []


@pytest.mark.parametrize("volumes", [
    {"/srv/../etc": {"bind": "/data", "mode": "ro"}},
    {"/srv": {"bind": "/data/../../etc", "mode": "ro"}},
    {"srv": {"bind": "/data"}},
    {"/srv": {"bind": "/data", "mode": "rwx"}},
])
def test_bad_volumes_are_refused_before_anything(m: SessionManager, sessd: Coved,
                                                 volumes: dict[str, dict[str, str]]) -> None:
    with pytest.raises(BadRequest, match="volume"):
        m.start("ann", "app", "nb", base_urlpath="/u/", volumes=volumes)
    assert _all_instances(sessd) == []


def test_volumes_mounted_and_missing_ones_skipped(m: SessionManager, sessd: Coved,
                                                  tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "hello.txt").write_text("from the host\n")
    missing = str(tmp_path / "missing")
    s = m.start("ann", "app", "nb", base_urlpath="/u/", volumes={
        str(tmp_path / "ro"): {"bind": "/www/data", "mode": "ro"},
        missing: {"bind": "/www/gone", "mode": "rw"}})
    assert s.skipped_volumes == (missing,)
    assert not os.path.exists(missing)  # never created
    assert _get(s, "/data/hello.txt") == "from the host\n"
    devices = sessd.api.sync("GET", f"/1.0/instances/{s.name}?project={s.project}")["devices"]
    disks = [d for d in devices.values() if d["type"] == "disk" and d.get("path") != "/"]
    assert disks == [{"type": "disk", "source": str(tmp_path / "ro"), "path": "/www/data",
                      "readonly": "true"}]
    m.stop_and_remove(s)


def test_bad_arguments(m: SessionManager, sessd: Coved) -> None:
    for kw in ({"user": ""}, {"app_id": ""}, {"user": "a\0b"}):
        args = {"user": "ann", "image": "app", "app_id": "nb", **kw}
        with pytest.raises(BadRequest):
            m.start(args["user"], args["image"], args["app_id"], base_urlpath="/u/")
    with pytest.raises(BadRequest, match="base_urlpath"):
        m.start("ann", "app", "nb", base_urlpath="u")
    with pytest.raises(BadRequest, match="environment"):
        m.start("ann", "app", "nb", base_urlpath="/u/", environment={"A B": "1"})
    with pytest.raises(BadRequest, match="realm"):
        SessionManager(RestDriver(str(sessd.socket)), realm="a_b")
    with pytest.raises(BadRequest):
        m.stop_and_remove("not/a/name")
    assert _all_instances(sessd) == []


def test_a_refused_create_leaves_nothing(m: SessionManager, sessd: Coved) -> None:
    with pytest.raises(BadRequest):
        m.start("ann", "app", "nb", base_urlpath="/u/", limits={"memory": "lots"})
    assert _all_instances(sessd) == []


def test_a_failed_start_leaves_nothing(m: SessionManager, sessd: Coved,
                                       tmp_path: Path) -> None:
    """The instance is made, its start fails (a disk whose source is a file
    mounted on a directory of the image): it is removed, the error raised."""
    (tmp_path / "f").write_text("x")
    sent = _spy(m)
    with pytest.raises(CoveError):  # whatever the host says, as its class
        m.start("ann", "app", "nb", base_urlpath="/u/",
                volumes={str(tmp_path / "f"): {"bind": "/etc", "mode": "ro"}})
    name = session_name(REALM, "ann", "nb")
    assert "POST /1.0/instances" in sent, sent
    assert f"PUT /1.0/instances/{name}/state start" in sent, sent
    assert f"DELETE /1.0/instances/{name}" in sent, sent
    assert _all_instances(sessd) == []
    assert_no_leaks(sessd.root)


def test_port_clash_is_retried(m: SessionManager, sessd: Coved) -> None:
    """The port picked was taken meanwhile (by another program, or another
    start): the start publishes another one."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        picks = [taken]
        pick = m.realm.pick_port
        m.realm.pick_port = lambda host: picks.pop() if picks else pick(host)
        sent = _spy(m)
        try:
            s = m.start("ann", "app", "nb", base_urlpath="/u/")
        finally:
            m.realm.pick_port = pick
        assert s.port != taken
        assert [x for x in sent if x.endswith("start")] == \
            [f"PUT /1.0/instances/{s.name}/state start"] * 2, sent
        assert m.find_one(user="ann").port == s.port  # type: ignore[union-attr]
        assert "app" in _get(s, "/index.html")
    m.stop_and_remove(s)


def _spy(m: SessionManager) -> list[str]:
    """Record "METHOD path" of each request ``m`` sends from now on."""
    sent: list[str] = []
    send = m._send

    def spy(req):  # type: ignore[no-untyped-def]
        body = req.body if isinstance(req.body, dict) else {}
        sent.append(f"{req.method} {req.path.split('?')[0]} {body.get('action', '')}".strip())
        return send(req)

    m._send = spy
    return sent


def _starter(d: Coved, user: str, mode: str, lease: float = 120) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(HERE.parents[1] / "src"))
    return subprocess.Popen(
        [sys.executable, str(HERE / "sessions_starter.py"), str(d.socket), REALM, user,
         "app", "nb", str(lease), mode], stdout=subprocess.PIPE, text=True, env=env,
        start_new_session=True)


def test_guard_holds_across_processes(m: SessionManager, sessd: Coved) -> None:
    """Process A made the instance and hangs before starting it; a start in
    this process fails at once naming A's operation, as long as A's lease
    runs; once it ran out, A counts as dead and a start takes over."""
    a = _starter(sessd, "ann", "block", lease=8)
    try:
        assert a.stdout is not None
        assert json.loads(a.stdout.readline()) == {"blocked": True}
        t0 = time.monotonic()
        with pytest.raises(OperationInProgress) as err:
            m.start("ann", "app", "nb", base_urlpath="/u/")
        assert time.monotonic() - t0 < 4
        assert err.value.operation.startswith("start s-ann-nb-")
        assert "lease until" in str(err.value)
        assert m.sweep_stale() == []  # its lease still runs
        assert m.find() == []  # a start in flight is no session yet
        other = m.start("bob", "app", "nb", base_urlpath="/u/")  # other users are not held
        m.stop_and_remove(other)
    finally:
        os.killpg(a.pid, signal.SIGKILL)
        a.wait(10)
    time.sleep(max(0.0, 9.5 - (time.monotonic() - t0)))
    assert m.sweep_stale() == [session_name(REALM, "ann", "nb")]  # the dead one's
    assert _all_instances(sessd) == []
    a = _starter(sessd, "ann", "block", lease=1)  # dies again, and this time
    assert a.stdout is not None and json.loads(a.stdout.readline()) == {"blocked": True}
    os.killpg(a.pid, signal.SIGKILL)
    a.wait(10)
    time.sleep(2.2)
    s = m.start("ann", "app", "nb", base_urlpath="/u/")  # a start takes over at once
    assert "app" in _get(s, "/index.html")
    m.stop_and_remove(s)


def test_a_stop_cuts_a_start_in_flight_short(m: SessionManager, sessd: Coved) -> None:
    a = _starter(sessd, "ann", "block")
    try:
        assert a.stdout is not None and json.loads(a.stdout.readline()) == {"blocked": True}
        m.stop_and_remove(session_name(REALM, "ann", "nb"))
        assert _all_instances(sessd) == []
    finally:
        os.killpg(a.pid, signal.SIGKILL)
        a.wait(10)
    s = m.start("ann", "app", "nb", base_urlpath="/u/")  # no lease left to wait out
    m.stop_and_remove(s)


def test_two_processes_start_at_once(m: SessionManager, sessd: Coved) -> None:
    """Two processes start the same user's app at the same moment: one
    session results; each start either made it or was told the other is in
    flight (or replaced it after it finished): never two, never a crash."""
    at = time.time() + 1.5
    procs = [_starter(sessd, "ann", f"at={at}") for _ in range(2)]
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert all("started" in o or "in_progress" in o for o in outs), outs
    assert any("started" in o for o in outs), outs
    found = m.find(user="ann")
    assert len(found) == 1 and found[0].url_id in [o.get("url_id") for o in outs]
    assert _all_instances(sessd) == [(REALM, found[0].name)]
    assert "app" in _get(found[0], "/index.html")
    m.stop_and_remove(found[0])


def test_sessions_survive_a_coved_restart(m: SessionManager, sessd: Coved) -> None:
    s = m.start("ann", "app", "nb", base_urlpath="/u/")
    sessd.kill()
    assert "app" in _get(s, "/index.html")  # the app keeps running without coved
    sessd.start()
    fresh = SessionManager(RestDriver(str(sessd.socket)), realm=REALM)
    assert fresh.find_one(user="ann", app_id="nb") == s
    wait_until(lambda: "app" in _get(s, "/index.html"), 15, what="the app after the restart")
    fresh.stop_and_remove(s)


def test_async_manager(sessd: Coved, m: SessionManager) -> None:
    async def go() -> None:
        async with AsyncRestDriver(str(sessd.socket)) as driver:
            am = AsyncSessionManager(driver, realm=REALM)
            assert await am.image("nope") is None
            s = await am.start("ann", "app", "nb", base_urlpath="/u/ann/")
            assert await am.find(user="ann") == [s]
            assert await am.find_one(url_id=s.url_id) == s
            assert m.find_one(user="ann") == s  # the same sessions, sync or async
            await am.stop_and_remove(s)
            await am.stop_and_remove(s)
            assert await am.find() == []

    asyncio.run(go())


def test_cli(m: SessionManager, sessd: Coved) -> None:
    def cove(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cove.cli.main", *args], env=sessd.cli_env(),
                              capture_output=True, text=True, timeout=120, check=False)

    r = cove("session", "start", "ann@example.org", "app", "nb", "--base-urlpath", "/u/ann/",
             "--realm", REALM, "-e", "MODE=cli", "-f", "json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    s = m.find_one(user="ann@example.org")
    assert s is not None and got["name"] == s.name and got["port"] == s.port
    assert _env(s)["MODE"] == "cli"
    r = cove("session", "list", "--realm", REALM, "-f", "csv")
    assert r.returncode == 0 and s.name in r.stdout and "ann@example.org" in r.stdout
    r = cove("session", "list", "--realm", REALM, "--user", "bob", "-f", "json")
    assert json.loads(r.stdout) == []
    r = cove("session", "start", "ann", "app", "nb", "--realm", REALM, "-v", "/a/../b:/c")
    assert r.returncode != 0 and "'..'" in r.stderr and "Traceback" not in r.stderr
    r = cove("session", "stop", "--user", "ann@example.org", "--app", "nb", "--realm", REALM)
    assert r.returncode == 0, r.stderr
    assert m.find() == []
    r = cove("session", "stop", s.name, "--realm", REALM)
    assert r.returncode == 0, r.stderr  # gone already: nothing to do
    r = cove("session", "sweep", "--realm", REALM)
    assert r.returncode == 0 and r.stdout == "", (r.stdout, r.stderr)
    a = _starter(sessd, "ann", "block", lease=1)  # a starter dies mid-start
    assert a.stdout is not None and json.loads(a.stdout.readline()) == {"blocked": True}
    os.killpg(a.pid, signal.SIGKILL)
    a.wait(10)
    time.sleep(2.2)
    r = cove("session", "sweep", "--realm", REALM)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"Stale start {session_name(REALM, 'ann', 'nb')} removed\n"
    assert _all_instances(sessd) == []


def test_concurrent_removes_all_succeed(m: SessionManager, sessd: Coved) -> None:
    """stop_and_remove is idempotent under concurrency too: four at once, no error."""
    import threading

    s = m.start("ann", "app", "nb", base_urlpath="/u/")
    errors: list[BaseException] = []

    def remove() -> None:
        try:
            SessionManager(RestDriver(str(sessd.socket)), realm=REALM).stop_and_remove(s)
        except BaseException as e:  # noqa: BLE001 - collected, asserted below
            errors.append(e)

    threads = [threading.Thread(target=remove) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert m.find() == [] and _all_instances(sessd) == []


def test_many_users_at_once(m: SessionManager, sessd: Coved) -> None:
    """Twelve users start at the same moment: twelve sessions on twelve
    distinct ports, each answering; then all removed at once."""
    from concurrent.futures import ThreadPoolExecutor

    users = [f"user{i}@example.org" for i in range(12)]

    def start(u: str) -> Session:
        return SessionManager(RestDriver(str(sessd.socket)), realm=REALM).start(
            u, "app", "nb", base_urlpath=f"/user/{u}/")

    with ThreadPoolExecutor(len(users)) as pool:
        made = list(pool.map(start, users))
    assert len({s.port for s in made}) == len(users)
    for s in made:
        assert _env(s)["JPY_USER"] == s.user
    assert sorted(s.name for s in m.find(app_id="nb")) == sorted(s.name for s in made)
    with ThreadPoolExecutor(len(users)) as pool:
        list(pool.map(m.stop_and_remove, made))
    assert m.find() == []


def test_a_stopped_session_is_still_found_as_stopped(m: SessionManager, sessd: Coved) -> None:
    """Its app exited (the container stopped): find() still lists it, with
    the status a poller needs, until it is removed."""
    s = m.start("ann", "app", "nb", base_urlpath="/u/")
    sessd.api.run("PUT", f"/1.0/instances/{s.name}/state?project={s.project}",
                  {"action": "stop", "force": True})
    (found,) = m.find(user="ann")
    assert found.status == "Stopped" and found.url_id == s.url_id
    m.stop_and_remove(found)
    assert m.find() == []


def test_coved_restarted_while_a_start_is_in_flight(m: SessionManager, sessd: Coved) -> None:
    """coved goes down while a starter hangs between create and start: the
    guard is in the instance, so after the restart it still holds, and a
    start after the lease takes over; nothing is lost or left."""
    a = _starter(sessd, "ann", "block", lease=6)
    try:
        assert a.stdout is not None and json.loads(a.stdout.readline()) == {"blocked": True}
        t0 = time.monotonic()
        sessd.kill()
        sessd.start()
        fresh = SessionManager(RestDriver(str(sessd.socket)), realm=REALM)
        with pytest.raises(OperationInProgress):
            fresh.start("ann", "app", "nb", base_urlpath="/u/")
    finally:
        os.killpg(a.pid, signal.SIGKILL)
        a.wait(10)
    time.sleep(max(0.0, 7.2 - (time.monotonic() - t0)))
    s = fresh.start("ann", "app", "nb", base_urlpath="/u/")
    assert "app" in _get(s, "/index.html")
    assert _all_instances(sessd) == [(REALM, s.name)]
    fresh.stop_and_remove(s)
