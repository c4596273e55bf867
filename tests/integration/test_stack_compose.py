"""Stacks from Compose files against a real coved: ``cove up``, an edit,
``cove up`` again, ``cove down``; services reaching each other by name;
bad files refused with nothing made."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from covetest import Api, Coved, rand
from nethost import http_get

from cove.client.drivers.rest import RestDriver

_FILE = """\
name: {stack}
services:
  db:
    image: busybox
    command: ["sh", "-c", "sleep 1 && mkdir -p /www && echo hello-from-db > /www/index.html && cat /proc/uptime > /share/db && exec httpd -f -p 80 -h /www"]
    hostname: store
    healthcheck:
      test: [CMD, wget, -q, -O, /dev/null, "http://127.0.0.1/"]
      interval: 300ms
      start_period: 20s
      start_interval: 200ms
    ports: ["127.0.0.1:{port}:80"]
    stop_signal: SIGKILL
    volumes:
      - data:/data
      - ./share:/share
  web:
    image: busybox
    command: [sh, -c, "cat /proc/uptime > /share/web; exec sleep 1000"]
    depends_on:
      db:
        condition: service_healthy
    environment:
      GREETING: ${{GREETING:-hi}}
    stop_signal: SIGKILL
    volumes: [./share:/share]
  {extra}
volumes:
  data: {{}}
"""
_EXTRA = """migrate:
    image: busybox
    command: [sh, -c, "cat /proc/uptime > /share/migrated; echo covetest-migrated"]
    volumes: [./share:/share]
  worker:
    image: busybox
    command: [sh, -c, "cat /proc/uptime > /share/worker; exec sleep 1000"]
    stop_signal: SIGKILL
    volumes: [./share:/share]
    depends_on:
      web:
        condition: service_started
      migrate:
        condition: service_completed_successfully
"""


@pytest.fixture
def stack(api: Api, coved: Coved) -> Iterator[str]:
    """A stack name of 14 characters (it names a bridge); whatever a failed
    test left is removed through the same down as users run."""
    name = f"covetest-{rand(5)}"
    yield name
    RestDriver(str(coved.socket)).stack(name=name).down(volumes=True)
    for svc in ("worker", "migrate", "web", "db"):
        api.remove(f"{name}-{svc}")


def _cli(coved: Coved, folder: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "cove.cli.main", *args], env=coved.cli_env(),
                          cwd=folder, capture_output=True, timeout=180, check=False)


def _fetch(api: Api, name: str, url: str) -> bytes:
    deadline = time.monotonic() + 20
    while True:
        code, out, err = api.exec(name, ["wget", "-q", "-O", "-", url])
        if code == 0 or time.monotonic() > deadline:
            assert code == 0, (code, out, err)
            return out
        time.sleep(0.3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _uptime(path: Path) -> float:
    return float(path.read_text().split()[0])


def test_up_edit_up_down(stack: str, coved: Coved, api: Api, tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    port = _free_port()
    share = tmp_path / "share"  # a bind mount: each service writes when it started
    share.mkdir()
    compose.write_text(_FILE.format(stack=stack, extra=_EXTRA, port=port))
    p = _cli(coved, tmp_path, "up", "-d")
    assert p.returncode == 0, p.stderr
    # web only once db's healthcheck passed; worker after the one-shot exited 0
    assert _uptime(share / "web") >= _uptime(share / "db")
    assert _uptime(share / "worker") >= _uptime(share / "migrated")
    assert api.instance(f"{stack}-migrate")["config"]["volatile.last_state.exit_code"] == "0"
    assert http_get(f"http://127.0.0.1:{port}/") == b"hello-from-db\n"  # ports
    lines = p.stdout.decode().splitlines()  # a level's services come up together
    assert sorted(lines[:2]) == [f"{stack}-db: created", f"{stack}-migrate: created"], lines
    assert lines[2:] == [f"{stack}-web: created", f"{stack}-worker: created"], lines
    for svc in ("db", "web", "worker"):
        inst = api.instance(f"{stack}-{svc}")
        assert inst["status"] == "Running"
        assert inst["config"]["user.cove.stack"] == stack
        assert inst["config"]["user.cove.service"] == svc
    assert api.instance(f"{stack}-worker")["config"]["cove.depends"] == \
        f"{stack}-web:started,{stack}-migrate:completed"
    assert api.instance(f"{stack}-web")["config"]["cove.depends"] == f"{stack}-db:healthy"
    assert api.instance(f"{stack}-web")["config"]["environment.GREETING"] == "hi"
    # the stack's own network, and the services' names in its DNS
    net = api.sync("GET", f"/1.0/networks/{stack}")
    assert net["description"] == f"cove stack {stack}"
    assert _fetch(api, f"{stack}-web", "http://db/") == b"hello-from-db\n"
    assert _fetch(api, f"{stack}-web", "http://store/") == b"hello-from-db\n"
    assert api.exec(f"{stack}-db", ["hostname"])[1] == b"store\n"
    assert api.sync("GET", f"/1.0/storage-pools/default/volumes/custom/{stack}-data")

    ps = json.loads(_cli(coved, tmp_path, "ps", "--format", "json").stdout)
    assert sorted(i["name"] for i in ps) == [f"{stack}-{s}"
                                             for s in ("db", "migrate", "web", "worker")]
    listed = _cli(coved, tmp_path, "stack", "list").stdout.decode()
    assert stack in listed and "running(3)" in listed
    logs = _cli(coved, tmp_path, "logs", "migrate")  # what the one-shot printed
    assert logs.returncode == 0 and b"covetest-migrated" in logs.stdout, logs

    # up again, unchanged: nothing is touched
    db_pid = api.state(f"{stack}-db")["pid"]
    p = _cli(coved, tmp_path, "up", "-d")
    assert p.returncode == 0, p.stderr
    assert f"{stack}-db: unchanged" in p.stdout.decode()
    assert api.state(f"{stack}-db")["pid"] == db_pid

    # edit: web changes, worker goes; db stays as it is
    compose.write_text(_FILE.format(stack=stack, extra="", port=port))
    web_pid = api.state(f"{stack}-web")["pid"]
    p = subprocess.run([sys.executable, "-m", "cove.cli.main", "up", "-d"],
                       env={**coved.cli_env(), "GREETING": "hello"}, cwd=tmp_path,
                       capture_output=True, timeout=180, check=False)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode().splitlines()
    assert out == [f"{stack}-db: unchanged", f"{stack}-web: recreated",
                   f"{stack}-worker: removed", f"{stack}-migrate: removed"], out
    assert api.request("GET", f"/1.0/instances/{stack}-worker").status == 404
    web = api.instance(f"{stack}-web")
    assert web["config"]["environment.GREETING"] == "hello" and web["status"] == "Running"
    assert api.state(f"{stack}-web")["pid"] != web_pid
    assert api.state(f"{stack}-db")["pid"] == db_pid

    # down -v: instances, network and volume gone
    p = _cli(coved, tmp_path, "down", "-v")
    assert p.returncode == 0, p.stderr
    assert not [n for n in api.names() if n.startswith(stack)]
    assert api.request("GET", f"/1.0/networks/{stack}").status == 404
    assert api.request("GET",
                       f"/1.0/storage-pools/default/volumes/custom/{stack}-data").status == 404


@pytest.mark.parametrize(("edit", "words"), [
    ("    build: .\n", "services.web.build (line"),
    ("    depends_on: [nosuch]\n", "'nosuch' is not a service"),
    ("    healthcheck:\n      test: [CMD, 'true']\n      interval: 5 parsecs\n", "interval"),
])
def test_bad_files_make_nothing(stack: str, coved: Coved, api: Api, tmp_path: Path,
                                edit: str, words: str) -> None:
    text = f"name: {stack}\nservices:\n  web:\n    image: busybox\n{edit}"
    (tmp_path / "compose.yaml").write_text(text)
    before = api.names()
    p = _cli(coved, tmp_path, "up", "-d")
    err = p.stderr.decode()
    assert p.returncode == 1 and words in err and "Traceback" not in err, err
    assert api.names() == before
    assert api.request("GET", f"/1.0/networks/{stack}").status == 404


def test_missing_image_makes_nothing(stack: str, coved: Coved, api: Api, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        f"name: {stack}\nservices:\n  a:\n    image: busybox\n  b:\n    image: covetest-none\n"
        "volumes:\n  v: {}\n")
    p = _cli(coved, tmp_path, "up", "-d")
    err = p.stderr.decode()
    assert p.returncode == 1 and "Image 'covetest-none' not found (service b)" in err, err
    assert not [n for n in api.names() if n.startswith(stack)]
    assert api.request("GET", f"/1.0/networks/{stack}").status == 404


def test_async_stack(stack: str, coved: Coved, api: Api) -> None:
    import asyncio

    from cove.client.aio import AsyncRestDriver

    doc = {"name": stack, "services": {"one": {"image": "busybox", "command": "sleep 1000",
                                               "stop_signal": "KILL", "user": "app"}}}

    async def main() -> None:
        async with AsyncRestDriver(str(coved.socket)) as d:
            s = d.stack(doc)
            changes = await s.up()
            assert [(c.service, c.action) for c in changes] == [("one", "created")]
            assert [i.name for i in await s.ps()] == [f"{stack}-one"]
            # a user name, resolved in the image's own /etc/passwd
            assert api.instance(f"{stack}-one")["config"]["cove.uid"] == "1000"
            code, out, _ = api.exec(f"{stack}-one", ["grep", "^Uid:", "/proc/1/status"])
            assert code == 0 and out.split()[1] == b"1000", out
            assert (await d.stacks())[stack] == {"running": 1}
            assert await s.down() == [f"{stack}-one"]

    asyncio.run(main())
    assert api.request("GET", f"/1.0/instances/{stack}-one").status == 404


def test_up_without_d_follows_and_ctrl_c_stops(stack: str, coved: Coved, api: Api,
                                               tmp_path: Path) -> None:
    import signal

    (tmp_path / "compose.yaml").write_text(
        f"name: {stack}\nservices:\n  talk:\n    image: busybox\n"
        "    command: [sh, -c, 'while true; do echo covetest-said; sleep 0.2; done']\n"
        "    stop_signal: SIGKILL\n")
    # SIGUSR2 dumps every thread's stack to stderr: what it waited on, should it hang
    # SIGINT as a terminal's shell leaves it: a suite started from a background
    # job inherits it ignored, and Python keeps an ignored SIGINT ignored
    run = ("import faulthandler, runpy, signal; "
           "signal.signal(signal.SIGINT, signal.default_int_handler); "
           "faulthandler.register(signal.SIGUSR2, all_threads=True); "
           "runpy.run_module('cove.cli.main', run_name='__main__')")
    p = subprocess.Popen([sys.executable, "-c", run, "up"], env=coved.cli_env(),
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stderr is not None
        seen = b""
        deadline = time.monotonic() + 60
        while b"covetest-said" not in seen and time.monotonic() < deadline:
            seen += p.stdout.readline()
        assert f"{stack}-talk | covetest-said".encode() in seen, seen
        p.send_signal(signal.SIGINT)
        sent = time.monotonic()
        try:
            code = p.wait(60)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGUSR2)
            time.sleep(1)
            p.kill()
            p.wait()
            raise AssertionError(
                f"cove up did not end {time.monotonic() - sent:.0f}s after its SIGINT; "
                f"its stderr (threads at the end):\n{p.stderr.read().decode(errors='replace')}"
                f"\ncoved's log:\n{coved.log_tail(60)}") from None
        assert code == 130, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert api.status(f"{stack}-talk") == "Stopped"


def test_a_stack_in_a_project_resolves_bare_service_names(stack: str, coved: Coved, api: Api,
                                                         tmp_path: Path) -> None:
    project = f"covetest-{rand(5)}"
    api.sync("POST", "/1.0/projects", {"name": project, "config": {
        "features.images": "false", "features.profiles": "false"}})
    doc = {"name": stack, "services": {
        "srv": {"image": "busybox", "stop_signal": "KILL",
                "command": ["sh", "-c", ("mkdir /w && echo in-project > /w/index.html && "
                                        "httpd -f -p 80 -h /w")]},
        "cli": {"image": "busybox", "command": "sleep 1000", "stop_signal": "KILL",
                "depends_on": ["srv"]}}}
    driver = RestDriver(str(coved.socket), project=project)
    try:
        driver.stack(doc).up()
        inside = Api(str(coved.socket))
        deadline = time.monotonic() + 20
        while True:
            r = inside.request("POST", f"/1.0/instances/{stack}-cli/exec?project={project}",
                               {"command": ["wget", "-q", "-O", "-", "http://srv/"],
                                "wait-for-websocket": False, "record-output": True,
                                "interactive": False})
            op = inside.wait(r, 30)
            if op["metadata"]["return"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert op["metadata"]["return"] == 0, op
    finally:
        driver.stack(name=stack).down()
        api.request("DELETE", f"/1.0/projects/{project}")
    assert api.request("GET", f"/1.0/projects/{project}").status == 404
