"""Bad and hostile input: LXD's error shape, a 4xx, and nothing left behind."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from covetest import Api, Coved, mounts_under, new_name, rand, runc_ids


def snapshot(coved: Coved, api: Api) -> dict[str, Any]:
    return {"names": api.names(), "dirs": sorted(os.listdir(coved.root / "instances")),
            "mounts": sorted(mounts_under(coved.root)), "runc": runc_ids(coved.root)}


@pytest.fixture
def unchanged(coved: Coved, api: Api) -> Iterator[None]:
    """The test's bad requests must leave the root exactly as it was."""
    before = snapshot(coved, api)
    yield
    assert snapshot(coved, api) == before


def assert_error(r: Any, status: int, *words: str) -> None:
    assert r.status == status, (r.status, r.body[:300])
    assert isinstance(r.json, dict), r.body[:300]
    assert r.json["type"] == "error"
    assert r.json["error_code"] == status
    for w in words:
        assert w.lower() in r.json["error"].lower(), r.json["error"]


def create_body(name: str, config: dict[str, str] | None = None,
                alias: str = "busybox") -> dict[str, Any]:
    return {"name": name, "source": {"type": "image", "alias": alias},
            "config": config if config is not None else {"cove.cmd": "sleep 1000"}}


@pytest.mark.parametrize("bad", ["-bad", "covetest" + "a" * 56, "a_b", "9lives", "bad-",
                                 "has space", "dot.ted", "", "covetest/../../x"])
def test_invalid_instance_names(api: Api, unchanged: None, bad: str) -> None:
    r = api.request("POST", "/1.0/instances", create_body(bad))
    assert_error(r, 400)


def test_name_of_63_characters_is_fine(api: Api) -> None:
    name = "covetest-" + rand(54)
    assert len(name) == 63
    api.create(name)
    assert api.status(name) == "Stopped"


@pytest.mark.parametrize("config, words", [
    ({"covetest.nosuchkey": "1"}, ["covetest.nosuchkey"]),
    ({"limits.memory": "lots"}, ["limits.memory"]),
    ({"limits.memory": "-5MB"}, ["limits.memory"]),
    ({"limits.memory": "1"}, ["limits.memory"]),
    ({"limits.processes": "0"}, ["limits.processes"]),
    ({"limits.cpu": "two"}, ["limits.cpu"]),
    ({"cove.cmd": "sh -c 'unterminated"}, ["cove.cmd"]),
    ({"cove.halt": "SIGNOPE"}, ["SIGNOPE"]),
    ({"cove.uid": "-1"}, []),
    ({"boot.autostart": "maybe"}, []),
])
def test_bad_config_is_refused(api: Api, unchanged: None, config: dict[str, str],
                               words: list[str]) -> None:
    r = api.request("POST", "/1.0/instances", create_body(new_name("bad"), config))
    assert_error(r, 400, *words)


def test_missing_image(api: Api, unchanged: None) -> None:
    r = api.request("POST", "/1.0/instances", create_body(new_name("bad"),
                                                          alias="covetest-noimage"))
    assert_error(r, 404, "covetest-noimage")
    r = api.request("POST", "/1.0/instances",
                    {"name": new_name("bad"), "source": {"type": "image", "fingerprint": "abc123"}})
    assert 400 <= r.status < 500 and r.json["type"] == "error"


def test_second_create_conflicts(api: Api, coved: Coved) -> None:
    name = new_name("dup")
    api.launch(name)
    first = api.instance(name)
    before = snapshot(coved, api)
    r = api.request("POST", "/1.0/instances", create_body(name, {"cove.cmd": "sleep 5"}))
    assert_error(r, 409, name)
    assert snapshot(coved, api) == before
    again = api.instance(name)
    assert again["created_at"] == first["created_at"]
    assert again["config"]["cove.cmd"] == "sleep 1000"
    assert again["status"] == "Running"
    assert api.sh(name, "echo alive") == b"alive\n"


def test_exec_in_stopped_instance(api: Api, coved: Coved) -> None:
    name = new_name("bad")
    api.create(name)
    r = api.request("POST", f"/1.0/instances/{name}/exec",
                    {"command": ["true"], "wait-for-websocket": True})
    assert_error(r, 400)
    r = api.request("POST", f"/1.0/instances/{name}/exec",
                    {"command": ["true"], "wait-for-websocket": False})
    assert_error(r, 400)
    assert runc_ids(coved.root) == [i for i in runc_ids(coved.root) if i != name]
    assert not any(m.startswith(str(coved.root / "instances" / name))
                   for m in mounts_under(coved.root))


def test_bad_requests_on_missing_things(api: Api, unchanged: None) -> None:
    ghost = new_name("ghost")
    for method, path, body in [
        ("GET", f"/1.0/instances/{ghost}", None),
        ("GET", f"/1.0/instances/{ghost}/state", None),
        ("PUT", f"/1.0/instances/{ghost}/state", {"action": "start"}),
        ("DELETE", f"/1.0/instances/{ghost}", None),
        ("POST", f"/1.0/instances/{ghost}/exec", {"command": ["true"]}),
        ("GET", f"/1.0/instances/{ghost}/files?path=/etc/hostname", None),
        ("GET", "/1.0/operations/covetest-no-such-op", None),
    ]:
        assert_error(api.request(method, path, body), 404)
    r = api.request("POST", "/1.0/instances", b"{not json", headers={
        "Content-Type": "application/json"})
    assert_error(r, 400)
    r = api.request("PUT", "/1.0/instances/x/state", {"action": "covetest-dance"})
    assert 400 <= r.status < 500


def test_bad_action_and_state_errors(api: Api) -> None:
    name = new_name("bad")
    api.create(name)
    r = api.request("PUT", f"/1.0/instances/{name}/state", {"action": "covetest-dance"})
    assert_error(r, 400)
    r = api.request("PUT", f"/1.0/instances/{name}/state", {"action": "stop"})
    assert_error(r, 400, "stopped")
    r = api.request("PATCH", f"/1.0/instances/{name}", {"config": {"limits.memory": "lots"}})
    assert_error(r, 400, "limits.memory")
    r = api.request("PATCH", f"/1.0/instances/{name}", {"config": {"covetest.x": "1"}})
    assert_error(r, 400)
    assert "limits.memory" not in api.instance(name)["config"]
    assert "covetest.x" not in api.instance(name)["config"]


# -- hostile paths ----------------------------------------------------------------------

@pytest.fixture
def box(api: Api) -> str:
    name = new_name("paths")
    api.launch(name)
    return name


def _host_paths_named(root: Path, leaf: str) -> list[str]:
    p = subprocess.run(["find", str(root), "-xdev", "-name", leaf], capture_output=True,
                       text=True, check=False)
    return sorted(p.stdout.split())


def test_symlinks_never_reach_the_host(api: Api, coved: Coved, box: str) -> None:
    api.sh(box, "ln -s /etc /tmp/covetest-link; ln -s ../../.. /tmp/covetest-up; "
                "ln -s /etc/covetest-dangling /tmp/covetest-dangle")
    api.file_put(box, "/etc/hostname", b"covetest-container-hostname\n")
    secret = f"covetest-{rand(10)}"
    host_targets = [Path("/etc") / secret, Path("/etc") / (secret + "-up"),
                    Path("/etc/covetest-dangling")]
    assert not any(p.exists() for p in host_targets)
    try:
        r = api.file_put(box, f"/tmp/covetest-link/{secret}", b"via link\n")
        assert r.status == 200, r.body
        assert not (Path("/etc") / secret).exists()
        assert api.sh(box, f"cat /etc/{secret}") == b"via link\n"

        r = api.file_put(box, f"/tmp/covetest-up/etc/{secret}-up", b"via up\n")
        assert r.status == 200, r.body
        assert not (Path("/etc") / (secret + "-up")).exists()
        assert api.sh(box, f"cat /etc/{secret}-up") == b"via up\n"
        # and it is nowhere under cove's root but in the instance's own layers
        inst = coved.root / "instances" / box
        for found in _host_paths_named(coved.root, secret + "-up"):
            assert found.startswith((str(inst / "upper") + "/", str(inst / "rootfs") + "/")), found

        # a dangling absolute symlink as the final component
        r = api.file_put(box, "/tmp/covetest-dangle", b"dangle\n")
        assert r.status in (200, 400), r.body
        assert not Path("/etc/covetest-dangling").exists()

        r = api.file_get(box, "/tmp/covetest-link/hostname")
        assert r.status == 200 and r.body == b"covetest-container-hostname\n"
        r = api.file_get(box, "/tmp/covetest-up/etc/hostname")
        assert r.status == 200 and r.body == b"covetest-container-hostname\n"
        # a relative path (lxc sends them) is taken from the container's /
        r = api.file_get(box, "../../../../etc/hostname")
        assert r.status == 200 and r.body == b"covetest-container-hostname\n"
        r = api.file_get(box, "/tmp/../../../../etc/hostname")
        assert r.status == 200 and r.body == b"covetest-container-hostname\n"
        # a symlink is reported as one, not followed out
        api.sh(box, "ln -s /etc/shadow /tmp/covetest-shadow")
        r = api.file_get(box, "/tmp/covetest-shadow")
        assert r.status == 200 and r.headers.get("x-lxd-type") == "symlink"
        assert r.body == b"/etc/shadow"
    finally:
        for p in host_targets:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                pytest.fail(f"cove wrote the host's {p}")


def test_symlink_to_a_host_dir_of_ours(api: Api, box: str, tmp_path: Path) -> None:
    """The container names a host path that exists only on the host."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"host data\n")
    api.sh(box, f"ln -s {tmp_path} /tmp/covetest-vlink")
    assert api.file_get(box, "/tmp/covetest-vlink/victim").status == 404
    r = api.request("DELETE", f"/1.0/instances/{box}/files?path=/tmp/covetest-vlink/victim")
    assert r.status == 404
    assert victim.read_bytes() == b"host data\n"
    r = api.file_put(box, "/tmp/covetest-vlink/victim", b"overwritten\n")
    assert r.status in (404, 400, 200)
    assert victim.read_bytes() == b"host data\n"
    if r.status == 200:  # then the parents were made inside the container
        assert api.sh(box, f"cat {tmp_path}/victim") == b"overwritten\n"


def test_special_files_are_refused(api: Api, box: str) -> None:
    api.sh(box, "mknod /tmp/covetest-dev c 1 3; mkfifo /tmp/covetest-fifo; "
                "mkdir -p /tmp/covetest-sub && echo x > /tmp/covetest-sub/f")
    assert_error(api.file_get(box, "/tmp/covetest-dev"), 400)
    # a FIFO must be refused, not opened (that would block for ever)
    r = api.request("GET", f"/1.0/instances/{box}/files?path=/tmp/covetest-fifo", timeout=10)
    assert_error(r, 400)
    r = api.request("POST", f"/1.0/instances/{box}/files?path=/tmp/covetest-fifo",
                    b"into the fifo\n", headers={"Content-Type": "application/octet-stream"},
                    timeout=10)
    assert r.status in (200, 400), r.body
    if r.status == 200:  # replaced by a regular file, not written into the pipe
        assert api.file_get(box, "/tmp/covetest-fifo").body == b"into the fifo\n"
    # directories list their entries
    r = api.file_get(box, "/tmp/covetest-sub")
    assert r.status == 200 and r.headers.get("x-lxd-type") == "directory"
    assert r.json["metadata"] == ["f"]
    # NUL bytes in a path
    assert_error(api.request("GET", f"/1.0/instances/{box}/files?path=/tmp/a%00b"), 400)


@pytest.mark.parametrize("raw", [
    b"GET /1.0 HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
    b"POST /1.0/instances HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n",
    b"POST /1.0/instances HTTP/1.1\r\nHost: x\r\nContent-Length: 12x\r\n\r\n",
    b"G\x01T /1.0 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
], ids=["nul-in-header", "negative-length", "bad-length", "garbage-method", "tls-hello"])
def test_malformed_http_gets_the_error_envelope(coved: Coved, raw: bytes) -> None:
    import json
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(coved.socket))
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split()[1] == b"400", data[:300]
    assert b"application/json" in head.lower(), head
    env = json.loads(body)
    assert env["type"] == "error" and env["error_code"] == 400, env
    assert env["error"].startswith("Malformed HTTP request"), env
    assert coved.answers()
