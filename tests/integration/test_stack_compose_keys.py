"""Each Compose key cove accepts, through ``cove up`` on real containers and
checked from inside them or from the host, as ``docker compose`` users
expect: ``restart``, ``env_file``, ``working_dir``, ``entrypoint`` and
``command``, custom ``networks``; and coved SIGKILLed while ``cove up`` runs.

One stack per key group, on the session's shared coved."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from covetest import Api, Coved, assert_no_leaks, rand, wait_until

from cove.client.drivers.rest import RestDriver
from cove.model.compose import bridge_name


@pytest.fixture
def stack(api: Api, coved: Coved) -> Iterator[str]:
    """A stack name of 14 characters (it names a bridge); what a failed test
    left is removed through the same down as users run."""
    name = f"covetest-{rand(5)}"
    yield name
    if not coved.answers():
        coved.kill()
        coved.start()
    RestDriver(str(coved.socket)).stack(name=name).down(volumes=True)
    left = [n for n in api.names() if n.startswith(name)]
    for n in left:
        api.remove(n)
    assert not left, left


def _cli(coved: Coved, folder: Path, *args: str,
         timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "cove.cli.main", *args], env=coved.cli_env(),
                          cwd=folder, capture_output=True, timeout=timeout, check=False)


def _up(coved: Coved, folder: Path, text: str) -> None:
    (folder / "compose.yaml").write_text(text)
    p = _cli(coved, folder, "up", "-d")
    assert p.returncode == 0, p.stderr.decode()


def _runs(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _members(api: Api, stack: str) -> list[str]:
    return sorted(n for n in api.names() if n.startswith(stack + "-"))


# -- restart ------------------------------------------------------------------------------------

_RESTART = """\
name: {stack}
x-svc: &svc
  image: busybox
  stop_signal: SIGKILL
  volumes: [./share:/share]
services:
  always:
    <<: *svc
    restart: always
    command: [sh, -c, "echo run >> /share/always; sleep 0.2"]
  unless:
    <<: *svc
    restart: unless-stopped
    command: [sh, -c, "echo run >> /share/unless; exit 4"]
  capped:
    <<: *svc
    restart: on-failure:2
    command: [sh, -c, "echo run >> /share/capped; exit 3"]
  clean:
    <<: *svc
    restart: on-failure
    command: [sh, -c, "echo run >> /share/clean; exit 0"]
  never:
    <<: *svc
    restart: no
    command: [sh, -c, "echo run >> /share/never; exit 1"]
"""


def test_restart(stack: str, coved: Coved, api: Api, tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    _up(coved, tmp_path, _RESTART.format(stack=stack))
    assert api.instance(f"{stack}-never")["config"]["cove.restart"] == "no"
    # always and unless-stopped: whatever the exit code, again and again
    wait_until(lambda: _runs(share / "always") >= 3 and _runs(share / "unless") >= 3, 30,
               what="always and unless-stopped restarted twice")
    # on-failure:2: the first run and two restarts, then it stays stopped (Docker's count)
    wait_until(lambda: _runs(share / "capped") >= 3, 30, what="on-failure:2 ran three times")
    for svc in ("clean", "never", "capped"):
        wait_until(lambda s=svc: api.status(f"{stack}-{s}") == "Stopped", 10,  # type: ignore[misc]
                   what=f"{svc} stopped")
    # a user's stop is no failure: nothing restarts it
    for svc in ("always", "unless"):
        p = _cli(coved, tmp_path, "stop", "--force", f"{stack}-{svc}")
        assert p.returncode == 0, p.stderr.decode()
    counts = {s: _runs(share / s) for s in ("always", "unless")}
    time.sleep(1.5)  # longer than the back-off of the first restarts: none may come
    assert {s: _runs(share / s) for s in counts} == counts
    assert api.status(f"{stack}-always") == api.status(f"{stack}-unless") == "Stopped"
    assert _runs(share / "capped") == 3
    assert _runs(share / "clean") == 1      # on-failure: exit 0 is no failure
    assert _runs(share / "never") == 1      # no (unquoted, YAML 1.2's string)
    # down while they loop again: each stop cancels a restart in its back-off
    p = _cli(coved, tmp_path, "up", "-d")
    assert p.returncode == 0, p.stderr.decode()
    wait_until(lambda: _runs(share / "unless") >= counts["unless"] + 2, 30,
               what="unless-stopped looping again")
    p = _cli(coved, tmp_path, "down")
    assert p.returncode == 0, p.stderr.decode()
    assert _members(api, stack) == []



_UNSEEN = """\
name: {stack}
x-svc: &svc
  image: busybox
  stop_signal: SIGKILL
  command: [sh, -c, "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
services:
  unless: {{<<: *svc, restart: unless-stopped}}
  failed: {{<<: *svc, restart: on-failure}}
  clean: {{<<: *svc, restart: on-failure}}
  never: {{<<: *svc, restart: "no"}}
"""


def test_restart_of_exits_no_coved_saw(stack: str, coved: Coved, api: Api,
                                       tmp_path: Path) -> None:
    """Inits that ended while coved was down are restarted by policy when it
    starts, as dockerd does at its start (and so after a host reboot)."""
    _up(coved, tmp_path, _UNSEEN.format(stack=stack))
    pids = {s: api.state(f"{stack}-{s}")["pid"] for s in ("unless", "failed", "clean", "never")}
    coved.kill()
    for svc, pid in pids.items():
        os.kill(pid, signal.SIGTERM if svc == "clean" else signal.SIGKILL)  # clean: exit 0
    for pid in pids.values():
        wait_until(lambda p=pid: not os.path.exists(f"/proc/{p}"), 10,  # type: ignore[misc]
                   what=f"pid {pid} gone")
    coved.start()
    for svc in ("unless", "failed"):
        wait_until(lambda s=svc: api.status(f"{stack}-{s}") == "Running", 30,  # type: ignore[misc]
                   what=f"{svc} restarted")
        assert api.state(f"{stack}-{svc}")["pid"] != pids[svc]
    assert api.instance(f"{stack}-clean")["config"]["volatile.last_state.exit_code"] == "0"
    assert api.status(f"{stack}-clean") == api.status(f"{stack}-never") == "Stopped"


# -- env_file -----------------------------------------------------------------------------------

def _env_of(api: Api, name: str) -> dict[str, str]:
    """The environment of the instance's init, read from /proc/1/environ."""
    code, out, err = api.exec(name, ["cat", "/proc/1/environ"])
    assert code == 0, err
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


def test_env_file(stack: str, coved: Coved, api: Api, tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "conf").mkdir(parents=True)
    (app / "base.env").write_text("# defaults\nA=base\nB=base\nC=base\nQ='single $X'\n")
    (app / "conf" / "site.env").write_text("export B=site\nC=site\nD=\"two\\nlines\"\n")
    compose = app / "compose.yaml"
    compose.write_text(
        f"name: {stack}\nservices:\n  env:\n    image: busybox\n    command: sleep 1000\n"
        "    stop_signal: SIGKILL\n"
        "    env_file: [base.env, ./conf/site.env, {path: none.env, required: false}]\n"
        "    environment: {C: compose}\n")
    # run from elsewhere: env_file paths are the Compose file's folder's, not the cwd's
    p = _cli(coved, tmp_path, "up", "-d", "-f", str(compose))
    assert p.returncode == 0, p.stderr.decode()
    env = _env_of(api, f"{stack}-env")
    assert {k: env.get(k) for k in "ABCDQ"} == {
        "A": "base", "B": "site", "C": "compose", "D": "two\nlines", "Q": "single $X"}

    # a missing file of a later service: named, and nothing of the stack is made
    other = f"covetest-{rand(5)}"
    bad = app / "bad.yaml"
    bad.write_text(
        f"name: {other}\nservices:\n  one:\n    image: busybox\n    command: sleep 1000\n"
        "  two:\n    image: busybox\n    env_file: [base.env, missing.env]\n")
    before = api.names()
    p = _cli(coved, tmp_path, "up", "-d", "-f", str(bad))
    err = p.stderr.decode()
    assert p.returncode == 1 and "services.two.env_file[1] (line 8)" in err \
        and str(app / "missing.env") in err and "no such file" in err \
        and "Traceback" not in err, err
    # one that cannot be read (a folder), likewise
    (app / "dir.env").mkdir()
    bad.write_text(bad.read_text().replace("missing.env", "dir.env"))
    p = _cli(coved, tmp_path, "up", "-d", "-f", str(bad))
    err = p.stderr.decode()
    assert p.returncode == 1 and str(app / "dir.env") in err and "cannot read it" in err, err
    assert api.names() == before
    assert api.request("GET", f"/1.0/networks/{other}").status == 404


# -- working_dir, entrypoint and command ----------------------------------------------------------

_PROCESS = """\
name: {stack}
x-svc: &svc
  image: busybox
  stop_signal: SIGKILL
services:
  wd:
    <<: *svc
    command: sleep 1000
    working_dir: /tmp
  wdnew:
    <<: *svc
    command: sleep 1000
    working_dir: /srv/new/app
  eplist:
    <<: *svc
    entrypoint: [sleep]
    command: ["1001"]
  epstr:
    <<: *svc
    entrypoint: sleep 1002
  epnone:
    <<: *svc
    entrypoint: []
    command: sleep '1003'
  epempty:
    <<: *svc
    entrypoint: ""
    command: [sleep, "1004"]
  cmdonly:
    <<: *svc
    command: "sleep 1005"
"""


def _argv(api: Api, name: str) -> list[str]:
    code, out, err = api.exec(name, ["cat", "/proc/1/cmdline"])
    assert code == 0, err
    return out.decode().rstrip("\0").split("\0")


def test_working_dir_entrypoint_command(stack: str, coved: Coved, api: Api,
                                        tmp_path: Path) -> None:
    _up(coved, tmp_path, _PROCESS.format(stack=stack))
    for svc, cwd in (("wd", "/tmp"), ("wdnew", "/srv/new/app")):
        code, out, err = api.exec(f"{stack}-{svc}", ["readlink", "/proc/1/cwd"])
        assert (code, out) == (0, f"{cwd}\n".encode()), (svc, err)
        # and an exec runs there too, as ``docker compose exec``
        assert api.exec(f"{stack}-{svc}", ["pwd"])[1] == f"{cwd}\n".encode()
    assert api.exec(f"{stack}-eplist", ["pwd"])[1] == b"/root\n"  # none: LXD's home
    assert _argv(api, f"{stack}-eplist") == ["sleep", "1001"]
    assert _argv(api, f"{stack}-epstr") == ["sleep", "1002"]
    assert _argv(api, f"{stack}-epnone") == ["sleep", "1003"]
    assert _argv(api, f"{stack}-epempty") == ["sleep", "1004"]
    assert _argv(api, f"{stack}-cmdonly") == ["sleep", "1005"]


# -- networks -----------------------------------------------------------------------------------

_NETWORKS = """\
name: {stack}
x-svc: &svc
  image: busybox
  stop_signal: SIGKILL
x-httpd: &httpd [sh, -c, "mkdir -p /w && hostname > /w/index.html && exec httpd -f -p 80 -h /w"]
services:
  web:
    <<: *svc
    command: *httpd
    networks: [front, back]
  api:
    <<: *svc
    command: *httpd
    networks: [back]
  client:
    <<: *svc
    command: sleep 1000
    networks: {{front: {{}}}}
  outside:
    <<: *svc
    command: *httpd
    networks: [ext]
networks:
  front: {{}}
  back: {{}}
  ext:
    external: true
    name: {ext}
"""


def _get(api: Api, name: str, url: str, *, ok: bool = True, timeout: float = 20) -> bytes:
    """``wget`` in ``name``: the page when ``ok`` (retried while DNS and
    links settle), else asserts it fails."""
    deadline = time.monotonic() + timeout
    while True:
        # (busybox wget's own -T crashes it here: a timeout around it instead; an
        # answer on these links takes milliseconds, so 1 s tells a dropped one)
        code, out, err = api.exec(name, ["timeout", "3" if ok else "1", "wget", "-q", "-O",
                                         "-", url])
        if not ok:
            assert code != 0, (name, url, out)
            return b""
        if code == 0 or time.monotonic() > deadline:
            assert code == 0, (name, url, code, err)
            return out
        time.sleep(0.3)


def _address(api: Api, name: str, nic: str) -> str:
    nets = api.state(name)["network"]
    return next(a["address"] for a in nets[nic]["addresses"] if a["family"] == "inet")


def test_networks(stack: str, coved: Coved, api: Api, tmp_path: Path) -> None:
    ext = f"covetest{rand(5)}"
    api.sync("POST", "/1.0/networks", {"name": ext, "type": "bridge", "config": {}})
    try:
        _up(coved, tmp_path, _NETWORKS.format(stack=stack, ext=ext))
        web, client, api_, outside = (f"{stack}-{s}" for s in ("web", "client", "api",
                                                                "outside"))
        assert set(api.state(web)["network"]) >= {"eth0", "eth1"}  # on two networks
        # by service name on a shared network, both ways through web's two NICs
        assert _get(api, client, "http://web/") == f"{web}\n".encode()
        assert _get(api, api_, "http://web/") == f"{web}\n".encode()
        # web reaches api on back by its address (by name only on its first network: the
        # resolver of a container is its first network's)
        assert _get(api, web, f"http://{_address(api, api_, 'eth0')}/") == f"{api_}\n".encode()
        assert _get(api, outside, f"http://{_address(api, outside, 'eth0')}/") \
            == f"{outside}\n".encode()
        # not on back: api is neither a name nor an address client reaches
        _get(api, client, "http://api/", ok=False)
        _get(api, client, f"http://{_address(api, api_, 'eth0')}/", ok=False)
        _get(api, client, f"http://{_address(api, outside, 'eth0')}/", ok=False)
        _get(api, outside, f"http://{_address(api, web, 'eth0')}/", ok=False)
        made = sorted(n["name"] for n in api.sync("GET", "/1.0/networks?recursion=1")
                      if n.get("description") == f"cove stack {stack}")
        ours = [bridge_name(f"{stack}-front"), bridge_name(f"{stack}-back")]
        assert made == sorted(ours), made  # and no default one: no service is on it
        p = _cli(coved, tmp_path, "down")
        assert p.returncode == 0, p.stderr.decode()
        for net in ours:
            assert api.request("GET", f"/1.0/networks/{net}").status == 404, net
        assert api.request("GET", f"/1.0/networks/{ext}").status == 200  # external: kept
    finally:
        RestDriver(str(coved.socket)).stack(name=stack).down()
        api.request("DELETE", f"/1.0/networks/{ext}")


# -- coved killed under a running ``cove up`` ---------------------------------------------------

_CRASH = """\
name: {stack}
x-svc: &svc
  image: busybox
  stop_signal: SIGKILL
services:
  db:
    <<: *svc
    command: [sh, -c, "sleep 2; touch /tmp/ready; exec sleep 1000"]
    healthcheck:
      test: [CMD, test, -f, /tmp/ready]
      interval: 200ms
      start_period: 30s
      start_interval: 100ms
    networks: [back]
  app:
    <<: *svc
    command: sleep 1000
    depends_on: {{db: {{condition: service_healthy}}}}
    networks: [back, default]
  edge:
    <<: *svc
    command: sleep 1000
    depends_on: [app]
networks:
  back: {{}}
"""


def _intents(coved: Coved) -> list[str]:
    """The ordered starts coved has under way (its store, read-only)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{coved.root / 'cove.db'}?mode=ro",
                                            uri=True, timeout=5)) as db:
        return [r[0] for r in db.execute("SELECT instance FROM app_intents")]


def test_coved_killed_under_up(stack: str, coved: Coved, api: Api, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(_CRASH.format(stack=stack))
    up = subprocess.Popen([sys.executable, "-m", "cove.cli.main", "up", "-d"],
                          env=coved.cli_env(), cwd=tmp_path, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    try:
        # db runs, not yet healthy; app is made and its start waits for db; edge is not made
        wait_until(lambda: _intents(coved) == [f"{stack}-app"], 30,
                   what="app's ordered start under way")
        assert api.status(f"{stack}-db") == "Running"
        assert "healthy" not in str(api.state(f"{stack}-db").get("cove"))
        assert f"{stack}-edge" not in api.names()
        coved.kill()
        _, err = up.communicate(timeout=60)
        assert up.returncode != 0, err
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    coved.start()
    # coved alone finishes the start it was in: app once db is healthy, never before
    wait_until(lambda: api.status(f"{stack}-app") == "Running", 30, what="app started")
    assert api.state(f"{stack}-db")["cove"]["health"]["status"] == "healthy"
    p = _cli(coved, tmp_path, "up", "-d")
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().splitlines() == [
        f"{stack}-db: unchanged", f"{stack}-app: unchanged", f"{stack}-edge: created"]
    names = [f"{stack}-{s}" for s in ("app", "db", "edge")]
    assert _members(api, stack) == names
    for name in names:
        wait_until(lambda n=name: api.status(n) == "Running", 30,  # type: ignore[misc]
                   what=f"{name} running")
    assert api.state(f"{stack}-db")["cove"]["health"]["status"] == "healthy"
    nets = sorted(n["name"] for n in api.sync("GET", "/1.0/networks?recursion=1")
                  if n.get("description") == f"cove stack {stack}")
    assert nets == sorted([bridge_name(stack), bridge_name(f"{stack}-back")]), nets
    p = _cli(coved, tmp_path, "down")
    assert p.returncode == 0, p.stderr.decode()
    assert _members(api, stack) == []
    for net in nets:
        assert api.request("GET", f"/1.0/networks/{net}").status == 404, net
    assert_no_leaks(coved.root, names)


def test_command_goes_after_an_oci_entrypoint(stack: str, coved: Coved, api: Api,
                                              tmp_path: Path, busybox_plain_tar: Path) -> None:
    from ocilayout import LayoutBuilder, busybox_layer

    lay = LayoutBuilder(tmp_path / "layout")
    lay.add(lay.image([(busybox_layer(busybox_plain_tar), "gzip")],
                      {"Entrypoint": ["sleep"], "Cmd": ["1010"]})[0], "covetest-ep")
    alias = f"covetest-ep-{rand(5)}"
    p = _cli(coved, tmp_path, "image", "import", str(lay.write()), "--alias", alias)
    assert p.returncode == 0, p.stderr.decode()
    try:
        _up(coved, tmp_path, f"name: {stack}\nx-svc: &svc\n  image: {alias}\n"
            "  stop_signal: SIGKILL\nservices:\n  default: *svc\n"
            "  cmd:\n    <<: *svc\n    command: ['1011']\n"
            "  own:\n    <<: *svc\n    entrypoint: [sleep, '1012']\n")
        assert _argv(api, f"{stack}-default") == ["sleep", "1010"]
        assert _argv(api, f"{stack}-cmd") == ["sleep", "1011"]  # after the entrypoint
        assert _argv(api, f"{stack}-own") == ["sleep", "1012"]  # the image's Cmd dropped
    finally:
        RestDriver(str(coved.socket)).stack(name=stack).down()
        api.request("DELETE", f"/1.0/images/aliases/{alias}")
        fp = p.stdout.decode().strip().rsplit(" ", 1)[-1]
        api.run("DELETE", f"/1.0/images/{fp}")
