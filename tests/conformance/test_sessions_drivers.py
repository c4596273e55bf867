"""``cove.sessions.SessionManager`` on every driver of the matrix (REST over
the socket and TLS, ``cove`` and ``lxc`` as command lines, the in-process
``LocalDriver``, and the real LXD over REST and ``lxc``): the same start
(labels, the published port, the environment), lookup by the server's
filter, the in-flight guard, the separation of realms and the
idempotent removal. Everything is named ``covetest*`` and removed."""

from __future__ import annotations

import contextlib
import secrets
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from conftest import FEATURE_DRIVERS, Host
from test_sessions_conformance import _build_app_image

from cove.client import CliDriver, LocalDriver, RestDriver
from cove.model.errors import NotFound
from cove.sessions import OperationInProgress, Session, SessionManager, session_name
from cove.sessions import _steps as st

# every driver but cli-lxc: conftest.FEATURE_DRIVERS says why
pytestmark = pytest.mark.parametrize("host", FEATURE_DRIVERS, indirect=True)

APP_IMAGE = "covetest-sessdrv"


class _Died(Exception):
    """A starter that dies between its create and its start."""


def _get(s: Session, path: str) -> str:
    import time

    deadline, last = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{s.ip}:{s.port}{path}", timeout=3) as r:
                return r.read().decode()
        except OSError as e:
            last = e
            time.sleep(0.2)
    raise AssertionError(f"no answer on {s.ip}:{s.port}{path}: {last}")


def _delete_project(driver: Any, name: str) -> None:
    if isinstance(driver, LocalDriver):
        driver.engine.projects.delete(name)
    elif isinstance(driver, CliDriver):
        driver.query(f"/1.0/projects/{name}", method="DELETE")
    else:
        from cove.client._wire import Request

        assert isinstance(driver, RestDriver)
        driver.client.send(Request("DELETE", f"/1.0/projects/{name}")).json()


def test_sessions_on_every_driver(host: Host, busybox_tar: Path, workdir: Path) -> None:
    d = host.driver
    tar = workdir / "sessdrv.tar.gz"
    if not tar.exists():
        _build_app_image(busybox_tar, tar)
    with contextlib.suppress(NotFound):  # another driver of the same host left it
        d.delete_image(d.alias(APP_IMAGE).target)
    image = d.import_image(tar, aliases=[APP_IMAGE])
    realm = f"covetest-sd{secrets.token_hex(2)}"
    m = SessionManager(d, realm=realm)
    try:
        assert m.image("covetest-nope") is None and m.image(APP_IMAGE) is not None
        s = m.start("ann@example.org", APP_IMAGE, "note/book", base_urlpath="/user/ann/",
                    environment={"MODE": host.kind})
        assert s.project == realm and s.status == "Running"
        env = dict(x.split("=", 1) for x in _get(s, "/env.txt").splitlines() if "=" in x)
        assert env["JPY_USER"] == "ann@example.org" and env["URL_ID"] == s.url_id
        assert env["MODE"] == host.kind
        assert m.find(user="ann@example.org") == [s] == m.find(url_id=s.url_id)
        assert m.find(user="bob") == [] and m.find_one(app_id="note/book") == s

        # a starter that dies after its create holds (bob, nb) until its lease ends
        dying = SessionManager(d, realm=realm, lease=60)
        perform = dying._perform

        def die_at_start(step: Any) -> Any:
            if isinstance(step, st.ChangeState) and step.action == "start":
                raise _Died
            return perform(step)

        dying._perform = die_at_start
        with pytest.raises(_Died):
            dying.start("bob", APP_IMAGE, "nb", base_urlpath="/u/")
        with pytest.raises(OperationInProgress, match="lease until"):
            m.start("bob", APP_IMAGE, "nb", base_urlpath="/u/")
        assert m.sweep_stale() == []  # its lease runs: left alone

        # a realm told apart by labels only sees nothing of this one
        assert SessionManager(d, realm=f"{realm}x", use_project=False).find() == []

        for name in (s.name, s.name, session_name(realm, "bob", "nb")):
            m.stop_and_remove(name)
        assert m.find() == [] and m.sweep_stale() == []
    finally:
        with contextlib.suppress(Exception):
            for x in m.find():
                m.stop_and_remove(x)
        with contextlib.suppress(Exception):
            _delete_project(d, realm)
        d.delete_image(image.fingerprint)
