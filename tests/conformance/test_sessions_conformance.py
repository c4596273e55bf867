"""``cove.sessions`` on coved and on the real LXD, the same assertions: a
session started from the app image (busybox whose init serves HTTP on 8888)
answers through the published port, is found by the server's ``?filter=``
on its labels, is guarded while a start is in flight, and is removed
idempotently. Everything is named ``covetest*`` (the realm project, the
image alias) and removed at the end."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cove.client import RestDriver
from cove.client.aio import AsyncRestDriver
from cove.model.errors import NotFound
from cove.sessions import AsyncSessionManager, OperationInProgress, Session, SessionManager

REALM = "covetest-sessconf"
IMAGE = "covetest-sessapp"
HERE = Path(__file__).resolve().parent


def _build_app_image(busybox_tar: Path, out: Path) -> Path:
    spec = importlib.util.spec_from_file_location(
        "covetest_sessionapp", HERE.parent / "integration" / "sessionapp.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return Path(mod.build_app_image(busybox_tar, out))


@pytest.fixture
def sessions(rest_endpoint: Any, busybox_tar: Path, workdir: Path) -> Iterator[SessionManager]:
    endpoint, _ = rest_endpoint
    driver = RestDriver(endpoint)
    tar = workdir / "sessapp.tar.gz"
    if not tar.exists():
        _build_app_image(busybox_tar, tar)
    image = driver.import_image(tar, aliases=[IMAGE])
    m = SessionManager(driver, realm=REALM)
    yield m
    try:
        for s in m.find():
            m.stop_and_remove(s)
        left = [o["name"] for o in driver.client.send(
            _req("GET", f"/1.0/instances?project={REALM}")).json().get("metadata") or []]
        assert left == [], f"left in {REALM}: {left}"
    finally:
        with contextlib.suppress(Exception):
            driver.client.send(_req("DELETE", f"/1.0/projects/{REALM}"))
        with contextlib.suppress(Exception):
            driver.delete_image(image.fingerprint)
        driver.close()


def _req(method: str, path: str) -> Any:
    from cove.client._wire import Request

    return Request(method, path)


def _get(s: Session, path: str, timeout: float = 30) -> str:
    last: Exception | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{s.ip}:{s.port}{path}", timeout=3) as r:
                return r.read().decode()
        except OSError as e:
            last = e
            time.sleep(0.2)
    raise AssertionError(f"no answer on {s.ip}:{s.port}{path}: {last}")


def test_session_lifecycle(sessions: SessionManager) -> None:
    m = sessions
    assert m.image("covetest-nope") is None
    assert m.image(IMAGE) is not None
    with pytest.raises(NotFound):
        m.start("ann", "covetest-nope", "nb", base_urlpath="/u/")
    s = m.start("ann@example.org", IMAGE, "note/book", base_urlpath="/user/ann/",
                environment={"MODE": "conf", "URL_ID": "mine"})
    assert s.project == REALM
    env = dict(x.split("=", 1) for x in _get(s, "/env.txt").splitlines() if "=" in x)
    assert env["JPY_USER"] == "ann@example.org" and env["URL_ID"] == s.url_id
    assert env["JPY_BASE_USER_URL"] == "/user/ann" and env["MODE"] == "conf"
    t = m.start("bob", IMAGE, "note/book", base_urlpath="/user/bob/")
    answered: list[list[str]] = []
    send = m._send

    def spy(req: Any) -> Any:
        resp = send(req)
        if "filter=" in req.path:
            answered.append([o["name"] for o in resp.json()["metadata"]])
        return resp

    m._send = spy
    assert m.find(user="ann@example.org") == [s]
    m._send = send
    assert answered == [[s.name]]  # the server filtered, on the labels
    assert m.find(url_id=t.url_id) == [t]
    assert sorted(x.name for x in m.find(app_id="note/book")) == sorted([s.name, t.name])
    s2 = m.start("ann@example.org", IMAGE, "note/book", base_urlpath="/user/ann/")
    assert s2.name == s.name and s2.url_id != s.url_id
    assert m.find_one(user="ann@example.org") == s2
    m.stop_and_remove(s2)
    m.stop_and_remove(s2)
    assert m.find() == [t]
    m.stop_and_remove(t)


def test_guard_on_the_server(sessions: SessionManager) -> None:
    """A start whose instance was made but not yet started (another process
    in flight) holds the (user, app) until its lease runs out."""
    m = sessions
    blocked: list[str] = []
    send = m._send

    class Hang(Exception):
        pass

    def hang_at_start(req: Any) -> Any:
        if req.method == "PUT" and "/state" in req.path and req.body.get("action") == "start":
            blocked.append(req.path)
            raise Hang  # this starter dies here: its instance stays "starting"
        return send(req)

    dying = SessionManager(m.driver, realm=REALM, lease=3)
    dying._send = hang_at_start
    with pytest.raises(Hang):
        dying.start("ann", IMAGE, "nb", base_urlpath="/u/")
    t0 = time.monotonic()
    assert blocked
    with pytest.raises(OperationInProgress, match="lease until"):
        m.start("ann", IMAGE, "nb", base_urlpath="/u/")
    time.sleep(max(0.0, 4.2 - (time.monotonic() - t0)))  # the lease is whole seconds
    s = m.start("ann", IMAGE, "nb", base_urlpath="/u/")
    assert "app" in _get(s, "/index.html")
    m.stop_and_remove(s)


def test_async_sessions(sessions: SessionManager, rest_endpoint: Any) -> None:
    endpoint, _ = rest_endpoint

    async def go() -> None:
        async with AsyncRestDriver(endpoint) as driver:
            am = AsyncSessionManager(driver, realm=REALM)
            s = await am.start("ann", IMAGE, "nb", base_urlpath="/u/")
            assert await am.find_one(user="ann") == s
            await am.stop_and_remove(s)
            assert await am.find() == []

    asyncio.run(go())


def test_two_starts_at_once(sessions: SessionManager) -> None:
    """Two managers start the same user's app at the same moment: the host's
    create of the one name decides; one session results, and each start
    either made it or was told the other is in flight."""
    import threading

    m = sessions
    m.start("covetest-warm", IMAGE, "nb", base_urlpath="/u/")  # the realm exists
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def go() -> None:
        other = SessionManager(m.driver, realm=REALM)
        barrier.wait()
        try:
            outcomes.append(other.start("ann", IMAGE, "nb", base_urlpath="/u/").url_id)
        except OperationInProgress:
            outcomes.append("in progress")
        except Exception as e:  # noqa: BLE001 - shown by the assertion below
            outcomes.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(outcomes) == 2
    assert all(o == "in progress" or ":" not in o for o in outcomes), outcomes
    (s,) = m.find(user="ann")
    assert s.url_id in outcomes
    assert "app" in _get(s, "/index.html")


def test_sessions_over_https(cove_host: Any, busybox_tar: Path, workdir: Path) -> None:
    """The same over coved's HTTPS endpoint with a trusted client certificate
    (a hub on another machine), sync and asyncio."""
    driver = RestDriver(cove_host.https, verify=cove_host.server_crt,
                        client_cert=cove_host.client_crt, client_key=cove_host.client_key)
    tar = workdir / "sessapp.tar.gz"
    if not tar.exists():
        _build_app_image(busybox_tar, tar)
    image = driver.import_image(tar, aliases=[IMAGE])
    m = SessionManager(driver, realm=REALM)
    local = RestDriver(str(cove_host.coved.socket))
    try:
        # the guard holds across hosts: a starter on the host's own socket
        # dies between its create and its start; the start from "another
        # machine" (HTTPS) is refused at once, naming that start
        dying = SessionManager(local, realm=REALM, lease=60)
        send = dying._send

        class Hang(Exception):
            pass

        def hang_at_start(req: Any) -> Any:
            if req.method == "PUT" and "/state" in req.path and \
                    req.body.get("action") == "start":
                raise Hang
            return send(req)

        dying._send = hang_at_start
        with pytest.raises(Hang):
            dying.start("ann", IMAGE, "nb", base_urlpath="/u/")
        with pytest.raises(OperationInProgress, match="lease until") as err:
            m.start("ann", IMAGE, "nb", base_urlpath="/u/")
        assert err.value.operation.startswith("start s-ann-nb-")
        m.stop_and_remove(err.value.operation.split()[1])  # cut the dead start short

        s = m.start("ann", IMAGE, "nb", base_urlpath="/u/")
        assert "app" in _get(s, "/index.html")

        async def go() -> None:
            async with AsyncRestDriver(cove_host.https, verify=cove_host.server_crt,
                                       client_cert=cove_host.client_crt,
                                       client_key=cove_host.client_key) as adriver:
                am = AsyncSessionManager(adriver, realm=REALM)
                assert await am.find_one(user="ann") == s
                await am.stop_and_remove(s)

        asyncio.run(go())
        assert m.find() == []
    finally:
        for left in m.find():
            m.stop_and_remove(left)
        with contextlib.suppress(Exception):
            driver.client.send(_req("DELETE", f"/1.0/projects/{REALM}"))
        with contextlib.suppress(Exception):
            driver.delete_image(image.fingerprint)
        driver.close()
        local.close()


def test_published_by_nat(cove_host: Any, busybox_tar: Path, workdir: Path) -> None:
    """``publish="nat"``: the app port by NAT rules (the proxy device's
    ``nat=true``), so no forwarder process runs for the session."""
    driver = RestDriver(str(cove_host.coved.socket))
    tar = workdir / "sessapp.tar.gz"
    if not tar.exists():
        _build_app_image(busybox_tar, tar)
    image = driver.import_image(tar, aliases=[IMAGE])
    m = SessionManager(driver, realm=REALM, publish="nat")
    try:
        s = m.start("ann", IMAGE, "nb", base_urlpath="/u/")
        assert "app" in _get(s, "/index.html")
        dev = driver.client.send(_req("GET", f"/1.0/instances/{s.name}?project={REALM}")
                                 ).json()["metadata"]["devices"]["session-port"]
        assert dev["nat"] == "true" and dev["connect"] == "tcp:0.0.0.0:8888"
        tag = f":{REALM}_{s.name}:session-port".encode()
        forwarders = [p for p in Path("/proc").iterdir() if p.name.isdigit()
                      and tag in _cmdline(p)]
        assert forwarders == []
        m.stop_and_remove(s)
        assert m.find() == []
    finally:
        for left in m.find():
            m.stop_and_remove(left)
        with contextlib.suppress(Exception):
            driver.client.send(_req("DELETE", f"/1.0/projects/{REALM}"))
        with contextlib.suppress(Exception):
            driver.delete_image(image.fingerprint)
        driver.close()


def _cmdline(p: Path) -> bytes:
    try:
        return (p / "cmdline").read_bytes()
    except OSError:
        return b""
