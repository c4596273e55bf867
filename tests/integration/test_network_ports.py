"""Published ports (LXD ``proxy`` devices, nat=true): they answer on 127.0.0.1
and on the bridge's address of the host, and from other instances (which
the container sees by their real address); udp too; added and removed on a
running instance at once; a host port twice, or one a host process listens
on, is a clear 409; bad proxy strings are 400s."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from conftest import CovedPool
from covetest import Api, Coved, new_name, wait_until
from nethost import http_get, httpd_cmd


@pytest.fixture(scope="module")
def netd(workdir, busybox_tar) -> Iterator[Coved]:  # type: ignore[no-untyped-def]
    pool = CovedPool(workdir)
    d = pool.new("ports")
    d.api.import_image(busybox_tar, "busybox")
    yield d
    problems = pool.close()
    assert not problems, "teardown found leftovers:\n  " + "\n  ".join(problems)


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(api: Api, name: str, devices: dict[str, dict[str, str]],
            cmd: str | None = None) -> None:
    api.made.append(name)
    api.run("POST", "/1.0/instances", {
        "name": name, "source": {"type": "image", "alias": "busybox"},
        "config": {"cove.cmd": cmd or httpd_cmd()}, "start": True, "devices": devices})


def _proxy(listen: str, connect: str) -> dict[str, str]:
    return {"type": "proxy", "listen": listen, "connect": connect, "nat": "true"}


def _gw(api: Api) -> str:
    (net,) = api.sync("GET", "/1.0/networks?recursion=1")
    return str(net["config"]["ipv4.address"].split("/")[0])


def test_published_port_answers_with_the_real_source(netd: Coved) -> None:
    api = netd.api
    port = _free_port()
    web, client = new_name("web"), new_name("cl")
    _launch(api, web, {"http": _proxy(f"tcp:0.0.0.0:{port}", "tcp:0.0.0.0:80")})
    api.launch(client)
    try:
        gw = _gw(api)
        body = wait_until(lambda: _try(f"http://127.0.0.1:{port}/"), 5, what="httpd answers")
        assert body == b"hello\n"
        # from loopback: the container sees the bridge address (it cannot answer 127.0.0.1)
        assert http_get(f"http://127.0.0.1:{port}/cgi-bin/ip").strip().endswith(gw.encode()
                                                                                 + b"]")
        # from the host's address on the bridge: that address
        assert gw.encode() in http_get(f"http://{gw}:{port}/cgi-bin/ip")
        # from another instance: its own address, as LXD's nat=true gives
        cip = api.state(client)["network"]["eth0"]["addresses"][0]["address"]
        out = api.sh(client, f"wget -qO- http://{gw}:{port}/cgi-bin/ip")
        assert out.strip().endswith(f"{cip}]".encode()), out
        # and from itself (hairpin)
        assert b"hello" in api.sh(web, f"wget -qO- http://{gw}:{port}/")
    finally:
        api.remove(web)
        api.remove(client)
    with pytest.raises(OSError):
        http_get(f"http://127.0.0.1:{port}/", timeout=1)


def _try(url: str) -> bytes | None:
    try:
        return http_get(url, timeout=1)
    except OSError:
        return None


def test_udp_and_a_loopback_only_listen(netd: Coved) -> None:
    api = netd.api
    port = _free_port(socket.SOCK_DGRAM)
    name = new_name("udp")
    # busybox has no UDP server: count the datagrams arriving on the container's eth0
    _launch(api, name, {"dns": _proxy(f"udp:127.0.0.1:{port}", "udp:0.0.0.0:5353")},
            cmd="sleep 1000")
    try:
        def received() -> int:
            return int(api.state(name)["network"]["eth0"]["counters"]["packets_received"])

        def send(addr: str, n: int = 20) -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for _ in range(n):
                    s.sendto(b"covetest-datagram\n", (addr, port))

        before = received()
        send("127.0.0.1")
        wait_until(lambda: received() >= before + 20, 3, what="20 datagrams in the container")
        # listen on 127.0.0.1 only: the host's address on the bridge is not published
        before = received()
        send(_gw(api))
        assert received() < before + 20
    finally:
        api.remove(name)


def test_ports_change_on_a_running_instance(netd: Coved) -> None:
    api = netd.api
    p1, p2 = _free_port(), _free_port()
    name = new_name("live")
    _launch(api, name, {})
    try:
        assert _try(f"http://127.0.0.1:{p1}/") is None
        r = api.request("PATCH", f"/1.0/instances/{name}",
                        {"devices": {"p1": _proxy(f"tcp:127.0.0.1:{p1}", "tcp:0.0.0.0:80")}})
        assert r.status == 200, r.body
        assert wait_until(lambda: _try(f"http://127.0.0.1:{p1}/"), 3) == b"hello\n"
        r = api.request("PATCH", f"/1.0/instances/{name}", {"devices": {
            "p1": {"type": "none"}, "p2": _proxy(f"tcp:0.0.0.0:{p2}", "tcp:0.0.0.0:80")}})
        assert r.status == 200, r.body
        assert _try(f"http://127.0.0.1:{p1}/") is None
        assert _try(f"http://127.0.0.1:{p2}/") == b"hello\n"
        inst = api.sync("GET", f"/1.0/instances/{name}")
        r = api.request("PUT", f"/1.0/instances/{name}", {
            "config": {k: v for k, v in inst["config"].items()}, "devices": {}})
        assert r.status in (200, 202), r.body
        assert _try(f"http://127.0.0.1:{p2}/") is None
    finally:
        api.remove(name)


def test_port_conflicts_and_bad_proxies(netd: Coved) -> None:
    api = netd.api
    port = _free_port()
    a, b = new_name("a"), new_name("b")
    _launch(api, a, {"http": _proxy(f"tcp:0.0.0.0:{port}", "tcp:0.0.0.0:80")})
    try:
        for listen in (f"tcp:0.0.0.0:{port}", f"tcp:127.0.0.1:{port}"):
            r = api.request("POST", "/1.0/instances", {
                "name": b, "source": {"type": "image", "alias": "busybox"}, "start": True,
                "devices": {"x": _proxy(listen, "tcp:0.0.0.0:80")}})
            assert r.status == 409, r.body
            assert f"already published by instance {a}" in r.error
        assert api.request("GET", f"/1.0/instances/{b}").status == 404
        # the same port on another protocol is fine, and so is a live PATCH clash: 409
        r = api.request("PATCH", f"/1.0/instances/{a}", {
            "devices": {"again": _proxy(f"tcp:127.0.0.1:{port}", "tcp:0.0.0.0:81")}})
        assert r.status == 409, r.body
        # a port a host process listens on is reserved
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            busy = s.getsockname()[1]
            r = api.request("PATCH", f"/1.0/instances/{a}", {
                "devices": {"busy": _proxy(f"tcp:0.0.0.0:{busy}", "tcp:0.0.0.0:80")}})
            assert r.status == 409 and "reserved" in r.error, r.body
        for dev, words in [
            (_proxy("tcp:0.0.0.0:http", "tcp:0.0.0.0:80"), "bad port"),
            (_proxy("tcp:0.0.0.0:70000", "tcp:0.0.0.0:80"), "out of 1-65535"),
            (_proxy("sctp:0.0.0.0:80", "sctp:0.0.0.0:80"), "not supported"),
            ({"type": "proxy", "listen": "tcp:0.0.0.0:1"}, "needs listen"),
            # LXD's rule: DNAT reaches the instance's own address only
            (_proxy("tcp:0.0.0.0:1", "tcp:127.0.0.1:80"), "must be one of the instance's"),
        ]:
            r = api.request("PATCH", f"/1.0/instances/{a}", {"devices": {"bad": dev}})
            assert r.status == 400 and words in r.error, (dev, r.body)
        assert "bad" not in api.sync("GET", f"/1.0/instances/{a}")["devices"]
    finally:
        api.remove(a)
        api.remove(b)
