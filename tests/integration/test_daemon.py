"""coved itself: a private root and socket, one daemon per root, LXD's server
object, the old /1.0/containers paths, a clean stop that lets operations end."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from covetest import REPO, Api, Coved, new_name


def test_root_and_socket_are_private(coved: Coved) -> None:
    assert stat.S_IMODE(coved.root.stat().st_mode) & 0o077 == 0
    st = coved.socket.stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) & 0o077 == 0, oct(st.st_mode)
    for sub in ("images", "instances", "run", "tmp"):
        assert stat.S_IMODE((coved.root / sub).stat().st_mode) & 0o077 == 0, sub


def test_server_object(coved: Coved) -> None:
    srv = coved.api.sync("GET", "/1.0")
    assert srv["api_version"] == "1.0"
    assert srv["auth"] == "trusted"
    assert srv["environment"]["kernel_version"] == os.uname().release
    assert coved.api.sync("GET", "/")[0] == "/1.0"


def test_one_coved_per_root(coved: Coved) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "cove.server.main", "--root", str(coved.root)],
                       env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=30,
                       check=False)
    assert p.returncode != 0
    assert b"another coved" in p.stderr, p.stderr
    assert time.monotonic() - t < 10
    assert coved.answers()  # the first one is undisturbed, socket and all
    assert coved.socket.exists()


def test_containers_paths_alias_instances(api: Api) -> None:
    name = new_name("alias")
    api.launch(name)
    assert f"/1.0/containers/{name}" in api.sync("GET", "/1.0/containers")
    assert api.sync("GET", f"/1.0/containers/{name}")["status"] == "Running"
    r = api.request("POST", f"/1.0/containers/{name}/exec",
                    {"command": ["true"], "wait-for-websocket": False})
    assert api.wait(r)["metadata"]["return"] == 0
    api.run("PUT", f"/1.0/containers/{name}/state", {"action": "stop", "force": True})
    assert api.status(name) == "Stopped"


def test_sigterm_lets_the_operation_in_flight_finish(make_coved, busybox_tar: Path) -> None:  # type: ignore[no-untyped-def]
    d = make_coved("term")
    d.api.import_image(busybox_tar, "busybox")
    name = new_name("term")
    d.api.launch(name)  # sleep as pid 1 ignores SIGTERM: the stop takes its timeout
    r = d.api.request("PUT", f"/1.0/instances/{name}/state", {"action": "stop", "timeout": 3})
    assert r.status == 202
    time.sleep(0.3)
    t = time.monotonic()
    assert d.stop(timeout=30) == 0
    assert time.monotonic() - t >= 2, "coved did not wait for the stop in flight"
    d.start()
    inst = d.api.instance(name)
    assert inst["status"] == "Stopped"
    assert inst["config"]["volatile.last_state.exit_code"] == "137"
