"""CoveSpawner end to end: a real JupyterHub (PyPI) with its real
configurable-http-proxy (npm), coved, and real containers.

The quick test serves HTTP from busybox's httpd and, from inside the
container, calls the hub's API with the token the hub gave it (through the
spawner's proxy device back to the hub on loopback). The slow one runs the
real ``jupyterhub-singleuser`` from a Debian image built once and cached
(``scripts/mkjupyter.py``).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from covetest import REPO, Api, Coved, assert_no_leaks, mkroot, new_name, rand, wait_until
from jhub import Hub, ensure_chp, ensure_jupyterhub, free_port

# httpd serves /www; a loop in the background asks the hub's API who the
# server's token belongs to and leaves the answer beside the index page. The
# shell stays PID 1 and ends on SIGTERM: a graceful stop completes at once
# (an exec-ed httpd as PID 1 ignores SIGTERM, and each stop would wait out
# the spawner's stop_timeout, 10 s, before the kill).
_BUSYBOX_APP = r"""
d=/www/user/$JUPYTERHUB_USER; mkdir -p $d
echo "hello $JUPYTERHUB_USER" > $d/index.html
[ -f /srv/data/note.txt ] && cp /srv/data/note.txt $d/note.txt
( for i in $(seq 100); do
    wget -q -O $d/hub.json --header "Authorization: token $JUPYTERHUB_API_TOKEN" \
      "$JUPYTERHUB_API_URL/user" && break; sleep 0.2; done ) &
httpd -f -p 8888 -h /www &
trap 'kill $!; exit 0' TERM
wait
"""


@pytest.fixture(scope="module")
def chp() -> Path:
    ensure_jupyterhub()
    return ensure_chp()


def _instances(api: Api, project: str) -> list[dict[str, Any]]:
    resp = api.request("GET", f"/1.0/instances?recursion=1&project={project}")
    if resp.status == 404:
        return []
    return list(resp.metadata)


def _drop_realm(api: Api, realm: str) -> None:
    """Remove what the realm left (the test then checks it was nothing)."""
    for inst in _instances(api, realm):
        if inst["status"] != "Stopped":
            api.run("PUT", f"/1.0/instances/{inst['name']}/state?project={realm}",
                    {"action": "stop", "force": True})
        api.run("DELETE", f"/1.0/instances/{inst['name']}?project={realm}")
    api.request("DELETE", f"/1.0/projects/{realm}")
    for prof in api.sync("GET", "/1.0/profiles"):
        name = prof.rsplit("/", 1)[-1]
        if name.startswith("jupyterhub-"):
            api.request("DELETE", f"/1.0/profiles/{name}")


@pytest.fixture
def hub_factory(coved: Coved, chp: Path) -> Iterator[Any]:
    hubs: list[Hub] = []
    realms: list[str] = []

    def make(config: str, realm: str) -> Hub:
        realms.append(realm)
        hub = Hub(chp, f"c.CoveSpawner.endpoint = {str(coved.socket)!r}\n"
                       f"c.CoveSpawner.realm = {realm!r}\n" + config, tag="hub")
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.close()
    for realm in realms:
        _drop_realm(coved.api, realm)


def test_busybox_spawn_proxy_restart_stop(coved: Coved, hub_factory: Any) -> None:
    realm = new_name("hub")
    user = f"ann-{rand()}@example.org"  # a login cove must escape for a name
    hub = hub_factory(f"c.CoveSpawner.image = 'busybox'\n"
                      f"c.CoveSpawner.cmd = ['/bin/sh', '-c', {_BUSYBOX_APP!r}]\n"
                      "c.Spawner.poll_interval = 1\n", realm)
    # hub profiles of CoveSpawner (marked so): one whose hub went away long
    # ago and one another live hub made sure of now; and one of someone else
    mark = "user.cove.jupyterhub.seen"
    others = {"covetest-gonehub": {mark: "1000"},
              "covetest-livehub": {mark: str(int(time.time()))},
              "covetest-notahub": {"user.note": "mine"}}
    for pname, pconfig in others.items():
        coved.api.sync("POST", "/1.0/profiles", {"name": pname, "config": pconfig})
    hub.start()
    quser = urllib.parse.quote(user, safe="@~")  # JupyterHub's url_escape_path

    # a user logs in with the dummy authenticator and asks for a server
    opener = hub.login(user)
    with opener.open(f"{hub.url}/hub/spawn", timeout=120) as r:
        r.read()
    server = hub.wait_server(user)
    assert server["url"] == f"/user/{quser}/"

    # one container in the realm's project, labelled as the user's session
    insts = _instances(coved.api, realm)
    assert len(insts) == 1 and insts[0]["status"] == "Running"
    assert insts[0]["config"]["user.cove.session.user"] == user
    # the configured profiles, then the hub's (its proxy device back to the hub)
    profiles = insts[0]["profiles"]
    assert profiles[0] == "default" and profiles[1].startswith("jupyterhub-")
    hub_dev = coved.api.sync("GET", f"/1.0/profiles/{profiles[1]}")["devices"]
    assert hub_dev["jupyterhub-api"] == {
        "type": "proxy", "bind": "instance", "listen": f"tcp:127.0.0.1:{hub.hub_port}",
        "connect": f"tcp:127.0.0.1:{hub.hub_port}"}
    name = insts[0]["name"]

    # through configurable-http-proxy to httpd in the container
    code, body = hub.get(f"/user/{quser}/")
    assert (code, body.decode().strip()) == (200, f"hello {user}")
    # the container reached the hub's API with the token the hub gave it
    def hub_answer() -> Any:
        code, body = hub.get(f"/user/{quser}/hub.json")
        return json.loads(body) if code == 200 and body else None
    who = wait_until(hub_answer, timeout=30, what="the container's call to the hub API")
    assert who["name"] == user

    # the hub restarts (its proxy too) and finds the server again
    hub.restart()
    server = hub.wait_server(user, timeout=60)
    assert [i["name"] for i in _instances(coved.api, realm)] == [name]
    # CoveSpawner.get_url read the address from the labels: the saved one
    assert "had invalid url" not in hub.tail(300)
    assert "cannot read" not in hub.tail(300)
    code, body = hub.get(f"/user/{quser}/")
    assert (code, body.decode().strip()) == (200, f"hello {user}")

    # coved restarts under the hub, which polls every second: the server
    # keeps running, the hub keeps it, the published port still answers
    coved.restart()
    time.sleep(3)
    assert hub.api("GET", f"/users/{quser}")[1]["servers"][""]["ready"]
    code, body = hub.get(f"/user/{quser}/")
    assert (code, body.decode().strip()) == (200, f"hello {user}")

    # the first spawn swept the orphan hub profile, and only it
    left = {p.rsplit("/", 1)[-1] for p in coved.api.sync("GET", "/1.0/profiles")}
    assert left >= {"covetest-livehub", "covetest-notahub", profiles[1]}
    assert "covetest-gonehub" not in left

    # stop removes the container, and the hub's profile with its last server
    code, _ = hub.api("DELETE", f"/users/{quser}/server")
    assert code in (202, 204)
    hub.wait_stopped(user)
    assert _instances(coved.api, realm) == []
    assert coved.api.request("GET", f"/1.0/profiles/{profiles[1]}").status == 404
    for pname in ("covetest-livehub", "covetest-notahub"):
        coved.api.sync("DELETE", f"/1.0/profiles/{pname}")
    assert_no_leaks(coved.root, [f"{realm}_{name}"])


def test_hub_killed_mid_spawn_restarted_hub_adopts_the_orphan(coved: Coved,
                                                            hub_factory: Any) -> None:
    realm = new_name("hub")
    # the server answers only after 3 s: the hub dies while it waits (at once)
    hub = hub_factory(f"c.CoveSpawner.image = 'busybox'\n"
                      f"c.CoveSpawner.cmd = ['/bin/sh', '-c', {'sleep 3; ' + _BUSYBOX_APP!r}]\n"
                      # the API answers 202 at once instead of waiting up to 10 s
                      "c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}\n"
                      "c.CoveSpawner.spawn_lease = 10\n", realm)
    hub.start()
    assert hub.api("POST", "/users/bob")[0] == 201
    assert hub.api("POST", "/users/bob/server")[0] == 202
    first = wait_until(lambda: [i for i in _instances(coved.api, realm)
                                if i["config"].get("user.cove.session.state") == "running"],
                       timeout=30, what="the container of the spawn in flight, running")
    hub.kill()
    hub.start()
    # the restarted hub polled bob's server (recorded, no state saved): the
    # spawner found the session by its labels, the hub its address, and it
    # kept the server once it answered: the same container, not a new one
    try:
        hub.wait_server("bob", timeout=60)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{hub.tail(60)}") from None
    assert "adopting it" in hub.tail(300)
    now = _instances(coved.api, realm)
    label = "user.cove.session.url-id"
    assert [i["config"][label] for i in now] == [first[0]["config"][label]]
    code, body = hub.get("/user/bob/")
    assert (code, body.decode().strip()) == (200, "hello bob")
    # and the hub's stop of it removes it
    hub.api("DELETE", "/users/bob/server")
    hub.wait_stopped("bob")
    assert _instances(coved.api, realm) == []


def test_over_https_with_a_client_certificate(make_coved: Any, busybox_tar: Path,
                                              chp: Path) -> None:
    from cove.host.certs import generate_certificate

    d = make_coved("hubtls")
    d.api.import_image(busybox_tar, "busybox")
    port = free_port()
    d.api.sync("PATCH", "/1.0", {"config": {"core.https_address": f"127.0.0.1:{port}"}})
    certs = mkroot("hubcerts")
    realm = new_name("hub")
    hub = None
    try:
        crt, key = certs / "hub.crt", certs / "hub.key"
        generate_certificate(crt, key, server=False, common_name="covetest-hub")
        d.api.sync("POST", "/1.0/certificates", {"type": "client", "name": "covetest-hub",
                                                  "certificate": crt.read_text()})
        hub = Hub(chp, f"c.CoveSpawner.endpoint = 'https://127.0.0.1:{port}'\n"
                       f"c.CoveSpawner.tls_verify = {str(d.root / 'server.crt')!r}\n"
                       f"c.CoveSpawner.client_cert = {str(crt)!r}\n"
                       f"c.CoveSpawner.client_key = {str(key)!r}\n"
                       f"c.CoveSpawner.realm = {realm!r}\n"
                       "c.CoveSpawner.image = 'busybox'\n"
                       f"c.CoveSpawner.cmd = ['/bin/sh', '-c', {_BUSYBOX_APP!r}]\n"
                       # remove-on-stop off: stop keeps the container, stopped
                       "c.CoveSpawner.remove = False\n"
                       "c.CoveSpawner.limits = {'memory': '256MiB'}\n"
                       "c.CoveSpawner.volumes = {"
                       f"{str(certs / 'home' / '{username}')!r}: "
                       "{'bind': '/srv/data', 'mode': 'ro'}}\n", tag="hubtls")
        (certs / "home" / "cy").mkdir(parents=True)
        (certs / "home" / "cy" / "note.txt").write_text("cy's own volume\n")
        hub.start()
        assert hub.api("POST", "/users/cy")[0] == 201
        assert hub.api("POST", "/users/cy/server")[0] in (201, 202)
        hub.wait_server("cy")
        code, body = hub.get("/user/cy/")
        assert (code, body.decode().strip()) == (200, "hello cy")
        # {username} filled in the volume's host path; the limit set
        code, body = hub.get("/user/cy/note.txt")
        assert (code, body) == (200, b"cy's own volume\n")
        (inst,) = _instances(d.api, realm)
        assert inst["config"]["limits.memory"] == "256MiB"
        hub.api("DELETE", "/users/cy/server")
        hub.wait_stopped("cy")
        insts = _instances(d.api, realm)
        assert [i["status"] for i in insts] == ["Stopped"]
        # the next spawn replaces the stopped container with a fresh one
        assert hub.api("POST", "/users/cy/server")[0] in (201, 202)
        hub.wait_server("cy")
        again = _instances(d.api, realm)
        assert [i["status"] for i in again] == ["Running"]
        label = "user.cove.session.url-id"
        assert again[0]["config"][label] != insts[0]["config"][label]
        hub.api("DELETE", "/users/cy/server")
        hub.wait_stopped("cy")
    finally:
        shutil.rmtree(certs, ignore_errors=True)
        if hub is not None:
            hub.close()
        _drop_realm(d.api, realm)


def test_spawn_timed_out_leaves_nothing(coved: Coved, hub_factory: Any) -> None:
    realm = new_name("hub")
    # the hub gives up after 1 s: half-way through the start or while it waits
    hub = hub_factory(f"c.CoveSpawner.image = 'busybox'\n"
                      f"c.CoveSpawner.cmd = ['/bin/sh', '-c', {'sleep 60; ' + _BUSYBOX_APP!r}]\n"
                      "c.CoveSpawner.start_timeout = 1\n", realm)
    hub.start()
    assert hub.api("POST", "/users/dee")[0] == 201
    hub.api("POST", "/users/dee/server")
    def gone() -> bool:
        c, m = hub.api("GET", "/users/dee")
        return c == 200 and not m.get("servers") and not m.get("pending")
    wait_until(gone, timeout=60, what="the timed-out spawn to end")
    wait_until(lambda: _instances(coved.api, realm) == [], timeout=30,
               what="the container of the timed-out spawn to go")
    assert "Error stopping" not in hub.tail(400) and "Failed to stop" not in hub.tail(400)


def test_unknown_image_fails_cleanly(coved: Coved, hub_factory: Any) -> None:
    realm = new_name("hub")
    hub = hub_factory("c.CoveSpawner.image = 'covetest-no-such-image'\n", realm)
    hub.start()
    code, model = hub.api("POST", "/users/bob/server") if hub.api("POST", "/users/bob")[0] in (
        201, 409) else (None, None)
    assert code in (202, 500, 400), model
    def gone() -> bool:
        c, m = hub.api("GET", "/users/bob")
        return c == 200 and not m.get("servers") and not m.get("pending")
    wait_until(gone, timeout=60, what="the failed spawn to end")
    assert "No image" in hub.tail(200)
    assert _instances(coved.api, realm) == []


# -- the real jupyterhub-singleuser ---------------------------------------------------------

def _load_mkjupyter():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("mkjupyter", REPO / "scripts" / "mkjupyter.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def jupyter_image(coved: Coved, chp: Path) -> str:
    version = ensure_jupyterhub()
    try:
        tar = _load_mkjupyter().build_jupyter_image(version)
    except RuntimeError as e:
        pytest.skip(f"the jupyter test image could not be built here: {e}")
    alias = "covetest-jupyter"
    if coved.api.request("GET", f"/1.0/images/aliases/{alias}").status != 200:
        spool = coved.root / "tmp-jupyter.tar.gz"
        shutil.copyfile(tar, spool)
        try:
            coved.api.import_image(spool, alias)
        finally:
            spool.unlink(missing_ok=True)
    return alias


@pytest.mark.timeout(900)
def test_real_singleuser(coved: Coved, hub_factory: Any, jupyter_image: str) -> None:
    realm = new_name("hub")
    user = "jo"
    hub = hub_factory(f"c.CoveSpawner.image = {jupyter_image!r}\n"
                      "c.CoveSpawner.extra_config = {'cove.uid': '1000', 'cove.gid': '1000', "
                      "'cove.cwd': '/home/jovyan'}\n"
                      "c.Spawner.environment = {'HOME': '/home/jovyan'}\n", realm)
    hub.start()
    opener = hub.login(user)
    with opener.open(f"{hub.url}/hub/spawn", timeout=120) as r:
        r.read()
    hub.wait_server(user, timeout=300)

    # the server's own API, through the proxy, authorised by the hub
    code, body = hub.get(f"/user/{user}/api/status")
    assert code == 200, body[:500]
    assert "started" in json.loads(body)
    # the server checked that token with the hub: it reaches the hub API
    code, body = hub.get(f"/user/{user}/api/status", token=False)
    assert code in (302, 403), body[:300]
    # the browser's way: the logged-in user's hub cookie, then OAuth with the
    # hub, whose code the server exchanges at the hub's API from inside the
    # container. A page behind login (a file that is not there: 404 once in)
    # starts the dance; then the server's own cookie opens its API.
    try:
        with opener.open(f"{hub.url}/user/{user}/files/covetest-none", timeout=60) as r:
            r.read()
    except urllib.error.HTTPError as e:
        assert e.code == 404, e
    jar = opener.cookiejar  # type: ignore[attr-defined]
    assert any(c.name == f"jupyterhub-user-{user}" for c in jar)
    xsrf = next((c.value for c in jar if c.name == "_xsrf" and c.path.startswith("/user/")), "")
    req = urllib.request.Request(f"{hub.url}/user/{user}/api/status",
                                 headers={"X-XSRFToken": xsrf})
    with opener.open(req, timeout=60) as r:
        assert r.status == 200 and "started" in json.loads(r.read())

    hub.restart()
    hub.wait_server(user, timeout=60)
    code, body = hub.get(f"/user/{user}/api/status")
    assert code == 200, body[:500]

    code, _ = hub.api("DELETE", f"/users/{user}/server")
    hub.wait_stopped(user, timeout=120)
    assert _instances(coved.api, realm) == []
