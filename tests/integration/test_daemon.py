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


def _probe_as(uid: int, groups: list[int], root: Path) -> dict[str, object]:
    """In a forked child that dropped to ``uid`` with ``groups`` (ids with no
    passwd entry: a real unprivileged process), try the socket and the files."""
    import json

    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: syscalls only, then _exit
        out: dict[str, object] = {}
        try:
            os.setgroups(groups)
            os.setgid(groups[0])
            os.setuid(uid)
            try:
                import socket
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(root / "unix.socket"))
                    s.sendall(b"GET /1.0 HTTP/1.0\r\nHost: x\r\n\r\n")
                    out["status"] = s.recv(64).split()[1].decode()
            except OSError as e:
                out["status"] = e.errno
            for f in ("cove.db", "cove.db-wal", "coved.lock"):
                try:
                    (root / f).open("rb").close()
                    out[f] = "read"
                except OSError as e:
                    out[f] = e.errno
            for f in ("", "images"):
                try:
                    os.listdir(root / f)
                    out[f or "list"] = "read"
                except OSError as e:
                    out[f or "list"] = e.errno
            os.write(wfd, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as r:
        data = r.read()
    os.waitpid(pid, 0)
    return json.loads(data)  # type: ignore[no-any-return]


def test_group_reaches_the_socket_and_reads_nothing(make_coved) -> None:  # type: ignore[no-untyped-def]
    import errno
    import secrets

    gid = 64000 + secrets.randbelow(1000)  # unused ids: no passwd entry is needed
    uid = gid + 1000
    d = make_coved("group", start=False)
    d.args = ["--group", str(gid)]
    d.start()
    st = d.root.stat()
    assert st.st_gid == gid and stat.S_IMODE(st.st_mode) == 0o710, oct(st.st_mode)
    for f in ("cove.db", "cove.db-wal", "cove.db-shm"):
        assert stat.S_IMODE((d.root / f).stat().st_mode) == 0o600, f
    seen = _probe_as(uid, [gid], d.root)
    assert seen["status"] == "200", seen
    assert seen["list"] == errno.EACCES and seen["images"] == errno.EACCES, seen
    for f in ("cove.db", "cove.db-wal", "coved.lock"):
        assert seen[f] == errno.EACCES, seen
    other = _probe_as(uid, [uid], d.root)
    assert other["status"] == errno.EACCES, other


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
